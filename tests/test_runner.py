"""The runner: batch and resume invariance, run-folder rules, prediction sources (folders, splats, Predictor)."""

import json
import pathlib

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


# ---------------------------------------------------------------------------------------------------
# one bad sample never stops a run


def _fuzz(tmp_path, with_bad):
    from fuzz_fixtures import make_fuzz_dataset

    path = make_fuzz_dataset(tmp_path / ("bad" if with_bad else "good"), with_bad=with_bad)
    return load_manifest(path), FolderSource(path.parent / "pred")


def _by_id(frame, ids):
    cols = list(frame.attrs["metrics"]) + ["transform"]
    return frame.set_index("sample_id").loc[list(ids), cols]


def test_fuzzed_files_fail_their_own_rows_only(tmp_path, monkeypatch):
    """Bad splats (scale_* = 100 and 45), a NaN-vertex mesh, a string-typed npz and a ground truth whose loader
    raises an unexpected type, all in one batch with good samples: the good rows are stored exactly as
    without the bad ones, each bad one is a failed row with its reason."""
    from fuzz_fixtures import BAD, GOOD

    from sam3d_eval.evaluate import sources

    good_manifest, good_source = _fuzz(tmp_path, with_bad=False)
    manifest, source = _fuzz(tmp_path, with_bad=True)
    # "bad_gt": a good prediction whose ground truth (a copy of g0's) makes the loader raise a KeyError, as a
    # parser that fails in an unforeseen way does
    bad_gt = tmp_path / "bad" / "gt" / "bad_gt.ply"
    bad_gt.write_bytes((tmp_path / "bad" / "gt" / "g0.ply").read_bytes())
    (tmp_path / "bad" / "pred" / "bad_gt.ply").write_bytes((tmp_path / "bad" / "pred" / "g0.ply").read_bytes())
    manifest = pd.concat([manifest, manifest.iloc[[0]].assign(sample_id="bad_gt", gt_mesh=str(bad_gt))],
                         ignore_index=True)
    source = FolderSource(tmp_path / "bad" / "pred")
    real_load_mesh = sources.load_mesh

    def load_mesh(path, device="cpu"):
        if pathlib.Path(path) == bad_gt:
            raise KeyError("trimesh went looking for a key")
        return real_load_mesh(path, device=device)

    monkeypatch.setattr(sources, "load_mesh", load_mesh)

    alone = run_evaluation(good_source, good_manifest, PROTOCOL, tmp_path / "alone", batch_size=16).frame
    mixed = run_evaluation(source, manifest, PROTOCOL, tmp_path / "mixed", batch_size=16)
    assert (mixed.scored, mixed.failed) == (len(GOOD) + len(BAD) + 1, len(BAD) + 1)
    stored = read_results(tmp_path / "mixed").set_index("sample_id")
    for sid, reason in {**BAD, "bad_gt": "KeyError: 'trimesh went looking for a key'"}.items():
        assert stored.loc[sid, "status"] == "failed", sid
        assert reason in stored.loc[sid, "error"], (sid, stored.loc[sid, "error"])
        assert np.isnan(stored.loc[sid, "chamfer_l2"])
    assert (stored.loc[list(GOOD), "status"] == "ok").all()
    pd.testing.assert_frame_equal(_by_id(mixed.frame, GOOD), _by_id(alone, GOOD))  # bitwise the same numbers


class _FinishBreaksOn(FolderSource):
    """A source whose batched `finish` raises whenever its batch holds `bad` (a model that dies on one input)."""

    bad = "g1"

    def finish(self, items, device="cpu"):
        if any(it.sample_id == self.bad for it in items):
            raise RuntimeError(f"kernel died on {self.bad}")
        return super().finish(items, device)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_batched_step_that_raises_is_retried_sample_by_sample(tmp_path, workers):
    from fuzz_fixtures import GOOD

    manifest, plain = _fuzz(tmp_path, with_bad=False)
    source = _FinishBreaksOn(plain.folder)
    ref = run_evaluation(plain, manifest, PROTOCOL, tmp_path / "ref", batch_size=8).frame
    res = run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", batch_size=8, num_workers=workers)
    f = res.frame.set_index("sample_id")
    assert f.loc["g1", "status"] == "failed" and f.loc["g1", "error"] == "RuntimeError: kernel died on g1"
    rest = [s for s in GOOD if s != "g1"]
    assert (f.loc[rest, "status"] == "ok").all() and res.failed == 1
    pd.testing.assert_frame_equal(_by_id(res.frame, rest), _by_id(ref, rest))


