"""Protocol presets on fixtures with hand-checkable answers, and the shared evaluation path."""

import dataclasses
import json
import math
import types

import numpy as np
import pytest
import torch

from sam3d_eval.evaluate.protocols import CHAMFER_VARIANTS, PROTOCOLS, Protocol, get_protocol
from sam3d_eval.evaluate.scoring import score_batch
from sam3d_eval.evaluate.surface import surface_metrics
from sam3d_eval.ops.knn import knn_points
from sam3d_eval.ops.sample_points import sample_points_from_meshes
from sam3d_eval.seeding import torch_generator
from sam3d_eval.structures import Meshes, Pointclouds

SMALL = dict(num_samples=600, align_points=600)


def _sphere_dirs(n: int = 400) -> torch.Tensor:
    """Fibonacci directions plus the six axis directions (so every bounding box is exactly [-1, 1]^3)."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    r = (1 - z * z).sqrt()
    phi = math.pi * (3 - math.sqrt(5)) * i
    d = torch.stack([r * phi.cos(), r * phi.sin(), z], 1)
    axes = torch.cat([torch.eye(3), -torch.eye(3)]).double()
    return torch.cat([d, axes]).float()


def _sphere(radius: float, shift=(0.0, 0.0, 0.0)) -> Pointclouds:
    """Points r*u on a sphere with radial normals. Two such spheres share directions, so every point's
    nearest neighbour on the other one is its radial partner, at distance |r1 - r2| exactly."""
    u = _sphere_dirs()
    return Pointclouds([u * radius + torch.tensor(shift)], normals=[u])


def _cube(scale: float = 1.0) -> Meshes:
    v = torch.tensor([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)]) * scale
    f = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return Meshes([v], [f])


def _score(pred, gt, protocol, sid: str = "s") -> types.SimpleNamespace:
    """One sample through `score_batch`: its metrics (floats), transform and notes; it must be ok."""
    res = score_batch([sid], [pred], [gt], protocol)
    assert res.status == ["ok"], res.error
    return types.SimpleNamespace(metrics={k: float(v[0]) for k, v in res.metrics.items()}, transform=res.transforms[0],
                                 notes=res.notes[0])


def _small(name: str, **extra) -> Protocol:
    p = get_protocol(name)
    kw = dict(SMALL, **extra)
    if "emd" in p.metrics:
        kw.setdefault("emd_points", 1000)  # >= the cloud size: EMD of the whole clouds, no subsampling
    return p.with_overrides(**kw)


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_identical_shapes_score_perfectly_under_every_preset(name):
    p = _small(name)
    row = _score(_sphere(0.7, (0.1, 0.2, 0.3)), _sphere(0.7, (0.1, 0.2, 0.3)), p)
    for col in (c for v in p.chamfer for c in CHAMFER_VARIANTS[v]):
        # float32 rounding of the normalisation leaves ~1e-8 on unsquared distances
        assert row.metrics[col] == pytest.approx(0.0, abs=1e-6), col
    for tau in p.taus:
        assert row.metrics[f"fscore@{tau:g}"] == 1.0
    for col in ("normal_consistency", "normal_consistency_signed"):
        if col in p.metrics:
            assert row.metrics[col] == pytest.approx(1.0, abs=1e-6)
    if "emd" in p.metrics:
        assert row.metrics["emd"] == pytest.approx(0.0, abs=1e-5)
    if "volume_iou" in p.metrics:  # a point-cloud prediction has no volume: NaN with a note, not an error
        assert math.isnan(row.metrics["volume_iou"]) and any("volume_iou" in n for n in row.notes)
    assert set(p.columns()) <= set(row.metrics)
    assert row.transform["alignment"]["method"] == p.alignment


# GT sphere radius 1, prediction the same sphere scaled by 1.05 about its centre: after each preset's
# normalisation, every nearest-neighbour distance is the radius gap d (both directions), so
# chamfer_l2 = 2 d^2, chamfer_l1 = d, occnet = (d, d^2), F@tau = [d < tau].
HAND = {
    # GT bbox side 2 -> 1: radii 0.5 and 0.525, d = 0.025
    "default": {"chamfer_l2": 2 * 0.025**2, "chamfer_l1": 0.025, "fscore@0.01": 0.0, "fscore@0.02": 0.0,
                "fscore@0.05": 1.0, "normal_consistency": 1.0},
    # GT longest edge 2 -> 10: radii 5 and 5.25, d = 0.25
    "meshrcnn": {"chamfer_l2": 2 * 0.25**2, "fscore@0.1": 0.0, "fscore@0.3": 1.0, "fscore@0.5": 1.0,
                 "normal_consistency": 1.0, "normal_consistency_signed": 1.0},
    "occnet": {"chamfer_l1_occnet": 0.025, "chamfer_l2_occnet": 0.025**2, "normal_consistency": 1.0},
    # each shape normalised on its own: the scaled copy becomes identical to the GT
    "sam3d": {"chamfer_l2": 0.0, "fscore@0.01": 1.0, "emd": 0.0},
    "zeroshape": {"chamfer_l1": 0.0, "fscore@0.005": 1.0, "fscore@0.2": 1.0},
}


@pytest.mark.parametrize("name", list(HAND))
def test_scaled_sphere_hand_checked(name):
    row = _score(_sphere(1.05 * 0.8, (1.0, 2.0, 3.0)), _sphere(0.8, (1.0, 2.0, 3.0)), _small(name))
    for key, want in HAND[name].items():
        assert row.metrics[key] == pytest.approx(want, rel=1e-4, abs=1e-6), key


def test_per_shape_normalisation_removes_translation_and_icp_rotation():
    """sam3d: a shifted, rescaled copy rotated 20 degrees about z scores perfectly after [-1,1] + ICP.

    The cloud's longest bbox side is along z (two far points on the axis), so the rotation leaves the
    normalising scale unchanged and the normalised prediction is the GT rotated and translated."""
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(1000, 3, generator=g) * torch.tensor([0.3, 0.6, 1.0])
    pts[:200] += torch.tensor([0.5, 0.3, 0.1])
    pts[0], pts[1] = torch.tensor([0.0, 0.0, 5.0]), torch.tensor([0.0, 0.0, -5.0])
    c, s = math.cos(math.radians(20)), math.sin(math.radians(20))
    R = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    gt, pred = Pointclouds([pts]), Pointclouds([(pts @ R) * 2.0 + 5.0])
    p = _small("sam3d", num_samples=1000, align_points=1000, icp_iterations=100)
    row = _score(pred, gt, p)
    none = _score(pred, gt, p.with_overrides(alignment="none"))
    assert row.metrics["chamfer_l2"] < 1e-10 and row.metrics["fscore@0.01"] == 1.0
    assert row.metrics["emd"] == pytest.approx(0.0, abs=1e-5)
    assert none.metrics["chamfer_l2"] > 1e-3 and none.metrics["fscore@0.01"] < 0.1
    tr = row.transform
    assert tr["pred_normalization"]["scale"] == pytest.approx(0.1) and tr["gt_normalization"]["scale"] == pytest.approx(0.2)
    # the recorded rotation undoes the applied one (row convention: pred @ R_icp ~ gt)
    np.testing.assert_allclose(np.array(tr["alignment"]["R"]), R.T.numpy(), atol=1e-5)
    assert tr["alignment"]["method"] == "icp" and tr["alignment"]["converged"]


def test_volume_iou_of_nested_cubes_closed_form():
    """Cube vs the cube scaled 1.1, joint unit-cube normalisation, 64^3 grid over the pair's box [-0.55, 0.55]^3:
    the GT occupies the cells whose centres lie inside [-0.5, 0.5] on every axis."""
    p = dataclasses.replace(PROTOCOLS["default"], metrics=("chamfer", "volume_iou"), num_samples=500)
    row = _score(_cube(1.1), _cube(1.0), p)
    h = 1.1 / 64
    centres = -0.55 + h * (np.arange(64) + 0.5)
    inside = int((np.abs(centres) < 0.5).sum())
    assert row.metrics["volume_iou"] == pytest.approx(inside**3 / 64**3, abs=1e-6)
    assert not row.notes


def test_default_is_surface_metrics_and_matches_brute_force():
    """`surface_metrics` and the default protocol are one path; check it against a float64 brute force."""
    a, b = _cube(1.0), _cube(1.2)
    p = PROTOCOLS["default"].with_overrides(num_samples=1500, seed=3)
    row = _score(b, a, p, sid="0")  # surface_metrics numbers its samples "0", "1", ...
    sm = surface_metrics(b, a, num_samples=1500, seed=3).rows()[0]
    assert sm == {k: row.metrics[k] for k in sm}
    # brute force: same normalisation (GT side 1, centred) and the same seeded streams of sample "0"
    gp = sample_points_from_meshes(a, 1500, generator=torch_generator(3, "0", "gt_surface"), face_order=True)[0].double()
    pp = sample_points_from_meshes(b, 1500, generator=torch_generator(3, "0", "pred_surface"), face_order=True)[0].double()
    d = torch.cdist(pp, gp)
    d_pg, d_gp = d.min(1).values, d.min(0).values
    assert row.metrics["chamfer_l2"] == pytest.approx(float((d_pg**2).mean() + (d_gp**2).mean()), rel=1e-4)
    assert row.metrics["chamfer_l1"] == pytest.approx(float(0.5 * (d_pg.mean() + d_gp.mean())), rel=1e-4)
    for tau in (0.01, 0.02, 0.05):
        pr, rc = float((d_pg < tau).double().mean()), float((d_gp < tau).double().mean())
        f = 2 * pr * rc / (pr + rc) if pr + rc else 0.0
        assert row.metrics[f"fscore@{tau:g}"] == pytest.approx(f, abs=1e-6)


def test_point_cloud_without_normals_gives_nan_with_a_note():
    pred = Pointclouds([_sphere_dirs() * 0.5])
    row = _score(pred, _cube(), _small("meshrcnn"))
    assert math.isnan(row.metrics["normal_consistency"]) and math.isnan(row.metrics["normal_consistency_signed"])
    assert any("without normals" in n for n in row.notes)
    assert math.isfinite(row.metrics["chamfer_l2"])


def test_batched_ragged_point_clouds_match_one_at_a_time():
    g = torch.Generator().manual_seed(1)
    clouds = [torch.rand(n, 3, generator=g) for n in (300, 500)]
    gts = [torch.rand(n, 3, generator=g) for n in (400, 350)]
    p = _small("occnet", num_samples=450).with_overrides(alignment="icp")
    both = score_batch(["a", "b"], [Pointclouds([c]) for c in clouds], [Pointclouds([c]) for c in gts], p)
    for b, sid in enumerate("ab"):
        one = score_batch([sid], [Pointclouds([clouds[b]])], [Pointclouds([gts[b]])], p)
        for k, v in one.metrics.items():
            assert torch.equal(both.metrics[k][b : b + 1], v, ) or (v.isnan().all() and both.metrics[k][b].isnan()), k


def test_protocol_record_and_errors():
    p = get_protocol("default").with_overrides(num_samples=1234, taus=[0.1], seed=None)
    d = p.to_dict()
    assert d["name"] == "default" and d["version"] == "2" and d["num_samples"] == 1234 and d["taus"] == [0.1]
    assert d["overrides"] == {"num_samples": 1234, "taus": [0.1]}
    assert json.loads(json.dumps(d)) == d
    assert p.label() == "default v2 (overrides: num_samples=1234, taus=0.1)"
    assert get_protocol("default").with_overrides(num_samples=100_000) is get_protocol("default")
    with pytest.raises(ValueError, match="available: default, sam3d, meshrcnn, occnet, zeroshape"):
        get_protocol("nope")
    with pytest.raises(ValueError, match="cannot override"):
        p.with_overrides(name="x")
    with pytest.raises(ValueError, match="unknown alignment"):
        dataclasses.replace(p, alignment="magic")
    with pytest.raises(ValueError, match="taus must be positive"):
        p.with_overrides(taus=[-1.0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.num_samples = 3
    for preset in PROTOCOLS.values():
        assert preset.source and preset.__doc__


def test_record_is_to_dict_plus_the_fingerprint_computed_once(monkeypatch):
    import hashlib

    import sam3d_eval.evaluate.protocols as protocols

    p = get_protocol("sam3d").with_overrides(num_samples=321)
    calls = []
    real = hashlib.sha256

    def counting(data=b""):
        calls.append(data)
        return real(data)

    monkeypatch.setattr(protocols.hashlib, "sha256", counting)
    record = p.record()
    assert record == {**p.to_dict(), "fingerprint": p.fingerprint()}
    assert p.record() == record and len(calls) == 1  # cached on the instance
    monkeypatch.undo()
    # the cache is no field: equality, hashing, replace and the stored record are as before
    fresh = dataclasses.replace(p)
    assert fresh == p and hash(fresh) == hash(p) and "_fingerprint" not in fresh.to_dict()
    assert fresh.fingerprint() == record["fingerprint"] == Protocol.from_dict(p.to_dict()).fingerprint()
    other = dataclasses.replace(p, seed=1)
    assert other.record()["fingerprint"] != record["fingerprint"]
    assert json.loads(json.dumps(record)) == record


def test_alignment_names_are_the_library_names():
    """evaluate.protocols writes the alignment names out (reading presets loads no torch); they are these."""
    from sam3d_eval.evaluate.protocols import ALIGNMENTS
    from sam3d_eval.ops import alignment

    assert ALIGNMENTS == alignment.ALIGNMENTS
    assert alignment.rotation_grid(Protocol.__dataclass_fields__["rotations"].default).shape == (24, 3, 3)
    with pytest.raises(ValueError, match="unknown rotation grid"):
        dataclasses.replace(get_protocol("default"), rotations="so3")
    assert dataclasses.replace(get_protocol("default"), rotations="so3_12").rotations == "so3_12"


def test_presets_hold_the_published_settings():
    assert PROTOCOLS["meshrcnn"].taus == (0.1, 0.3, 0.5) and PROTOCOLS["meshrcnn"].num_samples == 10_000
    assert PROTOCOLS["zeroshape"].taus == (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
    assert PROTOCOLS["sam3d"].num_samples == 1_000_000 and PROTOCOLS["sam3d"].voxel_resolution == 64
    assert PROTOCOLS["occnet"].num_samples == 100_000 and PROTOCOLS["occnet"].chamfer == ("occnet",)
    assert PROTOCOLS["default"].columns() == [
        "chamfer_l2", "chamfer_l1", "fscore@0.01", "fscore@0.02", "fscore@0.05", "normal_consistency"]


def test_knn_shared_not_recomputed(monkeypatch):
    """Chamfer, F-score and normal consistency share one KNN query per direction (no alignment)."""
    import sam3d_eval.evaluate.scoring as mod

    calls = []
    monkeypatch.setattr(mod, "knn_points", lambda *a, **k: calls.append(1) or knn_points(*a, **k))
    _score(_cube(1.1), _cube(), PROTOCOLS["meshrcnn"].with_overrides(num_samples=300))
    assert len(calls) == 2


def test_alignment_subset_is_spread_over_each_element():
    from sam3d_eval.evaluate.scoring import _spread_subset

    pts = torch.arange(2 * 10 * 3, dtype=torch.float32).reshape(2, 10, 3)
    sub, lengths = _spread_subset(pts, torch.tensor([10, 3]), 4)
    assert sub.shape == (2, 4, 3) and lengths.tolist() == [4, 3]
    # element 0: indices 0, 2, 5, 7 cover the whole sample; element 1 (3 points) keeps its own points first
    assert torch.equal(sub[0], pts[0, [0, 2, 5, 7]])
    assert torch.equal(sub[1, :3], pts[1, :3])
    same, none = _spread_subset(pts, None, 20)
    assert same is pts and none is None
