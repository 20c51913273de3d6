"""The bottom `transforms` layer: conventions pinned on hand-checkable examples, float64 references."""

import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from sam3d_eval.transforms import (
    SimilarityTransform,
    apply_similarity_transform,
    bbox_centre_scale,
    face_areas_normals,
    matrix_to_quaternion,
    normalize_points,
    quaternion_to_matrix,
)

# 90 degrees about +z, (w, x, y, z): takes the x axis to the y axis (column vectors, x' = R x).
H = math.sqrt(0.5)
Q_Z90 = torch.tensor([H, 0.0, 0.0, H], dtype=torch.float64)
R_Z90 = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _random_quats(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return q / q.norm(dim=1, keepdim=True)


# ---------------------------------------------------------------------------------------------- rotations


def test_quaternion_convention_is_w_first():
    torch.testing.assert_close(quaternion_to_matrix(Q_Z90), R_Z90, atol=1e-15, rtol=0)
    x_axis = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(quaternion_to_matrix(Q_Z90) @ x_axis, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    # (1, 0, 0, 0) is the identity; (0, 1, 0, 0) is 180 degrees about x.
    torch.testing.assert_close(quaternion_to_matrix(torch.tensor([1.0, 0, 0, 0])), torch.eye(3))
    torch.testing.assert_close(quaternion_to_matrix(torch.tensor([0.0, 1, 0, 0])), torch.diag(torch.tensor([1.0, -1, -1])))


def test_quaternion_to_matrix_matches_scipy_float64():
    q = _random_quats(200)
    ref = Rotation.from_quat(q[:, [1, 2, 3, 0]].numpy()).as_matrix()  # scipy is (x, y, z, w)
    np.testing.assert_allclose(quaternion_to_matrix(q).numpy(), ref, atol=1e-14)
    # Non-unit quaternions are normalised implicitly; q and -q are one rotation; batch dims are kept.
    torch.testing.assert_close(quaternion_to_matrix(3.5 * q), quaternion_to_matrix(q))
    torch.testing.assert_close(quaternion_to_matrix(-q), quaternion_to_matrix(q))
    assert quaternion_to_matrix(q.view(10, 20, 4)).shape == (10, 20, 3, 3)


def test_matrix_to_quaternion_round_trips_and_standardises():
    q = _random_quats(500, seed=1)
    q_std = torch.where(q[:, :1] < 0, -q, q)
    q_back = matrix_to_quaternion(quaternion_to_matrix(q))
    torch.testing.assert_close(q_back, q_std, atol=1e-13, rtol=0)
    assert bool((q_back[:, 0] >= 0).all())
    torch.testing.assert_close(matrix_to_quaternion(R_Z90), Q_Z90, atol=1e-15, rtol=0)
    torch.testing.assert_close(matrix_to_quaternion(torch.eye(3, dtype=torch.float64)), torch.tensor([1.0, 0, 0, 0], dtype=torch.float64))


def test_matrix_to_quaternion_near_half_turn_and_float32():
    # 180 degrees about an oblique axis (w = 0 exactly) and just short of it: the stable branch is chosen.
    axis = np.array([1.0, 2.0, -2.0]) / 3.0
    for angle in (math.pi, math.pi - 1e-7):
        R = torch.from_numpy(Rotation.from_rotvec(angle * axis).as_matrix())
        q = matrix_to_quaternion(R)
        torch.testing.assert_close(quaternion_to_matrix(q), R, atol=1e-12, rtol=0)
        torch.testing.assert_close(q.norm(), torch.tensor(1.0, dtype=torch.float64))
    # float32 input against the float64 reference
    R64 = quaternion_to_matrix(_random_quats(300, seed=2))
    q32 = matrix_to_quaternion(R64.float())
    torch.testing.assert_close(quaternion_to_matrix(q32.double()), R64, atol=2e-6, rtol=0)


def test_rotation_shape_errors():
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        quaternion_to_matrix(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        matrix_to_quaternion(torch.zeros(2, 4))


# ---------------------------------------------------------------------------------------------- similarity


def _random_transform(B, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    R = quaternion_to_matrix(_random_quats(B, seed)).to(dtype)
    T = torch.randn(B, 3, generator=g, dtype=torch.float64).to(dtype)
    s = (0.5 + torch.rand(B, generator=g, dtype=torch.float64)).to(dtype)
    return SimilarityTransform(R, T, s)


def test_similarity_row_vector_convention_by_hand():
    # x @ R_row with R_row = R_col^T is R_col x: (1, 0, 0) -> (0, 1, 0); then * 2 and + (0, 0, 1).
    tr = SimilarityTransform(R_Z90.T[None], torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64))
    x = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]]], dtype=torch.float64)
    expected = torch.tensor([[[0.0, 2.0, 1.0], [0.0, 0.0, 7.0]]], dtype=torch.float64)
    torch.testing.assert_close(tr.apply(x), expected, atol=1e-15, rtol=0)
    torch.testing.assert_close(apply_similarity_transform(x, tuple(tr)), expected, atol=1e-15, rtol=0)
    # the normal (1, 0, 0) rotates to (0, 1, 0) and is neither scaled nor translated
    n = torch.tensor([[[1.0, 0.0, 0.0]]], dtype=torch.float64)
    torch.testing.assert_close(tr.apply_normals(n), torch.tensor([[[0.0, 1.0, 0.0]]], dtype=torch.float64))