def test_a_source_that_raises_in_load_fails_that_row(dataset):
    manifest, source = dataset

    class Raising(FolderSource):
        def load(self, row, protocol):
            if row["sample_id"] == "s2":
                raise IndexError("list index out of range")
            return super().load(row, protocol)

    res = run_evaluation(Raising(source.folder), manifest, PROTOCOL, batch_size=8)
    f = res.frame.set_index("sample_id")
    assert f.loc["s2", "status"] == "failed" and "IndexError: list index out of range" in f.loc["s2", "error"]
    assert (f.loc[["s0", "s1", "s3", "s4", "s5"], "status"] == "ok").all()


# ---------------------------------------------------------------------------------------------------
# the run folder's lock

_HOLDER = (
    "import sys\n"
    "from sam3d_eval.evaluate.runner import RunLock\n"
    "with RunLock(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.read()\n"
)


def _hold_lock(folder):
    """A second process holding `folder`'s lock until its stdin is closed."""
    import subprocess
    import sys

    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_with_the_holders_pid(dataset, tmp_path):
    manifest, source = dataset
    proc = _hold_lock(tmp_path / "r")
    try:
        with pytest.raises(RunDirError, match=rf"another evaluation .*\(pid {proc.pid}\)"):
            run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", resume=True)
        assert not (tmp_path / "r" / "run.json").exists() and not (tmp_path / "r" / "results").exists()
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    res = run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", resume=True)  # released with its process
    assert res.scored == 7


def test_the_lock_is_held_while_scoring_and_released_after(dataset, tmp_path):
    """Two resumes of one folder: the one that starts while the other scores is refused (it would score the
    same samples and race on run.json), naming this process; the lock goes with the run, errors included."""
    import os

    manifest, source = dataset
    refused = []

    def second_writer(frame):
        if not refused:
            with pytest.raises(RunDirError, match=rf"\(pid {os.getpid()}\)") as err:
                run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", resume=True)
            refused.append(str(err.value))

    run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", batch_size=3, on_batch=second_writer)
    assert refused and "\n" not in refused[0]
    assert len(json.loads((tmp_path / "r" / "run.json").read_text())["invocations"]) == 1

    def interrupt(frame):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", resume=True, on_batch=interrupt)
    again = run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", resume=True)  # not locked out
    assert again.skipped == 6


# ---------------------------------------------------------------------------------------------------
# the manifest schema of a resumed run


def _code_manifests(dataset, tmp_path):
    """The dataset's manifest with a text column ``code`` = "001", "002", ... as Parquet, and its CSV twin
    (which reads the column as int64)."""
    manifest, _ = dataset
    frame = pd.read_csv(pathlib.Path(manifest.attrs["manifest"]))
    frame["gt_mesh"] = [str(pathlib.Path(manifest.attrs["root"]) / p) for p in frame["gt_mesh"]]
    frame["code"] = [f"{i:03d}" for i in range(1, len(frame) + 1)]
    root = pathlib.Path(manifest.attrs["root"])
    pq_path, csv_path = tmp_path / "m.parquet", tmp_path / "m.csv"
    frame.to_parquet(pq_path, index=False)
    frame.to_csv(csv_path, index=False)
    # the manifests live outside the data folder: load them as if they were inside it
    from sam3d_eval.data.manifest import validate_manifest

    def load(path):
        raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        raw.attrs["manifest"] = str(path)
        return validate_manifest(raw, root)

    return load(pq_path), load(csv_path)


def test_resume_with_a_csv_twin_stores_the_runs_types(dataset, tmp_path):
    _, source = dataset
    parquet, csv = _code_manifests(dataset, tmp_path)
    assert csv["code"].dtype == "int64"

    def stop(frame):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(source, parquet, PROTOCOL, tmp_path / "r", batch_size=2, on_batch=stop)
    assert json.loads((tmp_path / "r" / "run.json").read_text())["strata_types"]["code"] == "string"
    res = run_evaluation(source, csv, PROTOCOL, tmp_path / "r", batch_size=2, resume=True)
    frame = read_results(tmp_path / "r")  # readable: every part stores code as text
    assert frame.attrs["skipped_parts"] == {} and len(frame) == 7
    assert set(frame["code"]) == {str(i) for i in range(1, 8)}  # the twin's values, as the run's type
    import pyarrow.parquet as pq

    types = {str(pq.read_schema(p).field("code").type) for p in (tmp_path / "r" / "results").glob("part-*.parquet")}
    assert types == {"string"} and res.scored == 7


