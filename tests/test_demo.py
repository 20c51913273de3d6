"""`sam3d-eval demo`: the main job end to end at a reduced size (the packaged recipe with tiny counts), and the
`--quick` procedural-shapes evaluation."""

import csv
import html
import re
import time

import numpy as np
import pandas as pd
import pytest

from sam3d_eval.cli.demo import RECIPE
from sam3d_eval.cli.main import main
from sam3d_eval.config_io import read_config_file

# The packaged recipe's structure with tiny numbers: 8 + 8 samples (4 test per domain), stage 1 one step,
# stage 2 the minimum of four curriculum epochs of one step each, 500 surface samples per evaluation.
TINY = {
    "data.generate": {"synthetic": 8, "real": 8, "workers": 1, "split_fractions": [0.5, 0.0, 0.5]},
    "eval": {"num_samples": 500, "batch_size": 4, "n_resamples": 200},
    "stage1": {"epochs": 1, "epoch_size": 4, "batch_size": 4, "warmup_steps": 1},
    "stage1.loss": {"num_points": 200, "render_size": 16},
    "stage2": {"epochs": 4, "epoch_size": 4, "batch_size": 4, "warmup_steps": 1},
    "stage2.loss": {"num_points": 200, "render_size": 16},
}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def _dump_toml(doc: dict, prefix: str = "") -> str:
    """The recipe's subset of TOML (tables of strings, numbers, booleans and flat lists)."""
    scalars = [f"{k} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    out = ([f"[{prefix}]"] if prefix else []) + scalars
    for k, v in doc.items():
        if isinstance(v, dict):
            out.append(_dump_toml(v, f"{prefix}.{k}" if prefix else k))
    return "\n".join(out)


def tiny_recipe(path):
    doc = read_config_file(RECIPE)
    for where, values in TINY.items():
        table = doc
        for key in where.split("."):
            table = table[key]
        table.update(values)  # stage keys are checked by name when the recipe loads
    path.write_text(_dump_toml(doc) + "\n")
    assert read_config_file(path) == doc
    return path


def test_packaged_recipe_is_the_training_one():
    """One home: training/demo.toml (the documented copy) is the packaged recipe itself."""
    import pathlib

    doc = pathlib.Path(__file__).resolve().parents[1] / "training" / "demo.toml"
    assert doc.resolve() == RECIPE.resolve()
    from sam3d_eval.train.recipe import load_recipe

    recipe = load_recipe(RECIPE)
    assert [s.stage for s in recipe.stages] == [1, 2] and recipe.eval.get("enabled", True)


def test_demo_end_to_end_small(tmp_path, capsys):
    out = tmp_path / "demo"
    cpu0 = time.process_time()
    assert main(["demo", "--config", str(tiny_recipe(tmp_path / "tiny.toml")), "--out", str(out), "--quiet"]) == 0
    cpu = time.process_time() - cpu0
    captured = capsys.readouterr()
    # progress: the three steps and the training's per-phase lines
    for step in ("[1/3] train", "[2/3] compare", "[3/3] report"):
        assert step in captured.err
    # checkpoints of both stages, one per curriculum phase boundary, stay in OUT
    assert (out / "stage1" / "final.safetensors").is_file() and (out / "stage2" / "final.safetensors").is_file()
    phases2 = sorted(p.name for p in (out / "stage2").glob("phase*.safetensors"))
    assert len(phases2) == 4, phases2
    # the gap at every phase boundary: stage 1's one phase and stage 2's four
    gap = pd.read_csv(out / "gap.csv")
    assert set(zip(gap["stage"], gap["phase"])) >= {(1, "synthetic")}
    assert gap[gap["stage"] == 2]["phase"].nunique() == 4
    assert (out / "stage_comparison.csv").is_file()
    # the stage comparison resamples twin pairs whole in every stratum that holds both twins
    sc = pd.read_csv(out / "stage_comparison.csv")
    both_twins = sc[sc["stratum"].isin(["all", "category"])]
    assert len(both_twins) and (both_twins["n_units"] < both_twins["n"]).any()
    assert (sc[sc["stratum"] == "domain"]["n_units"] == sc[sc["stratum"] == "domain"]["n"]).all()
    # the packaged recipe pairs every real sample with a synthetic twin: paired gap intervals, and how the gap moved
    assert (gap["design"] == "paired").all() and (gap["n_pairs"] > 0).all()
    # what the gap is made of: raw, covariate-matched and wear-free figures, beside visibility and appearance rows
    last = gap[(gap["stage"] == 2) & (gap["phase"] == "real100")].set_index("metric")
    for col in ("matched", "covariate", "wear_free", "wear"):
        assert col in gap.columns
    assert np.isfinite(last.loc["chamfer_l2", "wear_free"]) and last.loc["chamfer_l2", "n_unworn"] > 0
    assert {"chamfer_acc_visible", "chamfer_comp_self_hidden", "psnr", "ssim", "silhouette_iou", "psnr_input"} <= set(last.index)
    # LPIPS has no backbone weights here: named as missing, never a row of NaN (or of a random backbone)
    assert "lpips" not in set(gap["metric"]) and "LPIPS is not" in captured.out
    change = pd.read_csv(out / "gap_change.csv").set_index("metric")
    assert set(change.index) == {"chamfer_l2", "fscore@0.05"} and (change["design"] == "paired").all()
    ch = change.loc["chamfer_l2"]
    stage_gap = gap[gap["metric"] == "chamfer_l2"].set_index(["stage", "phase"])["estimate"]
    assert ch.estimate_a == pytest.approx(stage_gap[(1, "synthetic")]) and ch.estimate_b == pytest.approx(stage_gap[(2, "real100")])
    assert "the gap, stage 1 -> stage 2 (paired bootstrap" in captured.out
    # compare: the table (terminal and file) and its HTML report; the phase-boundary runs were reused, not rescored
    table = (out / "compare.txt").read_text()
    assert "stage 1" in table and "stage 2 (final)" in table and "delta B-A" in table
    assert table.strip() in captured.out
    assert re.search(r"stage 2 \(final\): checkpoint .*\(\d+ stored rows reused, 0 scored\)", captured.out)
    assert "<html" in (out / "compare.html").read_text().lower()
    # the report, with the gap across curriculum phases
    page = (out / "report.html").read_text()
    figs = [html.unescape(alt) for alt in
            re.findall(r'<img src="data:image/[^"]+" alt="(Synthetic-vs-real gap across curriculum phases[^"]*)"', page)]
    assert len(figs) == 1, "the report has no embedded figure of the gap across curriculum phases"
    assert "stage 1" in page and "stage 2 (final)" in page  # both checkpoints' runs are reported
    # each phase run's unworn-GT sibling (stageN/eval_unworn/) gives the report's wear part; LPIPS is named missing
    assert "GT wear accounts for" in html.unescape(page) and "GT wear was not measured" not in html.unescape(page)
    assert "Not computed for any sample, so not in these tables: lpips" in html.unescape(page)
    assert "Visible and hidden surfaces" in page
    for label in ("s1 synthetic", "s2 mix80-20", "s2 mix50-50", "s2 mix20-80", "s2 real100"):
        assert f"chamfer_l2 {label}:" in figs[0]
    # the CI budget (90 s on 2 cores), as this process's CPU time: wall time on a shared machine measures the load
    assert cpu < 90, f"the reduced demo took {cpu:.0f} CPU-s"


def test_demo_with_several_seeds_compares_every_run_on_one_benchmark(tmp_path, capsys):
    from sam3d_eval.io.results import read_results

    out = tmp_path / "demo"
    assert main(["demo", "--config", str(tiny_recipe(tmp_path / "tiny.toml")), "--out", str(out), "--quiet",
                 "--seeds", "2", "--benchmark-seed", "3"]) == 0
    captured = capsys.readouterr()
    # one benchmark, generated once with the asked seed, and one training folder per seed
    assert (out / "benchmark" / "manifest.csv").is_file() and not (out / "seed1" / "benchmark").exists()
    assert '"seed": 3' in (out / "benchmark" / "generation.json").read_text().replace("'", '"')
    finals = [out / f"seed{k}" / "stage2" / "final.safetensors" for k in (0, 1)]
    assert all(f.is_file() for f in finals) and finals[0].read_bytes() != finals[1].read_bytes()
    # every run of a stage scored the same samples
    runs = [sorted((out / f"seed{k}" / "stage2" / "eval").glob("stage2-phase*"))[-1] for k in (0, 1)]
    ids = [set(read_results(r)["sample_id"]) for r in runs]
    assert ids[0] == ids[1] and ids[0]
    # the gap change over runs: two runs per side, a two-level interval, and the share closed by the real split
    change = pd.read_csv(out / "gap_change.csv").set_index("metric")
    ch = change.loc["chamfer_l2"]
    assert ch.n_runs_a == ch.n_runs_b == 2 and ch.run_min_a <= ch.estimate_a <= ch.run_max_a
    per_seed = [pd.read_csv(out / f"seed{k}" / "gap_change.csv").set_index("metric").loc["chamfer_l2"] for k in (0, 1)]
    assert ch.estimate_a == pytest.approx(np.mean([p.estimate_a for p in per_seed]))
    assert "closed by the real split alone" in captured.out
    table = (out / "compare.txt").read_text()
    assert "runs min-max" in table  # two runs per side: their spread is shown
    # the visibility split and the input-view appearance are compared too; LPIPS (no weights here) is not
    assert "chamfer_acc_visible" in table and "psnr_input" in table and "\nlpips " not in table
    assert (out / "report.html").is_file()


def test_demo_refuses_a_missing_recipe(tmp_path, capsys):
    assert main(["demo", "--config", str(tmp_path / "nope.toml"), "--out", str(tmp_path)]) == 2
    assert "nope.toml" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# --quick: the procedural-shapes evaluation


def test_quick_demo_end_to_end(tmp_path, capsys):
    code = main(["demo", "--quick", "--out", str(tmp_path), "--samples", "4000", "--view-size", "64"])
    assert code == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 12 and all(r["status"] == "ok" for r in rows)
    by_id = {r["sample_id"]: r for r in rows}
    # the severe degradation of each shape must score worse than the mild one
    for shape in ("sphere", "box", "torus"):
        assert float(by_id[f"{shape}_severe"]["chamfer_l2"]) > float(by_id[f"{shape}_mild"]["chamfer_l2"])
        assert float(by_id[f"{shape}_severe"]["fscore@0.01"]) < float(by_id[f"{shape}_mild"]["fscore@0.01"])
    assert "mean of 12" in out
    # the appearance of the severe degradation (colour error, dent, hole) is worse too
    for shape in ("sphere", "box", "torus"):
        assert float(by_id[f"{shape}_severe"]["psnr"]) < float(by_id[f"{shape}_mild"]["psnr"])
        assert float(by_id[f"{shape}_severe"]["ssim"]) < float(by_id[f"{shape}_mild"]["ssim"])
    # the same seed gives the same numbers
    main(["demo", "--quick", "--out", str(tmp_path / "again"), "--samples", "4000", "--no-appearance"])
    again = {r["sample_id"]: r for r in csv.DictReader((tmp_path / "again" / "results.csv").open())}
    assert np.allclose([float(by_id[k]["chamfer_l2"]) for k in by_id], [float(again[k]["chamfer_l2"]) for k in by_id])


def test_quick_demo_under_another_protocol(tmp_path, capsys):
    from sam3d_eval.evaluate.protocols import get_protocol

    assert main(["demo", "--quick", "--out", str(tmp_path), "--samples", "1500", "--protocol", "occnet",
                 "--no-appearance"]) == 0
    out = capsys.readouterr().out
    assert f"protocol: occnet v{get_protocol('occnet').version} (overrides: num_samples=1500)" in out
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 12 and all(r["protocol"] == "occnet" for r in rows)
    assert all(float(r["chamfer_l2_occnet"]) > 0 for r in rows) and "chamfer_l2" not in rows[0]
