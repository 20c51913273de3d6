"""Visible and hidden surfaces: the `ops.visibility` labels (a cube face-on, a mask, the depth test, a float64
ray-casting reference), the visibility split of `score_batch` and the runner, and the input-view appearance."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import trimesh

from sam3d_eval.evaluate.appearance import AppearanceScorer
from sam3d_eval.evaluate.protocols import PROTOCOLS, Protocol, get_protocol, protocol_from_settings
from sam3d_eval.evaluate.scoring import InputCamera, metric_names, score_batch
from sam3d_eval.io.results import direction, metric_columns
from sam3d_eval.ops.rasterize import rasterize_meshes
from sam3d_eval.ops.sample_points import sample_points_from_meshes
from sam3d_eval.ops.visibility import OCCLUDER_HIDDEN, SELF_HIDDEN, VISIBLE, point_visibility, project_points
from sam3d_eval.render.cameras import look_at_extrinsics
from sam3d_eval.seeding import torch_generator
from sam3d_eval.structures import Meshes, Pointclouds

SIZE = 64
K64 = [[100.0, 0.0, 32.0], [0.0, 100.0, 32.0], [0.0, 0.0, 1.0]]
# Looking down +z at the origin from 3 units: x right, y down in the image.
FACE_ON = {"K": K64, "R": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], "T": [0.0, 0.0, 3.0],
           "image_size": [SIZE, SIZE]}
PARTS = ("visible", "self_hidden", "occluder_hidden")


def _mesh(t: trimesh.Trimesh, dtype=torch.float32) -> Meshes:
    return Meshes([torch.tensor(t.vertices, dtype=dtype)], [torch.tensor(t.faces, dtype=torch.int64)])


def _samples(mesh: Meshes, n: int, seed: int = 0):
    pts, nrm = sample_points_from_meshes(mesh, n, return_normals=True, seed=seed)
    return pts[0], nrm[0]


def _camera(cam: dict, dtype=torch.float32):
    return [torch.tensor(cam[k], dtype=dtype) for k in ("K", "R", "T")]


def _left_half_mask() -> torch.Tensor:
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    mask[:, : SIZE // 2] = True  # the right half of the image is covered by another object
    return mask


def _protocol(n: int = 2000, **settings) -> Protocol:
    base = get_protocol("default")
    return protocol_from_settings({"base": "default", "num_samples": n,
                                   "metrics": [*base.metrics, "visibility"], **settings})


def _vis(row: dict) -> dict:
    return {k: v for k, v in row.items() if k.startswith(("chamfer_acc_", "chamfer_comp_")) or
            (k.startswith("recall@") and k.endswith(PARTS))}


# ----------------------------------------------------------------------------------------------------
# the op


def test_a_cube_seen_face_on_shows_exactly_its_front_face():
    cube = _mesh(trimesh.creation.box(extents=(1.0, 1.0, 1.0)))
    pts, nrm = _samples(cube, 6000)
    K, R, T = _camera(FACE_ON)
    res = point_visibility(pts, cube.verts_list()[0], cube.faces_list()[0], K, R, T, (SIZE, SIZE), normals=nrm)
    assert res.labels.dtype == torch.int64 and res.labels.shape == (6000,) and bool(res.in_image.all())
    # Each face by its outward normal: -z faces the camera; +z and the four sides face away (perspective).
    for axis in range(3):
        for sign in (-1.0, 1.0):
            on_face = nrm[:, axis] == sign
            assert int(on_face.sum()) > 500
            want = VISIBLE if (axis, sign) == (2, -1.0) else SELF_HIDDEN
            assert bool((res.labels[on_face] == want).all()), (axis, sign)


def test_a_mask_covering_half_the_image_hides_that_half_of_the_front_face():
    cube = _mesh(trimesh.creation.box(extents=(1.0, 1.0, 1.0)))
    pts, nrm = _samples(cube, 6000)
    K, R, T = _camera(FACE_ON)
    res = point_visibility(pts, cube.verts_list()[0], cube.faces_list()[0], K, R, T, (SIZE, SIZE), normals=nrm,
                           mask=_left_half_mask())
    front = nrm[:, 2] == -1.0
    u = project_points(pts.double(), *_camera(FACE_ON, torch.float64))[:, 0]
    right, left = front & (u > SIZE / 2 + 1.5), front & (u < SIZE / 2 - 1.5)  # clear of the mask's edge
    assert int(right.sum()) > 300 and int(left.sum()) > 300
    assert bool((res.labels[right] == OCCLUDER_HIDDEN).all()) and bool((res.labels[left] == VISIBLE).all())
    assert bool((res.labels[~front] == SELF_HIDDEN).all())  # the mask never overrides the self tests
    # Without a mask nothing is occluder-hidden.
    plain = point_visibility(pts, cube.verts_list()[0], cube.faces_list()[0], K, R, T, (SIZE, SIZE), normals=nrm)
    assert not bool((plain.labels == OCCLUDER_HIDDEN).any())


def test_the_depth_test_hides_a_box_behind_another():
    front = trimesh.creation.box(extents=(1.0, 1.0, 0.2))
    behind = trimesh.creation.box(extents=(0.4, 0.4, 0.4))
    behind.apply_translation((0.0, 0.0, 1.0))  # straight behind the front box, fully in its shadow
    beside = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    beside.apply_translation((0.9, 0.0, 0.5))  # off to the side: nothing in front of it
    scene = _mesh(trimesh.util.concatenate([front, behind, beside]))
    pts, nrm = _samples(scene, 20000)
    K, R, T = _camera(FACE_ON)
    v, f = scene.verts_list()[0], scene.faces_list()[0]
    facing = nrm[:, 2] == -1.0
    on_behind = facing & (pts[:, 2] > 0.7) & (pts[:, 0].abs() < 0.3)
    on_beside = facing & (pts[:, 0] > 0.75)
    on_front = facing & (pts[:, 2] < -0.05)
    assert min(int(on_behind.sum()), int(on_beside.sum()), int(on_front.sum())) > 30
    for normals in (nrm, None):  # the front faces face the camera: only the depth test can hide them
        res = point_visibility(pts, v, f, K, R, T, (SIZE, SIZE), normals=normals)
        assert bool((res.labels[on_behind] == SELF_HIDDEN).all())
        assert bool((res.labels[on_beside] == VISIBLE).all()) and bool((res.labels[on_front] == VISIBLE).all())


def test_points_outside_the_image_or_behind_the_camera_are_self_hidden():
    cube = _mesh(trimesh.creation.box(extents=(1.0, 1.0, 1.0)))
    pts, nrm = _samples(cube, 3000)
    v, f = cube.verts_list()[0], cube.faces_list()[0]
    _, R, T = _camera(FACE_ON)
    zoomed = torch.tensor([[400.0, 0.0, 32.0], [0.0, 400.0, 32.0], [0.0, 0.0, 1.0]])  # the front face spans 160 px
    res = point_visibility(pts, v, f, zoomed, R, T, (SIZE, SIZE), normals=nrm, mask=torch.zeros(SIZE, SIZE))
    out = ~res.in_image
    front = nrm[:, 2] == -1.0
    assert int((out & front).sum()) > 100 and int((~out & front).sum()) > 50
    assert bool((res.labels[out] == SELF_HIDDEN).all())  # out of frame: never occluder-hidden, even under a mask
    assert bool((res.labels[~out & front] == OCCLUDER_HIDDEN).all())
    # A camera turned around sees nothing: every point is behind it.
    behind = point_visibility(pts, v, f, zoomed, torch.diag(torch.tensor([-1.0, 1.0, -1.0])),
                              torch.tensor([0.0, 0.0, -3.0]), (SIZE, SIZE), normals=nrm)
    assert not bool(behind.in_image.any()) and bool((behind.labels == SELF_HIDDEN).all())


def _ray_cast_reference(points, normals, verts, faces, K, R, T, image_size):
    """Float64 labels (0 visible, 1 self-hidden) by casting the segment camera -> point against every
    triangle (Moller-Trumbore), independent of the rasteriser and of any pixel grid."""
    points, normals, verts = points.double(), normals.double(), verts.double()
    K, R, T = K.double(), R.double(), T.double()
    centre = -R.T @ T
    cam = points @ R.T + T
    uv = cam @ K.T
    u, v = uv[:, 0] / cam[:, 2], uv[:, 1] / cam[:, 2]
    H, W = image_size
    inside = (cam[:, 2] > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    facing = ((points - centre) * normals).sum(1) < 0
    v0, v1, v2 = (verts[faces[:, k]] for k in range(3))
    e1, e2 = v1 - v0, v2 - v0
    occluded = torch.zeros(len(points), dtype=torch.bool)
    for lo in range(0, len(points), 256):
        d = (points[lo : lo + 256] - centre)[:, None, :]  # (p, 1, 3): t = 1 reaches the point
        h = torch.linalg.cross(d.expand(-1, len(faces), -1), e2[None].expand(d.shape[0], -1, -1), dim=2)
        a = (e1[None] * h).sum(2)
        ok = a.abs() > 1e-12
        f = 1.0 / torch.where(ok, a, torch.ones_like(a))
        s = (centre - v0)[None]
        uu = f * (s * h).sum(2)
        q = torch.linalg.cross(s.expand(d.shape[0], -1, -1), e1[None].expand(d.shape[0], -1, -1), dim=2)
        vv = f * (d * q).sum(2)
        t = f * (e2[None] * q).sum(2)
        hit = ok & (uu >= 0) & (vv >= 0) & (uu + vv <= 1) & (t > 1e-9) & (t < 1 - 1e-6)
        occluded[lo : lo + 256] = hit.any(1)
    return torch.where(inside & facing & ~occluded, VISIBLE, SELF_HIDDEN)


def test_labels_match_a_float64_ray_casting_reference():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    plate = trimesh.creation.box(extents=(0.35, 0.3, 0.05))
    plate.apply_translation((0.15, -0.05, -0.85))  # between the camera and the sphere, covering part of it
    scene = _mesh(trimesh.util.concatenate([sphere, plate]), torch.float64)
    R, T = look_at_extrinsics(torch.tensor([[0.4, -0.3, -3.0]], dtype=torch.float64))
    K = torch.tensor([[230.0, 0.0, 47.5], [0.0, 220.0, 49.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    size = (96, 96)
    pts, nrm = _samples(scene, 4000, seed=3)
    v, f = scene.verts_list()[0], scene.faces_list()[0]
    ref = _ray_cast_reference(pts, nrm, v, f, K, R[0], T[0], size)
    assert 0.2 < float((ref == VISIBLE).double().mean()) < 0.6
    got64 = point_visibility(pts, v, f, K, R[0], T[0], size, normals=nrm).labels
    got32 = point_visibility(pts.float(), v.float(), f, K.float(), R[0].float(), T[0].float(), size,
                             normals=nrm.float()).labels
    # The rasterised depth buffer disagrees with exact rays only within about a pixel of an occluding edge.
    assert float((got64 == ref).double().mean()) > 0.985
    assert float((got32 == got64).double().mean()) > 0.998
    # Points well inside the plate's shadow on the sphere are hidden by the depth test, as the reference says.
    uv = project_points(pts, K, R[0], T[0])
    shadow = (nrm[:, 2] < -0.5) & (pts[:, 2] > -0.6) & (ref == SELF_HIDDEN)
    assert int(shadow.sum()) > 20 and bool((got64[shadow] == SELF_HIDDEN).float().mean() > 0.95)
    assert bool(torch.isfinite(uv).all())


def test_the_op_refuses_bad_inputs():
    cube = _mesh(trimesh.creation.box())
    pts, nrm = _samples(cube, 10)
    v, f = cube.verts_list()[0], cube.faces_list()[0]
    K, R, T = _camera(FACE_ON)
    with pytest.raises(ValueError, match="mask must be"):
        point_visibility(pts, v, f, K, R, T, (SIZE, SIZE), mask=torch.ones(SIZE, SIZE + 1))
    with pytest.raises(ValueError, match="focal"):
        point_visibility(pts, v, f, torch.zeros(3, 3), R, T, (SIZE, SIZE))
    with pytest.raises(ValueError, match="normals"):
        point_visibility(pts, v, f, K, R, T, (SIZE, SIZE), normals=nrm[:5])
    with pytest.raises(ValueError, match="tolerance"):
        point_visibility(pts, v, f, K, R, T, (SIZE, SIZE), tolerance=-1.0)


# ----------------------------------------------------------------------------------------------------
# the visibility split in score_batch


def test_visibility_is_a_metric_name_of_its_own_in_no_preset():
    assert all("visibility" not in p.metrics for p in PROTOCOLS.values())
    p = _protocol()
    cols = p.visibility_columns()
    assert cols == ["chamfer_acc_visible", "chamfer_comp_visible", "chamfer_comp_self_hidden",
                    "chamfer_comp_occluder_hidden", "recall@0.05_visible", "recall@0.05_self_hidden",
                    "recall@0.05_occluder_hidden"]
    assert all(c in metric_names(p) for c in cols) and not any(c.startswith("share") for c in metric_names(p))
    assert all(direction(c) == ("lower" if c.startswith("chamfer") else "higher") for c in cols)
    assert get_protocol("default").visibility_columns() == []
    with pytest.raises(ValueError, match="unknown chamfer variants or metrics"):
        get_protocol("default").with_overrides(metrics=("chamfer", "visibilty"))
    with pytest.raises(ValueError, match="twice"):
        get_protocol("default").with_overrides(metrics=("chamfer", "visibility", "visibility"))
    q = get_protocol("default").with_overrides(metrics=(*get_protocol("default").metrics, "visibility"))
    assert q.overrides == (("metrics", q.metrics),) and "metrics=chamfer,fscore,normal_consistency,visibility" in q.label()
    # A protocol file asking for it is the same protocol, with the same fingerprint.
    from_file = protocol_from_settings({"base": "default", "metrics": [*get_protocol("default").metrics, "visibility"]})
    assert Protocol.from_dict(q.to_dict()) == q and from_file == q and from_file.fingerprint() == q.fingerprint()
    # occnet has no taus: no recall columns
    occ = get_protocol("occnet").with_overrides(metrics=(*get_protocol("occnet").metrics, "visibility"))
    assert occ.visibility_columns() == ["chamfer_acc_visible"] + [f"chamfer_comp_{x}" for x in PARTS]


def _sphere_scene():
    """A sphere seen face-on, the right half of the image covered by another object."""
    return _mesh(trimesh.creation.icosphere(subdivisions=3, radius=0.5)), FACE_ON, _left_half_mask()


def test_a_prediction_equal_to_the_gt_scores_zero_on_every_part():
    gt, cam, mask = _sphere_scene()
    # With no normalisation the GT samples are the raw draws of the "gt_surface" stream: a prediction holding
    # exactly those points is at distance 0 everywhere.
    p = _protocol(3000, normalization="none")
    pts = sample_points_from_meshes(gt, 3000, generator=torch_generator(p.seed, "s", "gt_surface"), face_order=True)
    row = score_batch(["s"], [Pointclouds([pts[0]])], [gt], p, cameras=[cam], masks=[mask]).rows()[0]
    vis = _vis(row)
    assert len(vis) == 7 and row["status"] == "ok"
    assert all(vis[f"chamfer_comp_{x}"] == 0.0 and vis[f"recall@0.05_{x}"] == 1.0 for x in PARTS)
    assert vis["chamfer_acc_visible"] == 0.0
    shares = [n for n in row["notes"] if n.startswith("visibility shares of the 3000 GT samples")]
    assert len(shares) == 1 and "occluder_hidden 0.0000" not in shares[0]
    # The same mesh under the default normalisation: sampling noise only, on every part.
    row = score_batch(["s"], [gt], [gt], _protocol(3000), cameras=[cam], masks=[mask]).rows()[0]
    assert all(0 < v < 5e-4 for v in _vis(row).values() if v < 0.5)
    assert all(row[f"recall@0.05_{x}"] > 0.99 for x in PARTS)


def test_a_prediction_missing_its_back_half_loses_completeness_only_there():
    gt, cam, mask = _sphere_scene()
    v, f = gt.verts_list()[0], gt.faces_list()[0]
    front_half = Meshes([v], [f[v[f].mean(1)[:, 2] < 0.0]])  # the half that faces the camera (z < 0)
    row = score_batch(["s"], [front_half], [gt], _protocol(3000), cameras=[cam], masks=[mask]).rows()[0]
    assert row["chamfer_comp_self_hidden"] > 0.05 and row["recall@0.05_self_hidden"] < 0.4
    assert row["chamfer_comp_visible"] < 5e-4 and row["chamfer_comp_occluder_hidden"] < 5e-4
    assert row["recall@0.05_visible"] == 1.0 and row["chamfer_acc_visible"] < 1e-3
    # The split changes no other number, and the parts' recalls weighted by their shares are the recall.
    whole = score_batch(["s"], [front_half], [gt], _protocol(3000)).rows()[0]
    assert all(whole[k] == row[k] for k in get_protocol("default").columns())
    note = next(n for n in row["notes"] if n.startswith("visibility shares"))
    share = {x: float(note.split(f"{x} ")[1].split(",")[0].split(" ")[0]) for x in PARTS}
    assert sum(share.values()) == pytest.approx(1.0, abs=2e-4)
    assert sum(share[x] * row[f"recall@0.05_{x}"] for x in PARTS) == pytest.approx(row["recall@0.05"], abs=1e-3)


def test_without_a_camera_or_mask_every_visibility_column_is_nan_with_a_note():
    gt, cam, mask = _sphere_scene()
    p = _protocol(500)
    cases = {
        "no-camera": (None, mask, "visibility unavailable: the manifest row has no camera"),
        "no-mask": (cam, None, "visibility unavailable: the manifest row has no mask"),
        "bad-camera": ({**cam, "R": [[2, 0, 0], [0, 1, 0], [0, 0, 1]]}, mask,
                       "visibility unavailable: camera: R must be a rotation (orthonormal, det +1)"),
        "bad-mask": (cam, torch.ones(10, 10), "visibility unavailable: the mask is 10x10 pixels (HxW) but the "
                                              "camera's image_size is 64x64"),
        "unreadable": (cam, OSError("masks/x.png: cannot read the image"),
                       "visibility unavailable: the mask could not be read (masks/x.png: cannot read the image)"),
    }
    ids = list(cases)
    res = score_batch(ids, [gt] * len(ids), [gt] * len(ids), p, cameras=[c[0] for c in cases.values()],
                      masks=[c[1] for c in cases.values()])
    for row in res.rows():
        assert row["status"] == "ok" and row["chamfer_l2"] >= 0
        assert all(math.isnan(v) for v in _vis(row).values()) and len(_vis(row)) == 7
        assert cases[row["sample_id"]][2] in row["notes"], row["notes"]
    none = score_batch(["a"], [gt], [gt], p).rows()[0]
    assert "visibility unavailable: the manifest row has no camera" in none["notes"]
    assert all(math.isnan(v) for v in _vis(none).values())


def test_the_split_does_not_depend_on_the_batch():
    gt, cam, mask = _sphere_scene()
    box = _mesh(trimesh.creation.box(extents=(0.8, 0.6, 0.5)))
    R, T = look_at_extrinsics(torch.tensor([[1.5, -1.0, -2.5]], dtype=torch.float64))
    tilted = {"K": K64, "R": R[0].tolist(), "T": T[0].tolist(), "image_size": [SIZE, SIZE]}
    v, f = gt.verts_list()[0], gt.faces_list()[0]
    samples = {
        "a": (Meshes([v * 1.05], [f]), gt, cam, mask),
        "b": (box, box, tilted, torch.ones(SIZE, SIZE)),
        "c": (Meshes([v], [f[v[f].mean(1)[:, 2] < 0.1]]), gt, json.dumps(cam), mask.numpy()),
    }
    p = _protocol(1500)
    alone = {s: score_batch([s], [x[0]], [x[1]], p, cameras=[x[2]], masks=[x[3]]).rows()[0] for s, x in samples.items()}
    for order in (["a", "b", "c"], ["c", "a", "b"]):
        res = score_batch(order, [samples[s][0] for s in order], [samples[s][1] for s in order], p,
                          cameras=[samples[s][2] for s in order], masks=[samples[s][3] for s in order])
        for row in res.rows():
            ref = alone[row["sample_id"]]
            assert row["notes"] == ref["notes"]
            for k, value in _vis(row).items():
                assert value == ref[k] or (math.isnan(value) and math.isnan(ref[k])), (row["sample_id"], k)
    assert alone["b"]["chamfer_comp_visible"] > 0 and not math.isnan(alone["b"]["chamfer_comp_self_hidden"])


def test_the_input_camera_in_the_protocols_frame_sees_the_same_pixels():
    gt, cam, _ = _sphere_scene()
    camera = InputCamera.parse(json.dumps(cam))
    v, f = gt.verts_list()[0].double(), gt.faces_list()[0]
    centre, scale = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64), torch.tensor(1.7, dtype=torch.float64)
    moved = camera.in_frame(centre, scale)
    a = project_points(v, camera.K, camera.R, camera.T)
    b = project_points((v - centre) * scale, moved.K, moved.R, moved.T)
    assert torch.allclose(a[:, :2], b[:, :2], atol=1e-9) and torch.allclose(a[:, 2] * scale, b[:, 2])
    for bad, match in (({"K": K64}, "no R, T, image_size"), ({**cam, "image_size": [64]}, "image_size"),
                       ({**cam, "K": [[1, 0, 0], [1, 1, 0], [0, 0, 1]]}, "K must be")):
        with pytest.raises(ValueError, match=match):
            InputCamera.parse(bad)


# ----------------------------------------------------------------------------------------------------
# input-view appearance


def test_input_view_appearance_of_a_perfect_and_a_shifted_prediction():
    gt, cam, _ = _sphere_scene()
    p = get_protocol("default").with_overrides(num_samples=300, appearance_views=2, appearance_image_size=32)
    v, f = gt.verts_list()[0], gt.faces_list()[0]
    shifted = Meshes([v + torch.tensor([0.15, 0.0, 0.0])], [f])
    res = score_batch(["same", "moved", "none"], [gt, shifted, gt], [gt, gt, gt], p, appearance=AppearanceScorer(),
                      cameras=[cam, cam, None])
    rows = {r["sample_id"]: r for r in res.rows()}
    assert rows["same"]["psnr_input"] == math.inf and rows["same"]["ssim_input"] == 1.0
    assert rows["same"]["silhouette_iou_input"] == 1.0 and rows["same"]["psnr"] == math.inf
    assert 0.3 < rows["moved"]["silhouette_iou_input"] < 0.95 and rows["moved"]["psnr_input"] < 30
    assert all(math.isnan(rows["none"][k]) for k in ("psnr_input", "ssim_input", "silhouette_iou_input"))
    assert "input-view appearance unavailable: the manifest row has no camera" in rows["none"]["notes"]
    assert math.isnan(rows["same"]["lpips"])  # no LPIPS module: never a random backbone
    # Without cameras the columns are still there, NaN with the note.
    plain = score_batch(["same"], [gt], [gt], p, appearance=AppearanceScorer()).rows()[0]
    assert math.isnan(plain["psnr_input"]) and any(n.startswith("input-view appearance unavailable") for n in plain["notes"])
    assert [c for c in metric_names(p)[-3:]] == ["psnr_input", "ssim_input", "silhouette_iou_input"]


# ----------------------------------------------------------------------------------------------------
# the runner on the built-in benchmark


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    from sam3d_eval.data.generate import GenerationConfig, make_benchmark

    out = tmp_path_factory.mktemp("bench")
    make_benchmark(out, 2, 2, 0, GenerationConfig(image_size=64), workers=1)
    return out


def test_the_runner_scores_the_split_on_the_built_in_benchmark(bench, tmp_path):
    from sam3d_eval.data.manifest import Manifest
    from sam3d_eval.evaluate.runner import run_evaluation
    from sam3d_eval.evaluate.sources import FolderSource
    from sam3d_eval.evaluate.summary import summarize

    # The GT meshes themselves as predictions: perfect renders from the input camera.
    preds = tmp_path / "preds"
    shutil.copytree(bench / "meshes", preds)
    base = get_protocol("default").with_overrides(num_samples=1500, appearance_views=2, appearance_image_size=32)
    p = base.with_overrides(metrics=(*base.metrics, "visibility"))
    manifest = Manifest.read(bench / "manifest.parquet")
    res = run_evaluation(FolderSource(preds), manifest, p, tmp_path / "run", batch_size=3,
                         appearance=AppearanceScorer())
    frame = res.frame.set_index("sample_id")
    assert len(frame) == 4 and set(frame["status"]) == {"ok"}
    cols = p.visibility_columns()
    assert all(c in metric_columns(res.frame) for c in cols) and not any("share" in c for c in res.frame.columns)
    assert frame[[c for c in cols if "occluder" not in c]].notna().all().all()
    assert (frame["psnr_input"] == math.inf).all() and (frame["ssim_input"] == 1.0).all()
    assert (frame["silhouette_iou_input"] == 1.0).all()
    for sid, row in frame.iterrows():
        notes = json.loads(row["notes"])
        shares = next(n for n in notes if n.startswith("visibility shares of the 1500 GT samples"))
        occluded = row["occlusion"] > 0.05
        assert ("occluder_hidden 0.0000" in shares) != occluded, (sid, shares)
        assert math.isnan(row["chamfer_comp_occluder_hidden"]) != occluded
    summary = summarize(res.frame, n_resamples=50).set_index(["stratum", "metric"]).loc["all"]
    assert summary.loc["chamfer_comp_self_hidden", "n_used"] == 4 and summary.loc["psnr_input", "mean"] == math.inf

    # The same batch alone per sample: batch invariance through the runner.
    one = run_evaluation(FolderSource(preds), manifest, p, None, batch_size=1, appearance=AppearanceScorer()).frame
    pd.testing.assert_frame_equal(one.set_index("sample_id")[cols + ["notes"]].sort_index(),
                                  frame[cols + ["notes"]].sort_index())

    # A manifest without cameras: the columns are NaN and every row says why.
    bare = Manifest(manifest.frame.drop(columns=["camera"]), manifest.root)
    nocam = run_evaluation(FolderSource(preds), bare, p, None, batch_size=4).frame
    assert nocam[cols].isna().all().all()
    assert all("visibility unavailable: the manifest row has no camera" in json.loads(n) for n in nocam["notes"])


def test_evaluate_visibility_prints_the_split_and_says_when_it_is_unavailable(bench, tmp_path, capsys):
    from sam3d_eval.cli.main import main

    preds = tmp_path / "preds"
    shutil.copytree(bench / "meshes", preds)
    assert main(["evaluate", str(preds), "--data", str(bench / "manifest.parquet"), "--out", str(tmp_path / "a"),
                 "--samples", "1000", "--visibility"]) == 0
    out = capsys.readouterr().out
    assert "visible and hidden surfaces" in out and "chamfer_acc_visible" in out and "chamfer_comp_self_hidden" in out
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert "chamfer_comp_self_hidden" in summary["metrics"]
    # the same manifest without cameras: one line says why, per reason, with its count
    frame = pd.read_parquet(bench / "manifest.parquet").drop(columns=["camera"])
    frame.to_parquet(bench / "nocam.parquet")
    assert main(["evaluate", str(preds), "--data", str(bench / "nocam.parquet"), "--out", str(tmp_path / "b"),
                 "--samples", "1000", "--visibility"]) == 0
    out = capsys.readouterr().out
    assert "note: visibility unavailable: the manifest row has no camera (4 of 4 samples)" in out