def test_resume_refuses_a_manifest_whose_columns_do_not_cast(dataset, tmp_path):
    _, source = dataset
    parquet, csv = _code_manifests(dataset, tmp_path)
    run_evaluation(source, csv, PROTOCOL, tmp_path / "r", batch_size=4)
    before = sorted(p.name for p in (tmp_path / "r" / "results").iterdir())
    with pytest.raises(RunDirError, match=r"manifest column 'code' holds string values that cannot be stored as int64"):
        run_evaluation(source, parquet, PROTOCOL, tmp_path / "r", resume=True)
    with pytest.raises(RunDirError, match=r"has a column 'extra'"):
        run_evaluation(source, csv.assign(extra="x"), PROTOCOL, tmp_path / "r", resume=True)
    with pytest.raises(RunDirError, match=r"lacks the column 'code'"):
        run_evaluation(source, csv.drop(columns=["code"]), PROTOCOL, tmp_path / "r", resume=True)
    assert sorted(p.name for p in (tmp_path / "r" / "results").iterdir()) == before  # nothing written


# ---------------------------------------------------------------------------------------------------
# input problems found before run.json is written


def test_a_metric_named_column_is_refused_before_anything_is_written(dataset, tmp_path):
    manifest, source = dataset
    for name in ("chamfer_l2", "fscore@0.05", "precision@0.01", "lpips", "pred_sha256"):
        with pytest.raises(ValueError, match=rf"'{name}' have the names of result columns"):
            run_evaluation(source, manifest.assign(**{name: 1.0}), PROTOCOL, tmp_path / "r")
        assert not (tmp_path / "r").exists()


def test_a_start_that_fails_before_any_part_leaves_no_run_behind(dataset, tmp_path):
    manifest, source = dataset

    class Dies(Progress):
        def start(self, total, skipped):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(source, manifest, PROTOCOL, tmp_path / "new", progress=Dies())
    assert not (tmp_path / "new").exists()  # this call created it: nothing of it is left
    (tmp_path / "kept").mkdir()
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(source, manifest, PROTOCOL, tmp_path / "kept", progress=Dies())
    assert not (tmp_path / "kept" / "run.json").exists() and (tmp_path / "kept").is_dir()
    assert run_evaluation(source, manifest, PROTOCOL, tmp_path / "kept").scored == 7  # no --resume needed


@pytest.mark.parametrize("record, problem", [
    ([1, 2], "expected a JSON object, got a list"),
    ("run", "expected a JSON object, got a string"),
    ({"run_id": "r", "fingerprint": "f", "source": "folder:x"}, "'source' is a string, expected an object"),
    ({"run_id": "r", "fingerprint": "f", "source": {"identity": "x"}, "invocations": {}},
     "'invocations' is an object, expected a list"),
    ({"fingerprint": "f", "source": {"identity": "x"}}, "'run_id' is missing"),
])
def test_run_json_that_is_not_a_run_record(dataset, tmp_path, record, problem):
    manifest, source = dataset
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=problem):
        run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", resume=True)


def test_results_that_is_a_file_is_refused_up_front(dataset, tmp_path):
    manifest, source = dataset
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "results").write_text("x")
    scored = []
    with pytest.raises(RunDirError, match="results: must be the folder of result parts"):
        run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", on_batch=scored.append)
    assert not scored and not (tmp_path / "r" / "run.json").exists()


def test_the_lock_is_released_even_when_a_forked_child_shares_it(tmp_path):
    """A loader worker or a model's process pool forked while the run holds the lock shares the lock file's
    descriptor: releasing must unlock it, not only close this process's copy."""
    import os
    import time

    from sam3d_eval.evaluate.runner import RunLock

    lock = RunLock(tmp_path).acquire()
    pid = os.fork()
    if pid == 0:  # the child sleeps holding the inherited descriptor, then leaves without cleanup
        time.sleep(3)
        os._exit(0)
    try:
        lock.release()
        RunLock(tmp_path).acquire().release()  # raised "another evaluation is writing" before
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def test_a_cuda_error_stops_the_run_instead_of_failing_every_sample(dataset, tmp_path):
    """A device-side CUDA error leaves the context unusable: it is an error of the run, raised, not a
    per-sample failure that every later sample would repeat."""
    manifest, source = dataset

    class Broken(FolderSource):
        def finish(self, items, device="cpu"):
            raise RuntimeError("CUDA error: device-side assert triggered")

    broken = Broken(source.folder)
    with pytest.raises(RuntimeError, match="CUDA error"):
        run_evaluation(broken, manifest, PROTOCOL, tmp_path / "r", batch_size=4)
