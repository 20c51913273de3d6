"""The reference model: icosphere template, sizes, frames, the Predictor interface."""

import math

import pytest
import torch

from sam3d_eval.models import Predictor, ReferenceConfig, ReferenceModel, icosphere
from sam3d_eval.models.reference import PRESETS
from sam3d_eval.render import orbit_cameras
from sam3d_eval.transforms import face_areas_normals


@pytest.mark.parametrize("level", [0, 1, 3])
def test_icosphere_counts_closed_outward(level):
    v, f = icosphere(level, radius=2.0, dtype=torch.float64)
    assert v.shape == (10 * 4**level + 2, 3) and f.shape == (20 * 4**level, 3)
    assert torch.allclose(v.norm(dim=1), torch.full((v.shape[0],), 2.0, dtype=torch.float64))
    # Closed 2-manifold: every undirected edge is shared by exactly two faces; Euler characteristic 2.
    e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).sort(dim=1).values
    _, counts = torch.unique(e, dim=0, return_counts=True)
    assert bool((counts == 2).all())
    assert v.shape[0] - counts.numel() + f.shape[0] == 2
    # Outward: face normals point away from the centre; the signed volume approaches the sphere's.
    areas, normals = face_areas_normals(v, f)
    centres = v[f].mean(1)
    assert bool(((normals * centres).sum(1) > 0).all())
    vol = (v[f[:, 0]] * torch.linalg.cross(v[f[:, 1]], v[f[:, 2]], dim=1)).sum() / 6
    assert 0 < float(vol) <= 4 / 3 * math.pi * 8
    if level == 3:
        assert float(vol) == pytest.approx(4 / 3 * math.pi * 8, rel=0.02)


def test_icosphere_rejects_bad_level():
    with pytest.raises(ValueError, match="level"):
        icosphere(-1)


def test_parameter_range_of_presets():
    counts = {n: ReferenceModel(c).num_parameters() for n, c in PRESETS.items() if n != "xl"}
    assert 80_000 < counts["tiny"] < 200_000
    assert counts["large"] > 10_000_000
    assert counts["tiny"] < counts["small"] < counts["base"] < counts["large"]


def test_config_round_trip_and_errors():
    c = ReferenceConfig.preset("small", ico_level=2)
    assert ReferenceConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown fields"):
        ReferenceConfig.from_dict({**c.to_dict(), "depth": 3})
    with pytest.raises(ValueError, match="multiple"):
        ReferenceConfig(input_size=60)
    with pytest.raises(ValueError, match="preset"):
        ReferenceConfig.preset("huge")


def test_starts_at_template_and_rotates_view_frame_to_world():
    torch.manual_seed(0)
    m = ReferenceModel(ReferenceConfig(input_size=32, channels=(4, 8), feature_dim=8, decoder_hidden=8, ico_level=1))
    img, mask = torch.rand(2, 3, 40, 40), torch.rand(2, 1, 40, 40) > 0.5
    cams = orbit_cameras([30.0, 200.0], [10.0, -20.0], 2.5, (40, 40))
    verts, colours = m(img, mask, cams.R)  # no scales: view units = world units
    # The output layer starts at zero: the template in mid grey, rotated by R^T into the world frame.
    expected = torch.einsum("vj,bjk->bvk", m.template, cams.R)
    assert torch.allclose(verts, expected, atol=1e-6)
    assert torch.allclose(colours, torch.full_like(colours, 0.5))
    # x_world = R^T x_view: mapping back with R recovers the view-frame template.
    assert torch.allclose(torch.einsum("bvk,bjk->bvj", verts, cams.R), m.template.expand(2, -1, -1), atol=1e-6)


def test_predictor_protocol_and_batch_independence():
    torch.manual_seed(1)
    m = ReferenceModel(ReferenceConfig(input_size=32, channels=(4, 8), feature_dim=8, decoder_hidden=8, ico_level=1))
    torch.nn.init.normal_(m.dec_out.weight, std=0.1)
    assert isinstance(m, Predictor)
    img, mask = torch.rand(3, 3, 32, 32), torch.rand(3, 1, 32, 32) > 0.3
    cams = orbit_cameras([0.0, 90.0, 180.0], 20.0, 2.5, (32, 32))
    meshes = m.predict(img, mask, cams)
    assert len(meshes) == 3 and meshes.textures is not None
    one = m.predict(img[1:2], mask[1:2], cams[1])
    assert torch.allclose(meshes.verts_list()[1], one.verts_list()[0], atol=1e-6)
    # The identity names the weights: a changed weight changes it.
    ident = m.identity
    with torch.no_grad():
        m.dec_out.bias[0] += 1e-3
    assert m.identity != ident and ident.startswith("reference-")


def test_view_frame_needs_cameras_and_shapes_checked():
    m = ReferenceModel(ReferenceConfig(input_size=32, channels=(4, 8), feature_dim=8, decoder_hidden=8, ico_level=0))
    with pytest.raises(ValueError, match="camera"):
        m.predict(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32, dtype=torch.bool), None)
    with pytest.raises(ValueError, match="masks"):
        m(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 16, 16), torch.eye(3)[None])
    w = ReferenceModel(ReferenceConfig(input_size=32, channels=(4, 8), feature_dim=8, decoder_hidden=8, ico_level=0,
                                       frame="world"))
    assert len(w.predict(torch.rand(2, 3, 32, 32), torch.ones(2, 1, 32, 32, dtype=torch.bool), None)) == 2
