"""GT surface samples reused across runs (`evaluate.gt_cache`): the numbers are bitwise the ones drawn
without the cache, for every normalisation, batch size and path; entries are keyed by content, sample and
protocol; the cache is bounded; `compare` keeps one across its sides."""

import pickle

import pandas as pd
import pytest
import torch

from compare_fixtures import PROTOCOL_SAMPLES, make_pair_dataset
from sam3d_eval.data.manifest import load_manifest
from sam3d_eval.data.shapes import make_shape
from sam3d_eval.evaluate import runner
from sam3d_eval.evaluate.gt_cache import GTSampleCache, GTSamples
from sam3d_eval.evaluate.protocols import get_protocol
from sam3d_eval.evaluate.runner import run_evaluation
from sam3d_eval.evaluate.scoring import score_batch
from sam3d_eval.evaluate.sources import FolderSource
from sam3d_eval.structures import Meshes, Pointclouds

SHA_A, SHA_B = "a" * 64, "b" * 64
PROTOCOL = get_protocol("default").with_overrides(num_samples=PROTOCOL_SAMPLES)


def _mesh(name="sphere", scale=1.0, shift=0.0):
    v, f = make_shape(name)
    return Meshes([torch.from_numpy(v * scale + shift)], [torch.from_numpy(f)])


def _same_scores(a, b):
    """Two `BatchScores` hold the same rows, every metric bitwise (NaN where the other has NaN)."""
    assert a.sample_ids == b.sample_ids and a.status == b.status and a.error == b.error
    assert a.transforms == b.transforms and a.notes == b.notes and list(a.metrics) == list(b.metrics)
    for k, x in a.metrics.items():
        y = b.metrics[k]
        assert torch.equal(x.isnan(), y.isnan()) and torch.equal(x.nan_to_num(7.0), y.nan_to_num(7.0)), k


# ---------------------------------------------------------------------------------------------------
# the store itself


def test_keys_need_a_content_hash():
    assert GTSampleCache.key(SHA_A, "s1", "fp") == (SHA_A, "s1", "fp")
    for bad in (None, "none", "unavailable", "A" * 64, "a" * 63, float("nan")):
        assert GTSampleCache.key(bad, "s1", "fp") is None
    cache = GTSampleCache()
    assert cache.get(None, _mesh()) is None and not cache.put(None, _mesh(), GTSamples(torch.zeros(2, 3), None))
    assert (cache.hits, cache.misses, len(cache)) == (0, 0, 0)


def test_entries_are_copies_and_answer_only_a_like_gt():
    cache = GTSampleCache()
    gt = _mesh()
    pts, nrm = torch.rand(10, 3), torch.rand(10, 3)
    want = pts.clone()
    key = GTSampleCache.key(SHA_A, "s1", "fp")
    assert cache.put(key, gt, GTSamples(pts, nrm)) and not cache.put(key, gt, GTSamples(pts, nrm))
    pts += 1  # the caller's tensors are not the stored ones
    got = cache.get(key, gt)
    assert torch.equal(got.points, want) and torch.equal(got.normals, nrm)
    got.points.zero_()  # nor are the ones handed out
    assert torch.equal(cache.get(key, gt).points, want)
    doubled = Meshes([gt.verts_list()[0].double()], gt.faces_list())
    assert cache.get(key, doubled) is None  # another dtype draws other numbers
    assert cache.get(key, Pointclouds([gt.verts_list()[0]])) is None  # another kind too
    assert cache.get(GTSampleCache.key(SHA_A, "s2", "fp"), gt) is None  # another sample: another stream
    assert cache.get(GTSampleCache.key(SHA_A, "s1", "fp2"), gt) is None  # another protocol
    assert cache.get(GTSampleCache.key(SHA_B, "s1", "fp"), gt) is None  # another file
    assert (cache.hits, cache.misses) == (2, 5)


