import math

import numpy as np
import pytest
import torch

from sam3d_eval.io.pointcloud_io import PointCloudReadError, load_pointcloud
from sam3d_eval.io.splats import SH_C0, Splats, load_splats, splats_to_points


def write_ply(path, props: dict, fmt="binary_little_endian", faces=None):
    """Minimal PLY writer: one vertex element with the given (name -> 1D array) scalar properties."""
    names = list(props)
    cols = [np.asarray(props[k]) for k in names]
    tmap = {"f4": "float", "f8": "double", "u1": "uchar", "i4": "int"}
    head = ["ply", f"format {fmt} 1.0", f"element vertex {len(cols[0])}"]
    head += [f"property {tmap[c.dtype.str[1:]]} {k}" for k, c in zip(names, cols)]
    if faces is not None:
        head += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    head.append("end_header")
    with open(path, "wb") as f:
        f.write(("\n".join(head) + "\n").encode())
        if fmt == "ascii":
            for i in range(len(cols[0])):
                f.write((" ".join(repr(c[i].item()) for c in cols) + "\n").encode())
            for fc in faces if faces is not None else []:
                f.write(("3 " + " ".join(map(str, fc)) + "\n").encode())
        else:
            o = "<" if fmt == "binary_little_endian" else ">"
            rec = np.zeros(len(cols[0]), dtype=[(k, o + c.dtype.str[1:]) for k, c in zip(names, cols)])
            for k, c in zip(names, cols):
                rec[k] = c
            f.write(rec.tobytes())
            for fc in faces if faces is not None else []:
                f.write(np.uint8(3).tobytes() + np.asarray(fc, dtype=o + "i4").tobytes())


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_ply_points_normals_colors(tmp_path, fmt):
    rng = np.random.default_rng(0)
    p = rng.normal(size=(20, 3)).astype(np.float32)
    n = rng.normal(size=(20, 3)).astype(np.float32)
    c = rng.integers(0, 256, size=(20, 3)).astype(np.uint8)
    props = {"x": p[:, 0], "y": p[:, 1], "z": p[:, 2], "nx": n[:, 0], "ny": n[:, 1], "nz": n[:, 2],
             "red": c[:, 0], "green": c[:, 1], "blue": c[:, 2]}
    path = tmp_path / "c.ply"
    write_ply(path, props, fmt, faces=[[0, 1, 2]])  # a trailing face element is ignored
    pc = load_pointcloud(path)
    np.testing.assert_array_equal(pc.points_packed().numpy(), p)
    np.testing.assert_array_equal(pc.normals_packed().numpy(), n)
    np.testing.assert_allclose(pc.features_packed().numpy(), c / 255.0, rtol=1e-6)


def test_ply_points_only_and_npz(tmp_path):
    p = np.arange(12, dtype=np.float64).reshape(4, 3)
    write_ply(tmp_path / "a.ply", {"x": p[:, 0], "y": p[:, 1], "z": p[:, 2]})
    pc = load_pointcloud(tmp_path / "a.ply")
    assert pc.points_packed().dtype == torch.float32 and pc.normals_list() is None and pc.features_list() is None
    np.testing.assert_array_equal(pc.points_packed().numpy(), p)
    np.savez(tmp_path / "b.npz", points=p, normals=-p, colors=np.full((4, 3), 0.25))
    pc = load_pointcloud(tmp_path / "b.npz")
    np.testing.assert_array_equal(pc.normals_packed().numpy(), -p)
    np.testing.assert_array_equal(pc.features_packed().numpy(), np.full((4, 3), 0.25, dtype=np.float32))


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(PointCloudReadError, match="nope.ply"):
        load_pointcloud(tmp_path / "nope.ply")
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"not a ply at all")
    with pytest.raises(PointCloudReadError, match="bad.ply.*magic"):
        load_pointcloud(bad)
    trunc = tmp_path / "trunc.ply"
    write_ply(trunc, {"x": np.zeros(10, np.float32), "y": np.zeros(10, np.float32), "z": np.zeros(10, np.float32)})
    trunc.write_bytes(trunc.read_bytes()[:-7])
    with pytest.raises(PointCloudReadError, match="trunc.ply.*truncated"):
        load_pointcloud(trunc)
    noz = tmp_path / "noz.ply"
    write_ply(noz, {"x": np.zeros(3, np.float32), "y": np.zeros(3, np.float32)})
    with pytest.raises(PointCloudReadError, match="noz.ply.*x, y, z"):
        load_pointcloud(noz)
    np.savez(tmp_path / "np.npz", pts=np.zeros((3, 3)))
    with pytest.raises(PointCloudReadError, match="np.npz"):
        load_pointcloud(tmp_path / "np.npz")
    (tmp_path / "x.xyz").write_text("0 0 0")
    with pytest.raises(ValueError, match="x.xyz"):  # PointCloudReadError is a ValueError
        load_pointcloud(tmp_path / "x.xyz")


