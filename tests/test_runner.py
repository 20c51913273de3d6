"""The runner: batch and resume invariance, run-folder rules, prediction sources (folders, splats, Predictor)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from sam3d_eval.data.manifest import load_manifest
from sam3d_eval.data.shapes import make_shape
from sam3d_eval.evaluate.protocols import get_protocol
from sam3d_eval.evaluate.runner import Progress, RunDirError, run_evaluation
from sam3d_eval.evaluate.sources import FolderSource, PredictorSource, load_prediction
from sam3d_eval.io import read_results
from sam3d_eval.io.mesh_io import save_mesh
from sam3d_eval.io.sniff import prediction_kind
from sam3d_eval.models import Predictor
from sam3d_eval.seeding import stream_seed
from sam3d_eval.structures import Meshes

PROTOCOL = get_protocol("default").with_overrides(num_samples=600)
SHAPES = ("sphere", "box", "torus")


def _save(path, name, shift=0.0, scale=1.0):
    v, f = make_shape(name)
    save_mesh(path, (torch.from_numpy(v * scale + shift), torch.from_numpy(f)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """7 samples: 6 scoreable (3 shapes x 2 domains), one without a prediction; an extra 'lab' column."""
    root = tmp_path_factory.mktemp("data")
    (root / "gt").mkdir()
    preds = root / "preds"
    preds.mkdir()
    rows = []
    for i in range(7):
        sid = f"s{i}"
        name = SHAPES[i % 3]
        _save(root / "gt" / f"{sid}.ply", name)
        if i < 6:
            _save(preds / f"{sid}.ply", name, shift=0.01 * i, scale=1.0 + 0.02 * i)
        rows.append(dict(sample_id=sid, gt_mesh=f"gt/{sid}.ply", domain="real" if i % 2 else "synthetic",
                         occlusion=i / 7, category=name, lab=f"lab{i % 2}"))
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return load_manifest(root / "manifest.csv"), FolderSource(preds)


def _metrics(frame):
    cols = [c for c in frame.attrs["metrics"]]
    return frame.set_index("sample_id")[cols + ["status", "transform"]].sort_index()


def test_results_do_not_depend_on_batch_size_and_carry_strata(dataset, tmp_path):
    manifest, source = dataset
    a = run_evaluation(source, manifest, PROTOCOL, tmp_path / "a", batch_size=1)
    b = run_evaluation(source, manifest, PROTOCOL, tmp_path / "b", batch_size=4)
    pd.testing.assert_frame_equal(_metrics(a.frame), _metrics(b.frame))  # bitwise: same draws per sample
    f = a.frame.set_index("sample_id")
    assert f.loc["s6", "status"] == "failed" and f.loc["s6", "error"] == "no prediction for this sample"
    assert np.isnan(f.loc["s6", "chamfer_l2"]) and f.loc["s0", "chamfer_l2"] < f.loc["s5", "chamfer_l2"]
    assert list(f["lab"]) == ["lab0", "lab1"] * 3 + ["lab0"] and f.loc["s3", "domain"] == "real"
    assert f.loc["s2", "occlusion"] == pytest.approx(2 / 7) and f.loc["s1", "category"] == "box"
    assert set(f["fingerprint"]) == {PROTOCOL.fingerprint()} and set(f["source"]) == {source.identity}
    assert json.loads(f.loc["s0", "transform"])["gt_normalization"]["scale"] > 0
    assert (a.scored, a.failed, a.skipped) == (7, 1, 0)
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["fingerprint"] == PROTOCOL.fingerprint() and run["protocol"]["num_samples"] == 600
    assert run["metadata"]["torch"] == torch.__version__ and run["source"]["identity"] == source.identity
    assert len(list((tmp_path / "b" / "results").glob("part-*.parquet"))) == 2  # one part per batch


def test_loader_workers_give_the_same_rows(dataset, tmp_path):
    """The prefetching DataLoader path (CUDA's default) stores what the inline CPU path stores."""
    manifest, source = dataset
    inline = run_evaluation(source, manifest, PROTOCOL, None, batch_size=3).frame
    workers = run_evaluation(source, manifest, PROTOCOL, None, batch_size=3, num_workers=2).frame
    pd.testing.assert_frame_equal(inline.set_index("sample_id")[_metrics(inline).columns],
                                  workers.set_index("sample_id")[_metrics(inline).columns])


def test_interrupted_run_resumes_without_loss_or_duplicates(dataset, tmp_path):
    manifest, source = dataset
    full = run_evaluation(source, manifest, PROTOCOL, tmp_path / "full", batch_size=2).frame

    calls = []

    def stop_after_two(frame):
        calls.append(len(frame))
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(source, manifest, PROTOCOL, tmp_path / "cut", batch_size=2, on_batch=stop_after_two)
    assert len(read_results(tmp_path / "cut")) == 4  # both finished batches were stored
    with pytest.raises(RunDirError, match="--resume"):
        run_evaluation(source, manifest, PROTOCOL, tmp_path / "cut")

    class Count(Progress):
        def start(self, total, skipped):
            self.total, self.skipped = total, skipped

    progress = Count()
    resumed = run_evaluation(source, manifest, PROTOCOL, tmp_path / "cut", batch_size=3, resume=True, progress=progress)
    assert (progress.total, progress.skipped) == (3, 4)
    frame = resumed.frame
    assert sorted(frame["sample_id"]) == [f"s{i}" for i in range(7)] and frame.attrs["duplicates"] == 0
    pd.testing.assert_frame_equal(_metrics(frame), _metrics(full))
    # resuming again retries only the failed sample; the retry replaces its row
    again = run_evaluation(source, manifest, PROTOCOL, tmp_path / "cut", resume=True)
    assert (again.skipped, again.scored) == (6, 1)
    assert len(again.frame) == 7 and again.frame.attrs["duplicates"] == 1
    assert len(json.loads((tmp_path / "cut" / "run.json").read_text())["invocations"]) == 3


def test_resume_after_a_rank_died_with_another_rank_count(dataset, tmp_path, monkeypatch):
    """3 ranks start (rank 1 dies before writing anything), then one process resumes: nothing lost or doubled."""
    from sam3d_eval.evaluate import runner

    manifest, source = dataset
    full = run_evaluation(source, manifest, PROTOCOL, tmp_path / "full", batch_size=2).frame
    sent = []  # rank 0's broadcast, replayed to the later ranks as torch.distributed would deliver it
    monkeypatch.setattr(runner, "_barrier", lambda: None)
    monkeypatch.setattr(runner, "_broadcast", lambda obj: sent.append(obj) or obj if obj is not None else sent[0])
    # every rank hashes its share and all_gather_object hands everyone every share: here, all of them at once
    all_keys = runner.sample_keys(manifest.to_dict("records"), source)
    monkeypatch.setattr(runner, "_all_gather", lambda obj: [all_keys])
    for rank in (0, 2):  # rank 1 dies at start; rank 2 runs after rank 0 has written (the race to avoid)
        monkeypatch.setattr(runner, "dist_info", lambda rank=rank: (rank, 3))
        part = run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", batch_size=2)
        assert part.scored == (3 if rank == 0 else 2)  # ids 0, 3, 6 / 2, 5 of the 7 sorted ids
    monkeypatch.setattr(runner, "dist_info", lambda: (0, 1))
    res = run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", batch_size=2, resume=True)
    assert (res.skipped, res.scored) == (4, 3)  # s6 failed on rank 0 and is retried with rank 1's s1, s4
    assert sorted(res.frame["rank"].unique()) == [0, 2] and res.frame.attrs["duplicates"] == 1
    pd.testing.assert_frame_equal(_metrics(res.frame), _metrics(full))


def test_resume_refuses_another_protocol_or_source(dataset, tmp_path):
    manifest, source = dataset
    run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", batch_size=8)
    with pytest.raises(RunDirError, match="fingerprint"):
        run_evaluation(source, manifest, PROTOCOL.with_overrides(seed=3), tmp_path / "r", resume=True)
    other = FolderSource(source.folder, identity="folder:elsewhere")
    with pytest.raises(RunDirError, match="folder:elsewhere"):
        run_evaluation(other, manifest, PROTOCOL, tmp_path / "r", resume=True)


def test_mixed_type_extra_column_is_stored_as_text(dataset, tmp_path):
    manifest, source = dataset
    mixed = manifest.copy()
    mixed["batch_tag"] = pd.Series([1, "a", None, 2.5, "b", 3, None], dtype=object)
    res = run_evaluation(source, mixed, PROTOCOL, tmp_path / "r", batch_size=2)
    tags = [None if pd.isna(v) else v for v in res.frame["batch_tag"]]
    assert tags == ["1", "a", None, "2.5", "b", "3", None]


def test_run_dir_that_is_a_file(dataset, tmp_path):
    manifest, source = dataset
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunDirError, match="must be a folder"):
        run_evaluation(source, manifest, PROTOCOL, tmp_path / "f")