def test_a_full_cache_keeps_what_it_holds():
    one = GTSamples(torch.zeros(100, 3), torch.zeros(100, 3))  # 2,400 bytes
    cache = GTSampleCache(max_bytes=2 * one.nbytes())
    gt = _mesh()
    keys = [GTSampleCache.key(SHA_A, f"s{i}", "fp") for i in range(4)]
    assert [cache.put(k, gt, one) for k in keys] == [True, True, False, False]
    assert cache.nbytes == 2 * one.nbytes() and cache.refused == 2
    # a second pass in the same order hits the first entries (least-recently-used eviction would hit none)
    assert [cache.get(k, gt) is not None for k in keys] == [True, True, False, False]
    assert GTSampleCache(max_bytes=0).put(keys[0], gt, one) is False
    with pytest.raises(ValueError, match="max_bytes"):
        GTSampleCache(max_bytes=-1)


def test_a_cache_travels_bitwise_and_merges():
    cache = GTSampleCache()
    gt = _mesh()
    k1, k2 = GTSampleCache.key(SHA_A, "s1", "fp"), GTSampleCache.key(SHA_A, "s2", "fp")
    s1 = GTSamples(torch.rand(50, 3), torch.rand(50, 3), torch.rand(3), torch.tensor(0.37))
    cache.put(k1, gt, s1)
    shipped = pickle.loads(pickle.dumps(cache.subset([k1, k2])))
    got = shipped.get(k1, gt)
    for a, b in zip(got.tensors(), s1.tensors()):
        assert torch.equal(a, b) and a.dtype == b.dtype
    assert shipped.get(k2, gt) is None
    shipped.put(k2, gt, GTSamples(torch.rand(50, 3), None))
    back = pickle.loads(pickle.dumps(shipped.added()))
    assert len(back) == 1  # only what was drawn there comes back
    cache.merge(back)
    assert len(cache) == 2 and (cache.hits, cache.misses, cache.stored) == (1, 1, 2)
    assert cache.get(k2, gt).normals is None


# ---------------------------------------------------------------------------------------------------
# score_batch with a cache


@pytest.mark.parametrize("preset", ["default", "zeroshape"])
def test_score_batch_numbers_are_the_same_with_the_cache(preset):
    protocol = get_protocol(preset).with_overrides(num_samples=400)
    names = ["sphere", "box", "torus"]
    gts = [_mesh(n, 1.0 + 0.2 * i, 0.1 * i) for i, n in enumerate(names)]
    preds = [_mesh(n, 1.05 + 0.2 * i, 0.1 * i + 0.02) for i, n in enumerate(names)]
    ids, keys = ["a", "b", "c"], [SHA_A, SHA_B, None]  # c has no content key: never cached
    plain = score_batch(ids, preds, gts, protocol)
    cache = GTSampleCache()
    first = score_batch(ids, preds, gts, protocol, gt_keys=keys, gt_cache=cache)
    assert len(cache) == 2 and cache.hits == 0
    second = score_batch(ids, preds, gts, protocol, gt_keys=keys, gt_cache=cache)
    assert cache.hits == 2
    alone = score_batch(["b"], preds[1:2], gts[1:2], protocol, gt_keys=[SHA_B], gt_cache=cache)
    assert cache.hits == 3
    for res in (first, second):
        _same_scores(plain, res)
    _same_scores(score_batch(["b"], preds[1:2], gts[1:2], protocol), alone)


def test_point_cloud_ground_truth_and_failures_with_the_cache():
    protocol = PROTOCOL
    gt_cloud = Pointclouds([_mesh().verts_list()[0]])
    pred = _mesh(scale=1.1)
    cache = GTSampleCache()
    plain = score_batch(["p"], [pred], [gt_cloud], protocol)
    for _ in range(2):
        _same_scores(plain, score_batch(["p"], [pred], [gt_cloud], protocol, gt_keys=[SHA_A], gt_cache=cache))
    assert cache.hits == 1 and cache.get(GTSampleCache.key(SHA_A, "p", protocol.fingerprint()), gt_cloud).normals is None
    # a GT that cannot be sampled fails as without a cache, and is not stored
    flat = Meshes([torch.zeros(3, 3)], [torch.tensor([[0, 1, 2]])])
    before = len(cache)
    res = score_batch(["z"], [pred], [flat], protocol, gt_keys=[SHA_B], gt_cache=cache)
    assert res.status == ["failed"] and res.error == score_batch(["z"], [pred], [flat], protocol).error
    assert len(cache) == before
    with pytest.raises(ValueError, match="1 gt_keys for 2 samples"):
        score_batch(["a", "b"], [pred, pred], [gt_cloud, gt_cloud], protocol, gt_keys=[SHA_A], gt_cache=cache)


