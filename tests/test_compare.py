"""`sam3d-eval compare`: paired analysis, exit codes, protocol refusal, reuse of stored results, votes, sides."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon
from statsmodels.stats.multitest import multipletests

from compare_fixtures import PROTOCOL_SAMPLES, make_pair_dataset
from sam3d_eval.cli.main import main
from sam3d_eval.data.manifest import load_manifest
from sam3d_eval.evaluate import runner
from sam3d_eval.evaluate.compare import compare_frames, load_votes
from sam3d_eval.evaluate.sides import (
    CompareInputError,
    ProtocolMismatchError,
    load_side,
    manifest_from_checkpoint,
    side_kind,
)
from sam3d_eval.evaluate.protocols import get_protocol

PROTOCOL = get_protocol("default").with_overrides(num_samples=PROTOCOL_SAMPLES)
FAST = ["--samples", str(PROTOCOL_SAMPLES), "--resamples", "200", "--quiet", "--thumbnails", "0"]
RUNS = FAST[2:]  # stored runs keep their own protocol


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The data set and both sides scored once into run folders (reused by the tests)."""
    root = tmp_path_factory.mktemp("pair")
    manifest_path, a, b = make_pair_dataset(root, 12, missing_b=("s05",))
    manifest = load_manifest(manifest_path)
    runs = root / "runs"
    side_a = load_side(a, label="A", manifest=manifest, protocol=PROTOCOL, runs_dir=runs)
    side_b = load_side(b, label="B", manifest=manifest, protocol=PROTOCOL, runs_dir=runs)
    return dict(root=root, manifest=manifest_path, a=a, b=b, runs=runs, side_a=side_a, side_b=side_b)