def test_similarity_matches_column_form_and_keeps_dtype():
    tr = _random_transform(4, seed=3)
    x = torch.randn(4, 50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    # s * x @ R + T == s * R^T x + T for each point (column vectors)
    ref = torch.stack([tr.s[b] * (tr.R[b].T @ x[b].T).T + tr.T[b] for b in range(4)])
    torch.testing.assert_close(tr.apply(x), ref, atol=1e-13, rtol=0)
    out32 = tr.apply(x.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), ref, atol=1e-5, rtol=0)


def test_similarity_compose_inverse_identity():
    a, b = _random_transform(3, seed=5), _random_transform(3, seed=6)
    x = torch.randn(3, 40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a.compose(b).apply(x), b.apply(a.apply(x)), atol=1e-12, rtol=0)
    torch.testing.assert_close(a.inverse().apply(a.apply(x)), x, atol=1e-12, rtol=0)
    torch.testing.assert_close(a.apply(a.inverse().apply(x)), x, atol=1e-12, rtol=0)
    ident = SimilarityTransform.identity(3, torch.float64)
    torch.testing.assert_close(ident.apply(x), x, atol=0, rtol=0)
    for part_c, part_a in zip(a.compose(a.inverse()), ident):
        torch.testing.assert_close(part_c, part_a, atol=1e-12, rtol=0)
    # normals rotate with the points' directions: (a(x + n) - a(x)) / s == apply_normals(n)
    n = torch.nn.functional.normalize(torch.randn(3, 40, 3, dtype=torch.float64), dim=2)
    torch.testing.assert_close((a.apply(x + n) - a.apply(x)) / a.s[:, None, None], a.apply_normals(n), atol=1e-12, rtol=0)
    torch.testing.assert_close(a.apply_normals(n).norm(dim=2), torch.ones(3, 40, dtype=torch.float64))


def test_similarity_dicts_round_trip_json():
    a = _random_transform(2, seed=8)
    recs = json.loads(json.dumps(a.to_dicts()))
    assert set(recs[0]) == {"R", "T", "s"} and len(recs) == 2
    assert recs[1]["R"][0][2] == pytest.approx(float(a.R[1, 0, 2]), abs=0)  # R[row][col], row-vector convention
    back = SimilarityTransform.from_dicts([{**r, "method": "icp"} for r in recs])
    for p, q in zip(back, a):
        torch.testing.assert_close(p, q, atol=0, rtol=0)
    with pytest.raises(ValueError, match="R .3x3., T .3. and s"):
        SimilarityTransform.from_dicts([{"R": recs[0]["R"], "T": recs[0]["T"]}])
    assert SimilarityTransform.from_dicts([]).R.shape == (0, 3, 3)