# ---------------------------------------------------------------------------------------------------
# the runner and compare


@pytest.fixture
def pair(tmp_path):
    manifest, a, b = make_pair_dataset(tmp_path, 6)
    return load_manifest(manifest), FolderSource(a), FolderSource(b), manifest


def _numbers(frame):
    """The columns a run's numbers and outcome live in, by sample id (not the run id or write time); text
    columns as objects with None for missing values (a stored frame reads them back as strings)."""
    metrics = list(frame.attrs["metrics"])
    out = frame.set_index("sample_id")[metrics].astype("float64")
    for col in ["status", "error", "transform", "notes", "gt_sha256"]:
        out[col] = pd.Series([None if pd.isna(v) else v for v in frame[col]], index=out.index, dtype=object)
    return out.sort_index()


def test_runs_share_gt_samples_with_the_same_numbers(pair, tmp_path):
    manifest, a, b, _ = pair
    plain = [run_evaluation(s, manifest, PROTOCOL, None, batch_size=4, score_workers=0).frame for s in (a, b)]
    cache = GTSampleCache()
    first = run_evaluation(a, manifest, PROTOCOL, None, batch_size=4, gt_cache=cache, score_workers=0).frame
    assert (len(cache), cache.hits) == (6, 0)
    second = run_evaluation(b, manifest, PROTOCOL, tmp_path / "b", batch_size=5, gt_cache=cache).frame
    assert cache.hits == 6  # every GT sample of B's run came from A's
    pd.testing.assert_frame_equal(_numbers(plain[0]), _numbers(first), check_exact=True)
    pd.testing.assert_frame_equal(_numbers(plain[1]), _numbers(second), check_exact=True)
    # another protocol draws its own
    other = PROTOCOL.with_overrides(seed=PROTOCOL.seed + 1)
    run_evaluation(b, manifest, other, None, gt_cache=cache)
    assert cache.hits == 6 and len(cache) == 12


def test_compare_keeps_one_cache_across_its_sides(pair, tmp_path, monkeypatch):
    from sam3d_eval.evaluate import gt_cache as gt_cache_module
    from sam3d_eval.workflows.compare import compare_sides

    _, a, b, manifest_path = pair
    caches = []
    real = runner.score_batch

    def recording(ids, *x, **k):
        if k.get("gt_cache") is not None and k["gt_cache"] not in caches:
            caches.append(k["gt_cache"])
        return real(ids, *x, **k)

    monkeypatch.setattr(runner, "score_batch", recording)
    kw = dict(data=manifest_path, protocol=PROTOCOL, n_resamples=200)
    res = compare_sides(a.folder, b.folder, runs_dir=tmp_path / "runs", **kw)
    assert len(caches) == 1 and caches[0].hits == 6 and len(caches[0]) == 6

    class NoRoom(GTSampleCache):  # the same comparison with nothing reused
        def __init__(self, max_bytes=0):
            super().__init__(0)

    monkeypatch.setattr(gt_cache_module, "GTSampleCache", NoRoom)
    caches.clear()
    res2 = compare_sides(a.folder, b.folder, runs_dir=tmp_path / "runs2", **kw)
    assert len(caches) == 1 and caches[0].hits == 0 and len(caches[0]) == 0
    for s1, s2 in zip(res.flat_sides, res2.flat_sides):
        assert s1.scored == s2.scored == 6
        pd.testing.assert_frame_equal(_numbers(s1.frame), _numbers(s2.frame), check_exact=True)