def _splat_props(means, log_scales, quats, opacity_logits, f_dc, f_rest=None):
    f4 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    props = {"x": f4(means[:, 0]), "y": f4(means[:, 1]), "z": f4(means[:, 2]),
             "nx": f4(np.zeros(len(means))), "ny": f4(np.zeros(len(means))), "nz": f4(np.zeros(len(means)))}
    for i in range(3):
        props[f"f_dc_{i}"] = f4(f_dc[:, i])
    if f_rest is not None:  # (G, K, 3) stored channel-major as 3DGS does
        flat = f_rest.transpose(0, 2, 1).reshape(len(means), -1)
        for i in range(flat.shape[1]):
            props[f"f_rest_{i}"] = f4(flat[:, i])
    props["opacity"] = f4(opacity_logits)
    for i in range(3):
        props[f"scale_{i}"] = f4(log_scales[:, i])
    for i in range(4):
        props[f"rot_{i}"] = f4(quats[:, i])
    return props


def test_load_splats_values(tmp_path):
    rng = np.random.default_rng(1)
    G = 6
    means, ls = rng.normal(size=(G, 3)), rng.normal(size=(G, 3)) - 2
    q = rng.normal(size=(G, 4)) * 3  # unnormalised, as written by training code
    logit, dc, rest = rng.normal(size=G), rng.normal(size=(G, 3)), rng.normal(size=(G, 15, 3))
    write_ply(tmp_path / "s.ply", _splat_props(means, ls, q, logit, dc, rest))
    s = load_splats(tmp_path / "s.ply")
    np.testing.assert_allclose(s.means.numpy(), means, rtol=1e-6)
    np.testing.assert_allclose(s.scales.numpy(), np.exp(ls.astype(np.float32)), rtol=1e-6)
    np.testing.assert_allclose(s.opacities.numpy(), 1 / (1 + np.exp(-logit.astype(np.float32))), rtol=1e-6)
    np.testing.assert_allclose(s.rotations.numpy(), q / np.linalg.norm(q, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.sh_rest.numpy(), rest, rtol=1e-6)
    np.testing.assert_allclose(s.colors().numpy(), np.clip(0.5 + SH_C0 * dc, 0, 1), rtol=1e-6, atol=1e-7)
    from scipy.spatial.transform import Rotation

    Rm = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()
    cov = Rm @ (np.exp(2 * ls)[:, :, None] * Rm.transpose(0, 2, 1))
    np.testing.assert_allclose(s.covariances().numpy(), cov, rtol=1e-4, atol=1e-7)


def test_splat_missing_property(tmp_path):
    props = _splat_props(np.zeros((2, 3)), np.zeros((2, 3)), np.tile([1.0, 0, 0, 0], (2, 1)), np.zeros(2), np.zeros((2, 3)))
    del props["scale_1"]
    write_ply(tmp_path / "m.ply", props)
    with pytest.raises(PointCloudReadError, match=r"m\.ply.*scale_1"):
        load_splats(tmp_path / "m.ply")


def test_splats_to_points_statistics_and_threshold():
    # two opaque anisotropic Gaussians and one transparent one that must get no points
    from scipy.spatial.transform import Rotation

    q = Rotation.from_euler("xyz", [[30, 10, -40], [0, 70, 20], [0, 0, 0]], degrees=True).as_quat()[:, [3, 0, 1, 2]]
    s = Splats(
        means=torch.tensor([[0.0, 0.0, 0.0], [5.0, 1.0, -2.0], [-5.0, 0.0, 0.0]]),
        scales=torch.tensor([[0.5, 0.2, 0.05], [0.3, 0.3, 0.1], [1.0, 1.0, 1.0]]),
        rotations=torch.tensor(q, dtype=torch.float32),
        opacities=torch.tensor([0.9, 0.6, 0.3]),
        sh_dc=torch.tensor([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0], [2.0, 2.0, 2.0]]),
    )
    n = 40000
    pc = splats_to_points(s, n, seed=3)
    pts, cols = pc.points_packed().double(), pc.features_packed()
    first = pts[:, 0] < 2.5
    assert not (pts[:, 0] < -3).any()  # the 0.3-opacity Gaussian is dropped at threshold 0.5
    # allocation by opacity x area of the two largest axes: 0.9 * 0.1 vs 0.6 * 0.09
    p0 = 0.9 * 0.5 * 0.2 / (0.9 * 0.5 * 0.2 + 0.6 * 0.3 * 0.3)
    frac = first.double().mean().item()
    assert abs(frac - p0) < 5 * math.sqrt(p0 * (1 - p0) / n)
    cov_all = s.covariances().double()
    for g, m in ((0, first), (1, ~first)):
        x = pts[m]
        k = x.shape[0]
        mean_err = (x.mean(0) - s.means[g].double()) / (cov_all[g].diagonal().sqrt() / math.sqrt(k))
        assert mean_err.abs().max() < 5  # 5 standard errors
        emp = torch.cov(x.T)
        # standard error of a covariance entry is about sqrt((s_ii s_jj + s_ij^2) / k)
        d = cov_all[g].diagonal()
        se = ((d[:, None] * d[None, :] + cov_all[g] ** 2) / k).sqrt()
        assert ((emp - cov_all[g]).abs() / se).max() < 5
        torch.testing.assert_close(cols[m], s.colors()[g].expand(k, 3))
    # normals are the shortest axes
    R = s.rotation_matrices()
    torch.testing.assert_close(pc.normals_packed()[first].abs(), R[0, :, 2].abs().expand(int(first.sum()), 3))
    # seeded; the threshold is applied; uniform weighting splits evenly
    assert torch.equal(splats_to_points(s, 100, seed=3).points_packed(), splats_to_points(s, 100, seed=3).points_packed())
    allg = splats_to_points(s, 30000, opacity_threshold=0.0, weighting="uniform", seed=1).points_packed()
    frac3 = (allg[:, 0] < -2.5).double().mean().item()
    assert abs(frac3 - 1 / 3) < 5 * math.sqrt(2 / 9 / 30000)
    with pytest.raises(ValueError, match="opacity"):
        splats_to_points(s, 10, opacity_threshold=0.95)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_points_raise_naming_the_file(tmp_path, bad):
    xyz = np.zeros((4, 3), np.float32)
    xyz[2, 1] = bad
    write_ply(tmp_path / "nan.ply", {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    with pytest.raises(PointCloudReadError, match=r"nan\.ply.*NaN or inf"):
        load_pointcloud(tmp_path / "nan.ply")
    np.savez(tmp_path / "nan.npz", points=xyz)
    with pytest.raises(PointCloudReadError, match=r"nan\.npz.*NaN or inf"):
        load_pointcloud(tmp_path / "nan.npz")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_splat_means_raise_naming_the_file(tmp_path, bad):
    means = np.zeros((3, 3))
    means[1, 0] = bad
    props = _splat_props(means, np.zeros((3, 3)), np.tile([1.0, 0, 0, 0], (3, 1)), np.zeros(3), np.zeros((3, 3)))
    write_ply(tmp_path / "s.ply", props)
    with pytest.raises(PointCloudReadError, match=r"s\.ply.*NaN or inf"):
        load_splats(tmp_path / "s.ply")


@pytest.mark.parametrize("log_scale", [100.0, math.nan])
def test_splat_scales_that_overflow_are_refused_when_the_gaussian_is_kept(tmp_path, log_scale):
    """A kept Gaussian whose log scale overflows exp (or is NaN) is refused with the reason; the same scale on a
    transparent floater, which the opacity threshold drops, changes nothing."""
    ls = np.zeros((3, 3))
    ls[1] = log_scale
    opacity = np.full(3, 5.0)  # logit 5: kept
    write_ply(tmp_path / "s.ply", _splat_props(np.zeros((3, 3)), ls, np.tile([1.0, 0, 0, 0], (3, 1)), opacity,
                                               np.zeros((3, 3))))
    with pytest.raises(ValueError, match=r"1 of 3 kept Gaussians have log scales \(scale_\*\) that are NaN or above 88"):
        splats_to_points(load_splats(tmp_path / "s.ply"), 100, seed=0)
    opacity[1] = -5.0  # the same Gaussian as a floater
    write_ply(tmp_path / "f.ply", _splat_props(np.zeros((3, 3)), ls, np.tile([1.0, 0, 0, 0], (3, 1)), opacity,
                                               np.zeros((3, 3))))
    write_ply(tmp_path / "g.ply", _splat_props(np.zeros((3, 3)), np.zeros((3, 3)), np.tile([1.0, 0, 0, 0], (3, 1)),
                                               opacity, np.zeros((3, 3))))
    a = splats_to_points(load_splats(tmp_path / "f.ply"), 100, seed=0).points_packed()
    b = splats_to_points(load_splats(tmp_path / "g.ply"), 100, seed=0).points_packed()
    assert torch.equal(a, b)


def test_splat_weights_that_overflow_are_a_clear_error(tmp_path):
    """exp(45) is a finite float32, the product of two such scales is not: torch.multinomial would refuse the
    weights with no reason given."""
    ls = np.zeros((4, 3))
    ls[1] = 45.0
    write_ply(tmp_path / "s.ply", _splat_props(np.zeros((4, 3)), ls, np.tile([1.0, 0, 0, 0], (4, 1)),
                                               np.full(4, 5.0), np.zeros((4, 3))))
    with pytest.raises(ValueError, match=r"sampling weights overflow float32.*log scale 45"):
        splats_to_points(load_splats(tmp_path / "s.ply"), 100, seed=0)
    ls[1] = 20.0  # large but representable: sampled as before
    write_ply(tmp_path / "s.ply", _splat_props(np.zeros((4, 3)), ls, np.tile([1.0, 0, 0, 0], (4, 1)),
                                               np.full(4, 5.0), np.zeros((4, 3))))
    assert splats_to_points(load_splats(tmp_path / "s.ply"), 100, seed=0).points_packed().isfinite().all()


@pytest.mark.parametrize("arrays, name", [
    ({"points": np.array([["a", "b", "c"]] * 4)}, "points"),
    ({"points": np.ones((4, 3)), "normals": np.full((4, 3), "x")}, "normals"),
    ({"points": np.ones((4, 3), dtype=complex)}, "points"),
])
def test_npz_arrays_that_are_not_numbers_are_refused_naming_the_file(tmp_path, arrays, name):
    np.savez(tmp_path / "c.npz", **arrays)
    with pytest.raises(PointCloudReadError, match=f"c.npz: {name} must be integers or floats, got dtype"):
        load_pointcloud(tmp_path / "c.npz")
