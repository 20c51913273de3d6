import numpy as np
import pytest
import torch

from sam3d_eval.structures import Meshes, Pointclouds, TexturesVertex, list_to_padded, padded_to_list


def _tetra(offset=0.0):
    v = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float32) + offset
    f = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    return v, f


def _square():
    v = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 2, 2]], dtype=torch.float32)
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    return v, f


def test_padded_list_round_trip():
    xs = [torch.randn(3, 2), torch.randn(5, 2), torch.randn(0, 2)]
    padded = list_to_padded(xs, pad_value=-7.0)
    assert padded.shape == (3, 5, 2)
    assert (padded[0, 3:] == -7).all() and (padded[2] == -7).all()
    back = padded_to_list(padded, [3, 5, 0])
    for a, b in zip(xs, back):
        assert torch.equal(a, b)


def test_meshes_views_and_indices():
    (v0, f0), (v1, f1) = _tetra(), _square()
    m = Meshes([v0, v1], [f0, f1])
    assert len(m) == 2
    assert m.num_verts_per_mesh().tolist() == [4, 5]
    assert m.num_faces_per_mesh().tolist() == [4, 2]
    assert m.verts_padded().shape == (2, 5, 3)
    fp = m.faces_padded()
    assert fp.shape == (2, 4, 3) and (fp[1, 2:] == -1).all()
    # packed faces index into packed verts: the same triangles come back
    packed = m.verts_packed()[m.faces_packed()]
    per_mesh = torch.cat([v0[f0], v1[f1]])
    assert torch.equal(packed, per_mesh)
    assert m.faces_packed_to_mesh_idx().tolist() == [0, 0, 0, 0, 1, 1]
    assert m.mesh_to_verts_packed_first_idx().tolist() == [0, 4]
    # padded faces round-trip through the constructor
    m2 = Meshes(m.verts_padded(), fp)
    assert m2.num_faces_per_mesh().tolist() == [4, 2]


def test_edges_match_a_set_based_reference():
    (v0, f0), (v1, f1) = _tetra(), _square()
    m = Meshes([v0, v1], [f0, f1])
    edges = m.edges_packed()
    ref = set()
    for f in m.faces_packed().tolist():
        for a, b in ((f[1], f[2]), (f[2], f[0]), (f[0], f[1])):
            ref.add((min(a, b), max(a, b)))
    assert sorted(map(tuple, edges.tolist())) == sorted(ref)
    assert m.num_edges_per_mesh().tolist() == [6, 5]
    # edge k of each face is the one opposite vertex k
    f2e = m.faces_packed_to_edges_packed()
    faces = m.faces_packed()
    for fi in range(faces.shape[0]):
        for k in range(3):
            e = set(edges[f2e[fi, k]].tolist())
            assert e == set(faces[fi].tolist()) - {int(faces[fi, k])}


def test_face_normals_areas_and_vertex_normals():
    v, f = _square()
    m = Meshes([v], [f])
    assert torch.allclose(m.faces_areas_packed(), torch.tensor([0.5, 0.5]))
    assert torch.allclose(m.faces_normals_packed(), torch.tensor([[0.0, 0, 1], [0, 0, 1]]))
    vn = m.verts_normals_packed()
    assert torch.allclose(vn[:4], torch.tensor([0.0, 0, 1]).expand(4, 3))
    assert torch.equal(vn[4], torch.zeros(3))  # unreferenced vertex


def test_golden_normals_and_areas(p3d_golden):
    g = p3d_golden
    m = Meshes([torch.from_numpy(g["mesh0/verts"])], [torch.from_numpy(g["mesh0/faces"])])
    np.testing.assert_allclose(m.faces_areas_packed().numpy(), g["mesh_normals/faces_areas0"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(m.faces_normals_packed().numpy(), g["mesh_normals/faces_normals0"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.verts_normals_packed().numpy(), g["mesh_normals/verts_normals0"], rtol=1e-5, atol=1e-6)


def test_uniform_laplacian_rows():
    v, f = _tetra()
    L = Meshes([v], [f]).laplacian_packed().to_dense()
    # every tetrahedron vertex has 3 neighbours
    expected = torch.full((4, 4), 1 / 3) - torch.eye(4) * (1 + 1 / 3)
    assert torch.allclose(L, expected)
    # an isolated vertex keeps the -1 diagonal, as pytorch3d's `laplacian`
    v5 = torch.cat([v, torch.ones(1, 3)])
    L5 = Meshes([v5], [f]).laplacian_packed().to_dense()
    assert L5[4].tolist() == [0, 0, 0, 0, -1]


def test_getitem_offset_and_textures():
    (v0, f0), (v1, f1) = _tetra(), _square()
    tex = TexturesVertex([torch.rand(4, 3), torch.rand(5, 3)])
    m = Meshes([v0, v1], [f0, f1], textures=tex)
    one = m[1]
    assert len(one) == 1 and torch.equal(one.verts_list()[0], v1)
    assert torch.equal(one.textures.verts_features[0], tex.verts_features[1])
    moved = m.offset_verts(torch.tensor([1.0, 2.0, 3.0]))
    assert torch.allclose(moved.verts_list()[0], v0 + torch.tensor([1.0, 2.0, 3.0]))


@pytest.mark.parametrize(
    "verts,faces,message",
    [
        ([torch.zeros(3, 2)], [torch.zeros(1, 3, dtype=torch.int64)], "verts must be float"),
        ([torch.zeros(3, 3)], [torch.tensor([[0, 1, 3]])], "face indices"),
        ([torch.zeros(3, 3)], [torch.tensor([[0.0, 1, 2]])], "faces must be integer"),
        ([torch.zeros(3, 3)], [], "got 1 vertex tensors and 0 face tensors"),
    ],
)
def test_meshes_reject_bad_input(verts, faces, message):
    with pytest.raises(ValueError, match=message):
        Meshes(verts, faces)


def test_pointclouds_views():
    a, b = torch.randn(3, 3), torch.randn(6, 3)
    na, nb = torch.randn(3, 3), torch.randn(6, 3)
    pc = Pointclouds([a, b], normals=[na, nb])
    assert pc.num_points_per_cloud().tolist() == [3, 6]
    assert pc.points_padded().shape == (2, 6, 3)
    assert torch.equal(pc.points_packed(), torch.cat([a, b]))
    assert torch.equal(pc.normals_padded()[1], nb)
    assert pc.packed_to_cloud_idx().tolist() == [0] * 3 + [1] * 6
    assert pc.cloud_to_packed_first_idx().tolist() == [0, 3]
    with pytest.raises(ValueError, match="normals"):
        Pointclouds([a, b], normals=[na, na])