# ---------------------------------------------------------------------------------------------------
# sources


def _ply_header(path, props, faces=0):
    lines = ["ply", "format ascii 1.0", "element vertex 0", *(f"property float {p}" for p in props)]
    if faces:
        lines += [f"element face {faces}", "property list uchar int vertex_indices"]
    path.write_text("\n".join(lines + ["end_header"]) + "\n")


def test_prediction_kind(tmp_path):
    _ply_header(tmp_path / "m.ply", "xyz", faces=3)
    _ply_header(tmp_path / "c.ply", "xyz")
    _ply_header(tmp_path / "s.ply", ["x", "y", "z", "opacity", "scale_0", "rot_0"])
    (tmp_path / "bad.ply").write_bytes(b"junk")
    kinds = {p: prediction_kind(tmp_path / p) for p in ("m.ply", "c.ply", "s.ply", "bad.ply")}
    assert kinds == {"m.ply": "mesh", "c.ply": "pointcloud", "s.ply": "splat", "bad.ply": "mesh"}
    assert prediction_kind(tmp_path / "x.npz") == "pointcloud" and prediction_kind(tmp_path / "x.GLB") == "mesh"
    with pytest.raises(ValueError, match="not a prediction file"):
        prediction_kind(tmp_path / "x.txt")


def test_splats_are_sampled_from_their_own_stream(tmp_path):
    from sam3d_eval.io.splats import load_splats, splats_to_points

    n = 50
    rng = np.random.default_rng(0)
    props = {"x": rng.normal(size=n), "y": rng.normal(size=n), "z": rng.normal(size=n),
             "f_dc_0": np.zeros(n), "f_dc_1": np.zeros(n), "f_dc_2": np.zeros(n), "opacity": np.full(n, 5.0),
             "scale_0": np.full(n, -4.0), "scale_1": np.full(n, -4.0), "scale_2": np.full(n, -6.0),
             "rot_0": np.ones(n), "rot_1": np.zeros(n), "rot_2": np.zeros(n), "rot_3": np.zeros(n)}
    head = ["ply", "format ascii 1.0", f"element vertex {n}", *(f"property float {k}" for k in props), "end_header"]
    body = [" ".join(f"{props[k][i]:.6g}" for k in props) for i in range(n)]
    (tmp_path / "s.ply").write_text("\n".join(head + body) + "\n")
    a, kind = load_prediction(tmp_path / "s.ply", PROTOCOL, "sample-7")
    b, _ = load_prediction(tmp_path / "s.ply", PROTOCOL, "sample-8")
    ref = splats_to_points(load_splats(tmp_path / "s.ply"), PROTOCOL.num_samples, seed=stream_seed(0, "sample-7", "pred_splat"))
    assert kind == "splat" and torch.equal(a.points_list()[0], ref.points_list()[0])
    assert not torch.equal(a.points_list()[0], b.points_list()[0])


