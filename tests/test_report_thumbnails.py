"""Worst-sample thumbnails: point clouds drawn as points, one frame covering the ground truth and every
prediction of a sample, and batched rendering (one rasteriser call per chunk) equal to one sample at a time."""

import base64
import io

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from sam3d_eval.structures import Meshes, Pointclouds, TexturesUV, TexturesVertex

SIZE = 64


def _image(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def _views(uri: str) -> list[np.ndarray]:
    """The two views of a thumbnail, each as a boolean object mask (not the white background)."""
    im = _image(uri)
    assert im.shape == (SIZE, 2 * SIZE, 3)
    obj = (im < 250).any(axis=-1)
    return [obj[:, :SIZE], obj[:, SIZE:]]


def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def _cube(scale: float = 1.0, offset=(0.0, 0.0, 0.0)) -> Meshes:
    m = trimesh.creation.box(extents=(1.0, 1.0, 1.0)).subdivide()
    v = torch.tensor(m.vertices, dtype=torch.float32) * scale + torch.tensor(offset)
    return Meshes([v], [torch.tensor(m.faces)])


def _sphere_points(n: int = 4000, colour=None) -> Pointclouds:
    pts = torch.tensor(trimesh.creation.icosphere(subdivisions=3, radius=0.5).sample(n, seed=0), dtype=torch.float32)
    feats = None if colour is None else [torch.tensor(colour, dtype=torch.float32).expand(n, 3)]
    return Pointclouds([pts], features=feats)


def test_a_point_cloud_prediction_is_drawn_as_points_in_its_colour():
    from sam3d_eval.report.thumbnails import render_thumbnails

    out = render_thumbnails(_sphere_points(colour=(0.9, 0.1, 0.1)), _cube(), size=SIZE)
    assert out["pred"] is not None and out["gt"] is not None  # not "not rendered"
    for mask in _views(out["pred"]):
        assert mask.mean() > 0.1 and not _touches_border(mask)  # a ball of points, not a few specks
    im = _image(out["pred"]).astype(int)
    drawn = (im < 250).any(axis=-1)
    assert (im[drawn, 0] > im[drawn, 1] + 30).mean() > 0.9  # the points' red, lit like a surface
    # an uncoloured cloud is drawn too (grey), as is a mesh without faces (its vertices)
    grey = render_thumbnails(_sphere_points(), None, size=SIZE)["pred"]
    assert all(m.mean() > 0.1 for m in _views(grey))
    faceless = Meshes([_sphere_points().points_list()[0]], [torch.zeros((0, 3), dtype=torch.int64)])
    assert all(m.mean() > 0.1 for m in _views(render_thumbnails(faceless, _cube(), size=SIZE)["pred"]))


def test_a_larger_prediction_is_framed_whole_with_the_ground_truth_in_the_same_frame():
    from sam3d_eval.report.thumbnails import render_thumbnails

    alone = render_thumbnails(_cube(), _cube(), size=SIZE)
    out = render_thumbnails(_cube(1.3), _cube(), size=SIZE)
    for pred, gt, gt_alone in zip(_views(out["pred"]), _views(out["gt"]), _views(alone["gt"])):
        assert pred.mean() > 0.2 and not _touches_border(pred)  # the 1.3x cube is not cut by the border
        assert gt.mean() > 0.1 and not _touches_border(gt)  # the ground truth is still plainly visible ...
        # ... smaller, in the prediction's frame: the area ratio of two cubes 1.3x apart is 1.3^2
        assert pred.sum() / gt.sum() == pytest.approx(1.3 ** 2, rel=0.1)
        assert gt.sum() < 0.8 * gt_alone.sum()
    # a prediction inside the ground truth's frame leaves that frame as it is
    assert render_thumbnails(_cube(0.8), _cube(), size=SIZE)["gt"] == alone["gt"]


def test_predictions_of_one_sample_share_one_frame():
    from sam3d_eval.report.thumbnails import render_thumbnail_sets, render_thumbnails

    small, big, gt = _cube(0.9), _cube(1.4), _cube()
    [both] = render_thumbnail_sets([((small, big), gt)], SIZE)
    assert len(both["preds"]) == 2
    # the frame covers the larger prediction: the GT and the smaller one shrink with it ...
    assert both["gt"] == render_thumbnails(big, gt, size=SIZE)["gt"]
    assert both["preds"][1] == render_thumbnails(big, gt, size=SIZE)["pred"]
    assert both["preds"][0] != render_thumbnails(small, gt, size=SIZE)["pred"]
    # ... so the two predictions compare at their true sizes
    s, b = _views(both["preds"][0])[0], _views(both["preds"][1])[0]
    assert b.sum() / s.sum() == pytest.approx((1.4 / 0.9) ** 2, rel=0.1)


def _uv_cube() -> Meshes:
    c = _cube()
    v, f = c.verts_list()[0], c.faces_list()[0]
    g = torch.Generator().manual_seed(0)
    tex = TexturesUV([torch.rand(8, 8, 3, generator=g)], [f], [torch.rand(v.shape[0], 2, generator=g)])
    return Meshes([v], [f], tex)


def _coloured_cube() -> Meshes:
    c = _cube(1.2, offset=(0.2, 0.0, 0.0))
    v = c.verts_list()[0]
    return Meshes([v], c.faces_list(), TexturesVertex([(v - v.min(0).values) / (v.max(0).values - v.min(0).values)]))


def test_the_batched_call_gives_the_images_of_one_by_one_calls_with_one_rasteriser_call(monkeypatch):
    import sam3d_eval.render.multiview as multiview
    from sam3d_eval.report.thumbnails import render_thumbnail_batch, render_thumbnails

    pairs = [(_cube(0.7, offset=(0.1, 0.0, 0.0)), _cube()),     # inside the GT frame
             (_sphere_points(colour=(0.2, 0.3, 0.9)), _cube()),  # a point cloud
             (_coloured_cube(), _cube(0.5)),                     # vertex colours, reframed on the union
             (None, _cube()),                                     # a failed prediction: GT only
             (_cube(1.3), None)]                                  # no GT: the prediction sets the frame
    alone = [render_thumbnails(p, g, size=SIZE) for p, g in pairs]

    calls, done = [], []
    real = multiview.rasterize_meshes

    def counting(meshes, *args, **kw):
        calls.append(len(meshes))
        return real(meshes, *args, **kw)

    monkeypatch.setattr(multiview, "rasterize_meshes", counting)
    batch = render_thumbnail_batch(pairs, SIZE, progress=done.append)
    assert batch == alone  # the same images, sample by sample
    assert calls == [8] and done == [5]  # 8 geometries (4 predictions, 4 GTs) in one rasteriser call
    assert batch[3]["pred"] is None and batch[3]["gt"] is not None and batch[4]["gt"] is None

    calls.clear(), done.clear()
    assert render_thumbnail_batch(pairs, SIZE, chunk=2, progress=done.append) == alone
    assert calls == [4, 3, 1] and done == [2, 4, 5]  # one call per chunk of 2 samples; progress after each

    # UV-textured meshes render in a second call of the same chunk, and still as when alone
    uv = [(_cube(0.9), _uv_cube()), (_coloured_cube(), _cube())]
    uv_alone = [render_thumbnails(p, g, size=SIZE) for p, g in uv]
    calls.clear()
    assert render_thumbnail_batch(uv, SIZE) == uv_alone
    assert sorted(calls) == [1, 3]
