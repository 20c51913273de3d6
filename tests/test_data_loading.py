"""The Dataset over a manifest, its collate function, the synthetic/real mixing sampler, and `data make`."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sam3d_eval.cli.main import main
from sam3d_eval.data.dataset import ManifestDataset, collate_samples
from sam3d_eval.data.generate import GenerationConfig, make_benchmark
from sam3d_eval.data.sampler import MixingSampler
from sam3d_eval.structures.meshes import Meshes


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("ds") / "b"
        make_benchmark(out, 2, 2, 3, GenerationConfig(image_size=32), workers=1)
    finally:
        torch.set_num_threads(n)
    return out


def test_dataset_items(bench):
    ds = ManifestDataset(bench / "manifest.parquet")
    assert len(ds) == 4 and ds.domains == ["synthetic", "synthetic", "real", "real"]
    item = ds[2]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["mask"].shape == (1, 32, 32) and item["mask"].dtype == torch.bool
    png = np.asarray(Image.open(bench / "masks" / f"{item['sample_id']}.png")) > 127
    assert np.array_equal(item["mask"][0].numpy(), png)
    assert set(item["camera"]) >= {"K", "R", "T", "image_size"}
    assert isinstance(item["gt_mesh"], Meshes) and len(item["gt_mesh"]) == 1
    assert item["domain"] == "real" and 0 <= item["occlusion"] <= 1


def test_points_are_seeded_per_sample_and_collate(bench):
    a = ManifestDataset(bench / "manifest.csv", gt="points", num_points=256, seed=1)
    b = ManifestDataset(bench / "manifest.csv", gt="points", num_points=256, seed=1)
    assert torch.equal(a[1]["gt_points"], b[1]["gt_points"]) and a[1]["gt_points"].shape == (256, 3)
    assert not torch.equal(a[0]["gt_points"], ManifestDataset(bench / "manifest.csv", gt="points", num_points=256,
                                                             seed=2)[0]["gt_points"])
    batch = collate_samples([a[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, 32, 32) and batch["gt_points"].shape == (3, 256, 3)
    assert batch["sample_id"] == ["syn_000000", "syn_000001", "real_000000"]
    meshes = collate_samples([ManifestDataset(bench / "manifest.csv")[i] for i in range(2)])["gt_mesh"]
    assert len(meshes) == 2 and meshes.textures is not None
    loader = torch.utils.data.DataLoader(a, batch_size=2, collate_fn=collate_samples)
    assert [len(b["sample_id"]) for b in loader] == [2, 2]


def test_dataset_filters_and_a_user_manifest(bench, tmp_path):
    ds = ManifestDataset(bench / "manifest.parquet", domain="real")
    assert len(ds) == 2 and set(ds.domains) == {"real"}
    frame = pd.read_csv(bench / "manifest.csv")[["sample_id", "image", "gt_mesh", "domain", "occlusion", "category"]]
    frame.to_csv(bench / "user.csv", index=False)
    user = ManifestDataset(bench / "user.csv", gt=None, image_size=(16, 20))
    item = user[0]
    assert item["image"].shape == (3, 16, 20) and item["mask"].all() and item["camera"] is None
    with pytest.raises(ValueError, match="no split column"):
        ManifestDataset(bench / "user.csv", split="train")
    with pytest.raises(ValueError, match="gt must be"):
        ManifestDataset(bench / "user.csv", gt="voxels")


def test_dataset_over_a_manifest_without_strata(bench):
    """domain, occlusion and category are optional: items carry None / nan, and what needs a domain says so."""
    pd.read_csv(bench / "manifest.csv")[["sample_id", "image", "gt_mesh"]].to_csv(bench / "bare.csv", index=False)
    ds = ManifestDataset(bench / "bare.csv", gt=None)
    item = ds[0]
    assert item["domain"] is None and item["category"] is None and math.isnan(item["occlusion"])
    assert "domain" not in ds.frame.columns
    with pytest.raises(ValueError, match="no domain column"):
        ds.domains
    with pytest.raises(ValueError, match="domain='real' asked for but the manifest has no domain column"):
        ManifestDataset(bench / "bare.csv", domain="real")
    from sam3d_eval.train.data import ManifestTrainData

    with pytest.raises(ValueError, match="training needs a domain column"):
        ManifestTrainData(bench / "bare.csv", split=None)


def test_sampler_ratio_holds_within_binomial_error():
    domains = ["synthetic"] * 30 + ["real"] * 70
    n = 4000
    for ratio in (0.8, 0.5, 0.2):
        s = MixingSampler(domains, ratio, n, seed=4)
        idx = list(s)
        k = sum(domains[i] == "synthetic" for i in idx)
        sd = math.sqrt(n * ratio * (1 - ratio))
        assert abs(k - n * ratio) < 4 * sd
        assert len(idx) == n
    # Inside a domain the walk covers every item evenly (a permutation per pass).
    s = MixingSampler(domains, 0.5, 1000, seed=4)
    counts = np.bincount([i for i in s if i < 30], minlength=30)
    assert counts.max() - counts.min() <= 2
    assert set(MixingSampler(domains, 1.0, 50, seed=0)) <= set(range(30))
    assert set(MixingSampler(domains, 0.0, 50, seed=0)) <= set(range(30, 100))


def test_sampler_is_seeded_by_epoch_and_splits_ranks():
    domains = ["synthetic", "real"] * 20
    s = MixingSampler(domains, 0.5, 101, seed=9, epoch=3)
    again = MixingSampler(domains, 0.5, 101, seed=9)
    again.set_epoch(3)
    assert list(s) == list(again)
    s.set_epoch(4)
    assert list(s) != list(again)
    ranks = [list(MixingSampler(domains, 0.5, 101, seed=9, epoch=3, num_replicas=2, rank=r)) for r in (0, 1)]
    full = again.epoch_indices()
    assert len(ranks[0]) == len(ranks[1]) == 51 and ranks[0] == full[0::2] and ranks[1][:50] == full[1::2]
    with pytest.raises(ValueError, match="no synthetic samples"):
        MixingSampler(["real"] * 4, 0.5, 10)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        s.set_ratio(1.5)


def test_cli_data_make(tmp_path, capsys):
    out = tmp_path / "cli"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"shifts": {"all": 0, "jpeg": 1.0}, "shift_prob": 1.0}))
    rc = main(["data", "make", "--out", str(out), "--synthetic", "1", "--real", "2", "--seed", "2", "--size", "24",
               "--config", str(cfg), "--shift", "blur=0.5", "--quiet"])
    assert rc == 0
    assert "wrote 3 samples (1 synthetic, 2 real)" in capsys.readouterr().out
    frame = pd.read_parquet(out / "manifest.parquet")
    real = frame[frame["domain"] == "real"]
    assert (real["shift_jpeg"] > 0).all() and (real["shift_blur"] > 0).all() and (real["shift_blur"] <= 0.5).all()
    assert (real["shift_wear"] == 0).all()
    meta = json.loads((out / "generation.json").read_text())
    assert meta["config"]["image_size"] == 24 and meta["seed"] == 2
    assert main(["data", "make", "--out", str(out), "--synthetic", "1", "--shift", "fog=1", "--quiet"]) == 2
    assert "unknown shift 'fog'" in capsys.readouterr().err


def test_cli_data_make_paired(tmp_path, capsys):
    out = tmp_path / "paired"
    assert main(["data", "make", "--out", str(out), "--synthetic", "2", "--real", "2", "--size", "24", "--paired",
                 "--quiet"]) == 0
    frame = pd.read_parquet(out / "manifest.parquet").set_index("sample_id")
    assert list(frame["pair_id"]) == ["pair_000000", "pair_000001"] * 2
    for k in ("000000", "000001"):  # twins: same object and camera
        assert frame.loc[f"syn_{k}", ["category", "azimuth_deg"]].tolist() == frame.loc[f"real_{k}", ["category", "azimuth_deg"]].tolist()
    assert json.loads((out / "generation.json").read_text())["config"]["paired"] is True


def test_cli_data_make_reads_its_config_from_a_pipe(tmp_path, capsys):
    import os

    r, w = os.pipe()  # what `--config <(echo '{...}')` hands over: /dev/fd/N, not a regular file
    os.write(w, json.dumps({"shifts": {"all": 0}}).encode())
    os.close(w)
    try:
        assert main(["data", "make", "--out", str(tmp_path / "p"), "--real", "1", "--size", "24", "--quiet",
                     "--config", f"/dev/fd/{r}"]) == 0
    finally:
        os.close(r)
    assert (pd.read_parquet(tmp_path / "p" / "manifest.parquet")["shift_jpeg"] == 0).all()
    assert main(["data", "make", "--out", str(tmp_path / "q"), "--real", "1", "--config", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_cli_data_make_paired_with_unequal_counts_says_what_has_no_twin(tmp_path, capsys):
    assert main(["data", "make", "--out", str(tmp_path / "u"), "--synthetic", "2", "--real", "1", "--size", "24",
                 "--paired", "--quiet"]) == 0
    assert "the 1 beyond the first 1 of each domain have no twin" in capsys.readouterr().err


def test_cli_data_make_out_naming_a_file_is_a_one_line_error(tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    for out in (taken, taken / "bench"):  # the file itself, or a file where a parent folder would go
        assert main(["data", "make", "--out", str(out), "--synthetic", "1", "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"--out {out}: names an existing file" in err and "internal error" not in err
    assert taken.read_text() == "keep me"