def test_similarity_shape_errors():
    a = _random_transform(2, seed=9)
    with pytest.raises(ValueError, match=r"\(2, P, 3\)"):
        a.apply(torch.zeros(3, 5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"R \(B, 3, 3\), T \(B, 3\), s \(B,\)"):
        SimilarityTransform(a.R, a.T, a.s[:1]).apply(torch.zeros(2, 5, 3, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------- bbox


def test_bbox_centre_scale_by_hand():
    box = torch.tensor([[0.0, 0.0, 0.0], [2.0, 1.0, 4.0], [1.0, 0.5, 1.0]], dtype=torch.float64)
    c, s = bbox_centre_scale([box, box * 2 + 1], side=2.0)
    torch.testing.assert_close(c, torch.tensor([[1.0, 0.5, 2.0], [3.0, 2.0, 5.0]], dtype=torch.float64))
    torch.testing.assert_close(s, torch.tensor([0.5, 0.25], dtype=torch.float64))
    moved = normalize_points(torch.stack([box, box * 2 + 1]), c, s)
    torch.testing.assert_close(moved.amax(1) - moved.amin(1), torch.tensor([[1.0, 0.5, 2.0]] * 2, dtype=torch.float64))
    torch.testing.assert_close((moved.amax(1) + moved.amin(1)) / 2, torch.zeros(2, 3, dtype=torch.float64))
    torch.testing.assert_close(normalize_points(box, c[0], s[0]), moved[0])
    # default side 1: the box fits [-0.5, 0.5]^3, touching it along its longest axis
    c1, s1 = bbox_centre_scale([box])
    assert float(s1[0]) == 0.25 and c1.dtype == torch.float64


def test_bbox_degenerate_boxes_name_the_element():
    ok = torch.rand(5, 3)
    with pytest.raises(ValueError, match="ground truth 1 is empty"):
        bbox_centre_scale([ok, torch.zeros(0, 3)], who="ground truth")
    with pytest.raises(ValueError, match="prediction 0 is degenerate .all 4 points coincide.*zero extent"):
        bbox_centre_scale([torch.ones(4, 3)], who="prediction")
    bad = ok.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="element 1 has NaN or inf"):
        bbox_centre_scale([ok, bad])
    bad[2, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        bbox_centre_scale([bad])
    with pytest.raises(ValueError, match="side must be positive"):
        bbox_centre_scale([ok], side=0.0)
    with pytest.raises(ValueError, match="normalize_points needs"):
        normalize_points(torch.zeros(2, 5, 3), torch.zeros(3), torch.ones(()))


# ---------------------------------------------------------------------------------------------- triangles


def test_face_areas_normals_by_hand_and_float64_reference():
    verts = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 1], [0, 1, 3]])
    areas, normals = face_areas_normals(verts, faces)
    torch.testing.assert_close(areas, torch.tensor([3.0, 3.0, 1.0]))
    torch.testing.assert_close(normals, torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0]]))
    g = torch.Generator().manual_seed(10)
    v = torch.randn(100, 3, generator=g, dtype=torch.float64)
    f = torch.randint(0, 100, (300, 3), generator=g)
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    cross = np.cross(v[f[:, 1]].numpy() - v[f[:, 0]].numpy(), v[f[:, 2]].numpy() - v[f[:, 0]].numpy())
    a32, n32 = face_areas_normals(v.float(), f)
    np.testing.assert_allclose(a32.double().numpy(), np.linalg.norm(cross, axis=1) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(n32.double().numpy(), cross / np.linalg.norm(cross, axis=1, keepdims=True), atol=1e-4)


def test_face_areas_normals_degenerate_keeps_pytorch3d_eps():
    # A collinear triangle: area 0 and a zero normal, no NaN. A tiny one (|cross| = 1e-8): its normal is
    # divided by pytorch3d's 1e-6 floor, not by its length, so it is 1e-2 long.
    verts = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [1e-4, 0, 0], [0.0, 1e-4, 0]], dtype=torch.float64)
    areas, normals = face_areas_normals(verts, torch.tensor([[0, 1, 2], [0, 3, 4]]))
    torch.testing.assert_close(areas, torch.tensor([0.0, 0.5e-8], dtype=torch.float64))
    torch.testing.assert_close(normals, torch.tensor([[0.0, 0, 0], [0.0, 0, 1e-2]], dtype=torch.float64))
    v = verts.clone().requires_grad_()
    face_areas_normals(v, torch.tensor([[0, 3, 4]]))[0].sum().backward()
    assert v.grad is not None and bool(torch.isfinite(v.grad).all())
    with pytest.raises(ValueError, match=r"faces must be \(F, 3\)"):
        face_areas_normals(verts, torch.tensor([0, 1, 2]))


def test_transforms_imports_no_other_layer():
    import ast
    import pathlib

    import sam3d_eval.transforms as pkg

    for path in pathlib.Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1 and not (node.module or "").startswith("sam3d_eval"), (path.name, node.module)
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("sam3d_eval") for a in node.names), path.name