class SphereModel:
    """A toy Predictor: a sphere whose radius is the mask's area fraction; records what it was given."""

    name = "toy"
    identity = "toy:v1"

    def __init__(self):
        self.calls = []

    def predict(self, images, masks, cameras):
        self.calls.append((images.shape, images.dtype, float(images.max()), masks.dtype, list(cameras)))
        v, f = make_shape("sphere")
        frac = masks.float().mean((1, 2, 3))
        return Meshes([torch.from_numpy(v) * (0.5 + r) for r in frac], [torch.from_numpy(f)] * len(frac))


def test_predictor_source_reads_images_and_masks(tmp_path):
    from PIL import Image

    assert isinstance(SphereModel(), Predictor) and not isinstance(object(), Predictor)
    rows = []
    for i, size in enumerate([(16, 12), (16, 12), (8, 8)]):
        img = np.full((size[1], size[0], 3), 255 if i == 0 else 128, np.uint8)
        mask = np.zeros((size[1], size[0]), np.uint8)
        mask[: size[1] // (4 if i == 1 else 2)] = 255  # p1: a quarter of the image -> a smaller sphere
        Image.fromarray(img).save(tmp_path / f"i{i}.png")
        Image.fromarray(mask).save(tmp_path / f"m{i}.png")
        _save(tmp_path / f"g{i}.ply", "sphere")
        rows.append(dict(sample_id=f"p{i}", image=f"i{i}.png", mask=f"m{i}.png", gt_mesh=f"g{i}.ply",
                         domain="real", occlusion=0.5, category="ball", camera=json.dumps({"f": i})))
    rows.append(dict(sample_id="p3", image="nope.png", mask="m0.png", gt_mesh="g0.ply", domain="real",
                     occlusion=0.5, category="ball", camera=""))
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    model = SphereModel()
    res = run_evaluation(PredictorSource(model), load_manifest(tmp_path / "m.csv"), PROTOCOL, batch_size=4)
    f = res.frame.set_index("sample_id")
    assert list(f["status"]) == ["ok", "ok", "ok", "failed"] and "nope.png" in f.loc["p3", "error"]
    assert set(f["source"]) == {"toy:v1"}
    shapes = sorted(c[0] for c in model.calls)
    assert shapes == [torch.Size([1, 3, 8, 8]), torch.Size([2, 3, 12, 16])]  # grouped by image size
    assert all(c[1] == torch.float32 and c[3] == torch.bool for c in model.calls)
    assert max(c[2] for c in model.calls) == 1.0  # white image -> 1.0
    assert {"f": 0} in [cam for c in model.calls for cam in c[4]]
    # p0's sphere (half mask: radius x1) is its GT; p1's (quarter mask: radius x0.75) is far worse
    assert f.loc["p1", "chamfer_l2"] > 5 * f.loc["p0", "chamfer_l2"]


def test_failing_predictor_fails_its_samples_only(tmp_path):
    class Broken(SphereModel):
        def predict(self, images, masks, cameras):
            raise RuntimeError("CUDA out of memory (simulated)")

    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "i.png")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "m.png")
    _save(tmp_path / "g.ply", "box")
    pd.DataFrame([dict(sample_id="a", image="i.png", mask="m.png", gt_mesh="g.ply", domain="real", occlusion=0,
                       category="c")]).to_csv(tmp_path / "m.csv", index=False)
    res = run_evaluation(PredictorSource(Broken()), load_manifest(tmp_path / "m.csv"), PROTOCOL)
    assert res.frame.loc[0, "status"] == "failed" and "simulated" in res.frame.loc[0, "error"]
