"""Data engine: simulated raters (bias recovered, identical raters agree), cost model, and engine rounds that
are deterministic for a seed and resume to the same result (tiny sizes)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from sam3d_eval.engine import (
    CostModel, ImportedVerifier, SimulatedVerifier, colour_error, read_engine_run, run_engine, simulated_panel,
    true_scores,
)
from sam3d_eval.engine.config import EngineConfigError, config_from_dict
from sam3d_eval.runtime import runtime_policy
from sam3d_eval.stats.rubric import CRITERIA, rater_bias, rubric_agreement


def _errors(n, seed=0):
    rng = np.random.default_rng(seed)
    # metrics whose true criterion scores lie in 3..7 (away from the 0/10 clip)
    return pd.DataFrame({"item_id": [f"c{i}" for i in range(n)], "fscore@0.05": rng.uniform(0.5, 0.75, n),
                         "recall@0.05": rng.uniform(0.5, 0.75, n), "normal_consistency": rng.uniform(0.65, 0.8, n),
                         "colour_error": rng.uniform(0.1, 0.2, n)})


def test_true_scores_follow_the_documented_mapping():
    q = true_scores(pd.DataFrame({"item_id": ["a", "b", "c"], "fscore@0.05": [0.3, 0.625, 1.0],
                                  "recall@0.05": [np.nan, 0.95, 0.0], "normal_consistency": [0.5, 0.725, 0.95],
                                  "colour_error": [0.3, 0.16, 0.0]}))
    assert q["geometry"].tolist() == pytest.approx([0.0, 5.0, 10.0])
    assert q["completeness"].tolist() == pytest.approx([0.0, 10.0, 0.0])  # NaN (failed) scores 0
    assert q["multiview"].tolist() == pytest.approx([0.0, 5.0, 10.0])
    assert q["texture"].tolist() == pytest.approx([0.0, 5.0, 10.0])


def test_simulated_raters_with_known_bias_recover_it():
    bias = [[0.0, 0.0, 0.0, 0.0], [1.5, -1.0, 0.5, 0.0], [-1.0, 0.0, 0.0, 2.0]]
    panel = simulated_panel(3, noise=0.75, biases=bias)
    ratings = SimulatedVerifier(panel, seed=3).rate(_errors(600), round=1)
    est = rater_bias(ratings).set_index("rater_id").loc[["sim0", "sim1", "sim2"], list(CRITERIA)].to_numpy()
    b = np.asarray(bias)
    expected = np.array([b[r] - (b.sum(0) - b[r]) / 2 for r in range(3)])
    assert np.abs(est - expected).max() < 0.15
    # the same seed gives the same ratings; another seed other noise
    again = SimulatedVerifier(panel, seed=3).rate(_errors(600), round=1)
    other = SimulatedVerifier(panel, seed=4).rate(_errors(600), round=1)
    assert again.equals(ratings) and not other.equals(ratings)


def test_identical_simulated_raters_agree_and_noise_lowers_agreement():
    errors = _errors(200)
    same = SimulatedVerifier(simulated_panel(3, noise=0.0, bias_sd=0.0)).rate(errors, 1)
    a = rubric_agreement(same).set_index("target")
    assert np.allclose(a.loc[list(CRITERIA), "value"], 1.0)
    noisy = SimulatedVerifier(simulated_panel(3, noise=3.0, bias_sd=0.0)).rate(errors, 1)
    b = rubric_agreement(noisy).set_index("target")
    assert (b.loc[list(CRITERIA), "krippendorff_alpha"] < 0.5).all()


def test_colour_error_is_zero_for_the_same_mesh_and_measures_a_shift():
    v = torch.rand(50, 3, dtype=torch.float64)
    c = torch.rand(50, 3, dtype=torch.float64)
    assert colour_error(v, c, v, c) == 0.0
    assert colour_error(v, (c + 0.1).clamp(max=10), v, c) == pytest.approx(0.1)


def test_cost_model_defaults_and_round_cost():
    m = CostModel()
    assert (m.create_minutes, m.verify_minutes) == (22.5, 2.25)  # seed: 15-30 min; verification 10x faster
    assert m.price_per_minute * 15 == pytest.approx(50, abs=0.1) and m.price_per_minute * 30 == pytest.approx(100, abs=0.2)
    c = CostModel(verify_minutes=2.0, price_per_minute=3.0, create_minutes=20.0, create_rejected=True).round_cost(10, 2, 5)
    assert c["verify_cost"] == 120.0 and c["cost_per_accepted"] == 24.0 and c["create_cost"] == 5 * 20 * 3.0
    assert np.isnan(CostModel().round_cost(4, 1, 0)["cost_per_accepted"])
    with pytest.raises(ValueError, match="price_per_minute"):
        CostModel(price_per_minute=-1)


def test_imported_verifier_names_unrated_candidates():
    r = pd.DataFrame({"item_id": ["a/main"], "rater_id": ["h1"], **{c: [8.0] for c in CRITERIA}, "round": [5]})
    v = ImportedVerifier(r)
    assert v.rate(pd.DataFrame({"item_id": ["a/main"]}), 2)["round"].tolist() == [2]
    with pytest.raises(ValueError, match=r"no rating for 1 candidate\(s\) of round 2, e.g. \['b/main'\]"):
        v.rate(pd.DataFrame({"item_id": ["a/main", "b/main"]}), 2)


def test_config_refuses_a_suite_outside_3_to_5():
    with pytest.raises(EngineConfigError, match="uses 3-5"):
        config_from_dict({"suite": [{"name": "x", "checkpoint": "initial"}]})
    with pytest.raises(EngineConfigError, match="unknown key"):
        config_from_dict({"suite": [{"name": "x"}, {"name": "y"}], "roundz": 3})


def test_training_tables_are_train_config_settings():
    """[pretrain] / [finetune] hold TrainConfig (and two LossConfig) fields over the engine's defaults; the
    engine builds one TrainConfig per run from them and checks them when the config is read."""
    from sam3d_eval.engine.config import TRAIN_DEFAULTS, train_config
    from sam3d_eval.models.reference import ReferenceConfig
    from sam3d_eval.train.loop import TrainConfig
    from sam3d_eval.train.losses import LossConfig, LossWeights

    suite = [{"name": "x", "checkpoint": "initial"}, {"name": "y", "checkpoint": "initial"}]
    cfg = config_from_dict({"suite": suite, "finetune": {"lr": 1e-3, "grad_clip": 0.5}})
    assert cfg.pretrain == TRAIN_DEFAULTS and cfg.finetune == {**TRAIN_DEFAULTS, "lr": 1e-3, "grad_clip": 0.5}
    assert cfg.fingerprint() == config_from_dict(cfg.to_dict()).fingerprint()
    # the stored record, and so the fingerprint of a run folder, is the one earlier versions wrote
    assert config_from_dict({"suite": suite}).fingerprint() == "00fdb49776db7422"
    tc = train_config(cfg.finetune, out_dir="o", seed=3, model=ReferenceConfig(), init_from="i.safetensors", device="cpu")
    assert tc == TrainConfig(stage=1, epochs=2, epoch_size=32, batch_size=8, lr=1e-3, warmup_steps=2, grad_clip=0.5,
                             seed=3, device="cpu", model=ReferenceConfig(), out_dir="o", init_from="i.safetensors",
                             curriculum="stage1", log_every=1000,
                             loss=LossConfig(weights=LossWeights.stage(1), num_points=500, render_size=32,
                                             perceptual="substitute"))
    with pytest.raises(EngineConfigError, match=r"\[pretrain\]: unknown key\(s\) 'epochz'; valid keys: epochs, "):
        config_from_dict({"suite": suite, "pretrain": {"epochz": 3}})
    with pytest.raises(EngineConfigError, match=r"\[finetune\]: unknown key\(s\) 'seed'"):  # the engine's to set
        config_from_dict({"suite": suite, "finetune": {"seed": 3}})
    with pytest.raises(EngineConfigError, match=r"\[finetune\]: lr must be a number > 0, got 0"):
        config_from_dict({"suite": suite, "finetune": {"lr": 0}})


@pytest.fixture(scope="module")
def benchmark_manifest(tmp_path_factory):
    from sam3d_eval.data.generate import GenerationConfig, make_benchmark

    out = tmp_path_factory.mktemp("engine_bench")
    make_benchmark(out, 6, 9, 0, GenerationConfig(image_size=32, split_fractions=(0.67, 0.0, 0.33),
                                                  categories=("superquadric", "blob"), second_object_prob=0.0))
    return out / "manifest.csv"


def _tiny(out, manifest):
    return config_from_dict({
        "out_dir": str(out), "seed": 0, "rounds": 2, "images_per_round": 3,
        "data": {"manifest": str(manifest), "image_size": 32},
        "suite": [{"name": "init", "checkpoint": "initial"}, {"name": "seed1", "seed": 1, "pretrain_epochs": 1}],
        "pretrain": {"epochs": 2, "epoch_size": 4, "batch_size": 4, "num_points": 100, "render_size": 16},
        "finetune": {"epochs": 1, "epoch_size": 4, "batch_size": 4, "num_points": 100, "render_size": 16},
        # lenient anchors so that the tiny models get accepts and the pool grows
        "verifier": {"raters": 2, "mapping": {"geometry": {"worst": 0.0, "best": 0.3},
                                              "completeness": {"worst": 0.0, "best": 0.3},
                                              "multiview": {"worst": 0.0, "best": 0.5},
                                              "texture": {"worst": 1.0, "best": 0.2}}},
        "eval": {"num_samples": 200, "resamples": 50, "batch_size": 8},
    })


def _strip(doc):
    for r in doc["rounds"]:
        r.pop("seconds")
    doc["engine"]["config"].pop("out_dir")
    return doc


def test_engine_rounds_are_deterministic_and_resume_to_the_same_result(tmp_path, benchmark_manifest, capsys):
    with runtime_policy("cpu"):
        full = run_engine(_tiny(tmp_path / "a", benchmark_manifest))
        part = run_engine(_tiny(tmp_path / "b", benchmark_manifest), stop_after=1)
        assert len(part.rounds) == 1
        resumed = run_engine(_tiny(tmp_path / "b", benchmark_manifest))
    assert resumed.resumed_rounds == [1]
    a, b = _strip(read_engine_run(tmp_path / "a")), _strip(read_engine_run(tmp_path / "b"))
    assert a == b
    # what `sam3d-eval engine show` prints: one line per round under the header, then the trend
    from sam3d_eval.cli.main import main

    assert main(["engine", "show", str(tmp_path / "a")]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].split()[:3] == ["round", "accepted", "accept"] and set(shown[1]) <= {"-", " "}
    assert shown[2].split()[0] == "1" and shown[3].split()[0] == "2" and "%" in shown[2]
    rounds = a["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and all(r["candidates"] == 9 for r in rounds)
    assert rounds[-1]["pool_size"] == sum(r["accepted"] for r in rounds) > 0
    assert {g["round"] for g in a["gap"]} == {0, 1, 2}
    from safetensors.torch import load_file

    ta, tb = load_file(str(full.checkpoint)), load_file(str(resumed.checkpoint))
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    ratings = pd.read_csv(tmp_path / "a" / "ratings.csv")
    assert len(ratings) == 2 * 9 * 2  # rounds x candidates x raters
    # the same ratings imported as human ratings give the same rounds (the suite's pretraining is reused)
    import shutil

    shutil.copytree(tmp_path / "a" / "suite", tmp_path / "c" / "suite")
    imp = _tiny(tmp_path / "c", benchmark_manifest).to_dict()
    imp["verifier"] = {"kind": "imported", "ratings": str(tmp_path / "a" / "ratings.csv")}
    imp["eval"]["enabled"] = False  # evaluation does not feed back into the rounds
    with runtime_policy("cpu"):
        c = run_engine(config_from_dict(imp))
    tc = load_file(str(c.checkpoint))
    assert all(torch.equal(ta[k], tc[k]) for k in ta)
    assert c.rounds["pool_added"].tolist() == full.rounds["pool_added"].tolist()
    assert (c.rounds["verifier"] == "imported").all()
    # another configuration in the same folder is refused
    with pytest.raises(ValueError, match="another configuration"):
        run_engine(config_from_dict({**json.loads(json.dumps(_tiny(tmp_path / "a", benchmark_manifest).to_dict())),
                                     "seed": 1}))