def _cli(capsys, *argv):
    code = main([str(x) for x in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_noisy_b_is_a_significant_regression_exit_1(pair, capsys):
    args = ["compare", pair["side_a"].run_dir, pair["side_b"].run_dir, *RUNS]
    code, out, _ = _cli(capsys, *args, "--fail-on-regression", "--json")
    assert code == 1
    res = json.loads(out)
    assert res["regressed"] and res["verdict"].startswith("REGRESSION")
    overall = {r["metric"]: r for r in res["table"] if r["stratum"] == "all"}
    # B = A + noise: Chamfer grows, F-score and normal consistency drop, on every sample
    assert overall["chamfer_l2"]["delta"] > 0 and overall["chamfer_l2"]["better"] == "A"
    assert overall["fscore@0.01"]["delta"] < 0 and overall["normal_consistency"]["delta"] < 0
    assert {r["metric"] for r in res["regressions"]} >= {"chamfer_l2", "chamfer_l1", "normal_consistency"}
    assert res["preference"]["wins"] == 0 and res["preference"]["losses"] == 11  # s05 has no B prediction
    # without --fail-on-regression the comparison itself succeeds
    code, out, _ = _cli(capsys, *args)
    assert code == 0 and "REGRESSION" in out and "worse" in out


def test_a_against_itself_is_no_regression_exit_0(pair, capsys):
    code, out, _ = _cli(capsys, "compare", pair["side_a"].run_dir, pair["side_a"].run_dir, *RUNS,
                        "--fail-on-regression", "--json")
    assert code == 0
    res = json.loads(out)
    assert not res["regressed"] and res["verdict"].startswith("NO SIGNIFICANT DIFFERENCE")
    for r in res["table"]:
        if r["n"]:
            assert r["delta"] == 0.0 and r["pvalue"] == 1.0 and not r["significant"]
    assert res["preference"]["ties"] == 12 and res["preference"]["wins"] == res["preference"]["losses"] == 0


def test_paired_numbers_match_independent_references(pair):
    fa, fb = pair["side_a"].frame, pair["side_b"].frame
    c = compare_frames(fa, fb, protocol=PROTOCOL, n_resamples=300)
    a = fa.set_index("sample_id")
    b = fb.set_index("sample_id")
    both = sorted(set(a.index[a["status"] == "ok"]) & set(b.index[b["status"] == "ok"]))
    assert len(both) == 11
    overall = c.table[c.table["stratum"] == "all"].set_index("metric")
    ps = []
    for m in overall.index:
        x, y = a.loc[both, m].to_numpy(), b.loc[both, m].to_numpy()
        r = overall.loc[m]
        assert r["n"] == 11
        assert r["mean_a"] == pytest.approx(x.mean(), rel=1e-12) and r["mean_b"] == pytest.approx(y.mean(), rel=1e-12)
        assert r["delta"] == pytest.approx((y - x).mean(), rel=1e-12)
        assert r["delta_low"] <= r["delta"] <= r["delta_high"]
        ties = np.unique(np.abs(y - x)).size < x.size
        assert r["pvalue"] == pytest.approx(wilcoxon(x, y, method="approx" if ties else "exact").pvalue, rel=1e-9)
        ps.append(r["pvalue"])
    # the "all" family also holds the failure test (B failed s05 alone: exact McNemar p = 1)
    assert c.failures["pvalue"] == 1.0
    holm = multipletests(ps + [c.failures["pvalue"]], method="holm")[1]
    np.testing.assert_allclose(overall["p_holm"].to_numpy(), holm[:-1], rtol=1e-12)
    assert c.failures["p_holm"] == pytest.approx(holm[-1], rel=1e-12)
    # strata: every (domain) row uses only that domain's pairs
    dom = c.table[(c.table["stratum"] == "domain") & (c.table["metric"] == "chamfer_l2")].set_index("level")
    real = [s for s in both if a.loc[s, "domain"] == "real"]
    assert dom.loc["real", "n"] == len(real)
    assert dom.loc["real", "delta"] == pytest.approx((b.loc[real, "chamfer_l2"] - a.loc[real, "chamfer_l2"]).mean())
    assert set(c.table["stratum"]) == {"all", "domain", "occlusion_bin", "category"}
    # each side's gap is the summary's figure on that side's rows
    assert set(c.gap_a["metric"]) >= {"chamfer_l2", "accuracy"}


def test_failed_samples_are_counted_and_listed(pair):
    c = compare_frames(pair["side_a"].frame, pair["side_b"].frame, protocol=PROTOCOL, n_resamples=200)
    s = c.samples
    assert s["failed_only_B"] == ["s05"] and s["failed_only_A"] == [] and s["both_ok"] == 11
    assert "no prediction" in s["errors"]["B"]["s05"]
    row = c.table[(c.table["stratum"] == "all") & (c.table["metric"] == "chamfer_l2")].iloc[0]
    assert row["n"] == 11 and row["n_failed_b"] == 1 and row["n_failed_a"] == 0
    # a sample only one side holds is listed as such, not silently dropped
    c2 = compare_frames(pair["side_a"].frame, pair["side_b"].frame[pair["side_b"].frame["sample_id"] != "s00"],
                        protocol=PROTOCOL, n_resamples=200)
    assert c2.samples["only_in_A"] == ["s00"] and c2.samples["common"] == 11


def test_protocol_mismatch_is_refused(pair, tmp_path, capsys):
    other = get_protocol("default").with_overrides(num_samples=PROTOCOL_SAMPLES + 1)
    manifest = load_manifest(pair["manifest"])
    side = load_side(pair["a"], label="A2", manifest=manifest.iloc[:3], protocol=other, runs_dir=tmp_path)
    with pytest.raises(ProtocolMismatchError, match="fingerprint"):
        compare_frames(pair["side_a"].frame, side.frame)
    fast = [x for x in FAST if x not in ("--samples", str(PROTOCOL_SAMPLES))]
    code, _, err = _cli(capsys, "compare", pair["side_a"].run_dir, side.run_dir, *fast)
    assert code == 2 and "fingerprint" in err and "not comparable" in err
    # a stored run is never rescored under another protocol either
    code, _, err = _cli(capsys, "compare", pair["side_a"].run_dir, side.run_dir, "--protocol", "default", "--quiet")
    assert code == 2 and "never rescored" in err


def test_stored_results_are_reused_not_recomputed(pair, monkeypatch, capsys, tmp_path):
    calls = []
    real = runner.score_batch

    def counting(ids, *a, **k):
        calls.append(list(ids))
        return real(ids, *a, **k)

    monkeypatch.setattr(runner, "score_batch", counting)
    # run folders: read, never scored
    code, _, _ = _cli(capsys, "compare", pair["side_a"].run_dir, pair["side_b"].run_dir, *FAST)
    assert code == 0 and calls == []
    # prediction folders already scored into --runs-dir: the stored rows are found again (only B's failed
    # sample, which has no file, is retried: a failure may not come from the inputs)
    code, out, _ = _cli(capsys, "compare", pair["a"], pair["b"], "--data", pair["manifest"], "--runs-dir", pair["runs"],
                        *FAST, "--json")
    assert code == 0
    assert [s for c in calls for s in c] == ["s05"]
    sides = json.loads(out)["sides"]
    assert sides[0]["rows_reused"] == 12 and sides[0]["rows_scored"] == 0
    # a fresh runs folder scores everything once, and a second call scores nothing new
    calls.clear()
    small = pair["root"] / "small.csv"  # s04, s05 (no B prediction), s06; beside the GT paths it names
    pd.read_csv(pair["manifest"]).iloc[4:7].to_csv(small, index=False)
    argv = ["compare", pair["a"], pair["b"], "--data", small, "--runs-dir", tmp_path / "fresh", *FAST]
    assert _cli(capsys, *argv)[0] == 0
    assert sorted(s for c in calls for s in c) == ["s04", "s04", "s05", "s05", "s06", "s06"]
    calls.clear()
    assert _cli(capsys, *argv)[0] == 0
    assert [s for c in calls for s in c] == ["s05"]


def test_votes_are_counted_in_either_order(pair, tmp_path):
    votes = pd.DataFrame([
        dict(item_id="i1", model_a="base", model_b="cand", winner="b", rater_id="r1"),
        dict(item_id="i1", model_a="cand", model_b="base", winner="a", rater_id="r2"),  # cand again
        dict(item_id="i2", model_a="base", model_b="cand", winner="a", rater_id="r1"),
        dict(item_id="i3", model_a="base", model_b="cand", winner="tie", rater_id="r1"),
        dict(item_id="i4", model_a="base", model_b="other", winner="a", rater_id="r1"),  # not this pair
    ])
    path = tmp_path / "votes.csv"
    votes.to_csv(path, index=False)
    c = compare_frames(pair["side_a"].frame, pair["side_b"].frame, protocol=PROTOCOL, n_resamples=200,
                       votes=load_votes(path), vote_names=(("base",), ("cand",)))
    assert (c.votes["wins"], c.votes["losses"], c.votes["ties"], c.votes["votes"]) == (2, 1, 1, 4)
    assert c.votes["rate"] == pytest.approx(2 / 3) and c.votes["raters"] == 2
    with pytest.raises(CompareInputError, match="no vote compares"):
        compare_frames(pair["side_a"].frame, pair["side_b"].frame, n_resamples=200, votes=load_votes(path))
    votes.loc[0, "winner"] = "left"
    votes.to_csv(path, index=False)
    with pytest.raises(CompareInputError, match="winner 'left'"):
        load_votes(path)


def test_usage_errors_exit_2(pair, capsys, tmp_path):
    code, _, err = _cli(capsys, "compare", tmp_path / "nope", pair["a"], "--quiet")
    assert code == 2 and "nope" in err
    code, _, err = _cli(capsys, "compare", pair["a"], pair["b"], "--quiet")
    assert code == 2 and "--data" in err
    code, _, err = _cli(capsys, "compare", pair["a"], pair["b"], "--data", pair["manifest"], "--alpha", "1.5")
    assert code == 2 and "--alpha" in err
    code, _, err = _cli(capsys, "compare", pair["side_a"].run_dir, pair["side_b"].run_dir, *FAST, "--metrics", "nope")
    assert code == 2 and "nope" in err


def test_side_kinds_and_checkpoint_side(pair, tmp_path, capsys, monkeypatch):
    import torch

    from sam3d_eval.models import ReferenceConfig, ReferenceModel, save_checkpoint

    assert side_kind(pair["side_a"].run_dir) == "run" and side_kind(pair["a"]) == "predictions"
    root = tmp_path / "ck"
    manifest_path, a, _ = make_pair_dataset(root, 4, images=True)
    torch.manual_seed(0)
    model = ReferenceModel(ReferenceConfig.preset("tiny", frame="world", ico_level=1))
    ck = save_checkpoint(root / "model.safetensors", model, {"stage": 1, "data_manifest_hash": "0" * 16})
    code, out, _ = _cli(capsys, "compare", a, ck, "--data", manifest_path, "--runs-dir", tmp_path / "runs", *FAST, "--json")
    assert code == 0
    res = json.loads(out)
    assert [s["kind"] for s in res["sides"]] == ["predictions", "checkpoint"]
    assert res["sides"][1]["identity"] == model.identity and res["sides"][1]["checkpoint"]["stage"] == 1
    assert res["samples"]["both_ok"] == 4  # the model predicted a mesh for every image
    # the checkpoint's weights are not scored again: from the runs folder, or from a run stored beside the
    # checkpoint (eval/, where the training loop writes its phase-boundary evaluations)
    calls = []
    real = runner.score_batch
    monkeypatch.setattr(runner, "score_batch", lambda ids, *x, **k: calls.append(list(ids)) or real(ids, *x, **k))
    argv = ["compare", a, ck, "--data", manifest_path, *FAST, "--json"]
    assert _cli(capsys, *argv, "--runs-dir", tmp_path / "runs")[0] == 0 and calls == []
    ck_run = next(p for p in (tmp_path / "runs").iterdir() if p.name.startswith("reference"))
    shutil.copytree(ck_run, root / "eval" / "stage1-model")
    code, out, _ = _cli(capsys, *argv, "--runs-dir", tmp_path / "runs2")
    assert code == 0 and len([s for c in calls for s in c]) == 4  # only the folder side is scored
    side = json.loads(out)["sides"][1]
    assert side["kind"] == "checkpoint" and side["rows_reused"] == 4 and side["run_dir"].endswith("stage1-model")


def test_manifest_from_checkpoint_matches_the_recorded_hash(tmp_path):
    import hashlib

    bench = tmp_path / "out" / "benchmark"
    bench.mkdir(parents=True)
    (bench / "manifest.csv").write_text("sample_id,gt_mesh,domain,occlusion,category\n")
    ck = tmp_path / "out" / "stage1" / "final.safetensors"
    ck.parent.mkdir()
    h = hashlib.sha256((bench / "manifest.csv").read_bytes()).hexdigest()[:16]
    assert manifest_from_checkpoint({"data_manifest_hash": h}, ck) == bench / "manifest.csv"
    with pytest.raises(CompareInputError, match="--data"):
        manifest_from_checkpoint({"data_manifest_hash": "f" * 16}, ck)
