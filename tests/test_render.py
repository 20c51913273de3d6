"""Cameras, interpolation, textures, shading and multi-view rendering against float64 references."""

import math

import numpy as np
import pytest
import torch

from sam3d_eval.ops.rasterize import rasterize_meshes
from sam3d_eval.render.cameras import PerspectiveCameras, look_at_extrinsics, orbit_cameras
from sam3d_eval.render.interpolate import interpolate_face_attributes, sample_textures, screen_barycentrics
from sam3d_eval.render.multiview import DEFAULT_DISTANCE, default_views, render_views
from sam3d_eval.render.shading import DirectionalLight, PointLight, lambertian_shading, silhouette
from sam3d_eval.structures.meshes import Meshes
from sam3d_eval.structures.textures import TexturesUV, TexturesVertex


def _random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_project_matches_float64_pinhole():
    rng = np.random.default_rng(0)
    R = np.stack([_random_rotation(rng) for _ in range(3)])
    T = rng.normal(size=(3, 3)) * 0.1 + np.array([0, 0, 5.0])
    f = rng.uniform(100, 300, size=(3, 2))
    c = rng.uniform(40, 80, size=(3, 2))
    pts = rng.normal(size=(50, 3))
    cams = PerspectiveCameras(torch.tensor(R), torch.tensor(T), torch.tensor(f), (96, 128), torch.tensor(c))
    got = cams.project(torch.tensor(pts)).numpy()
    cam = np.einsum("cij,pj->cpi", R, pts) + T[:, None]
    ref_xy = cam[..., :2] / cam[..., 2:] * f[:, None] + c[:, None]
    np.testing.assert_allclose(got[..., :2], ref_xy, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got[..., 2], cam[..., 2], rtol=1e-12)
    # per-point cameras give the same as the batched projection
    idx = torch.tensor([0, 2, 1, 2])
    got_idx = cams.project(torch.tensor(pts[:4]), idx).numpy()
    np.testing.assert_allclose(got_idx, got[idx.numpy(), np.arange(4)], rtol=1e-12)
    centre = cams.get_camera_center().numpy()
    np.testing.assert_allclose(np.einsum("cij,cj->ci", R, centre) + T, 0, atol=1e-12)


def test_look_at_and_orbit_geometry():
    cams = orbit_cameras([0.0, 90.0, 200.0], [10.0, -30.0, 60.0], [2.0, 3.0, 4.0], (64, 64), fov_deg=50.0,
                         dtype=torch.float64)
    az, el, d = np.radians([0.0, 90.0, 200.0]), np.radians([10.0, -30.0, 60.0]), np.array([2.0, 3.0, 4.0])
    eye = np.stack([d * np.cos(el) * np.sin(az), d * np.sin(el), d * np.cos(el) * np.cos(az)], 1)
    np.testing.assert_allclose(cams.get_camera_center().numpy(), eye, atol=1e-12)
    R = cams.R.numpy()
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (3, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    origin = cams.project(torch.zeros(1, 3, dtype=torch.float64))[:, 0].numpy()
    np.testing.assert_allclose(origin[:, :2], 32.0, atol=1e-12)  # target at the principal point
    np.testing.assert_allclose(origin[:, 2], d, atol=1e-12)
    up = cams.project(torch.tensor([[0.0, 0.1, 0.0]], dtype=torch.float64))[:, 0].numpy()
    assert (up[:, 1] < 32.0).all()  # world up is image up (smaller y)
    # a point on the edge of the vertical field of view lands on the image's top border
    half = math.radians(25.0)
    edge_cam = torch.tensor([[0.0, -math.tan(half) * 2.0, 2.0]], dtype=torch.float64)
    world = (edge_cam - cams.T[:1]) @ cams.R[0]
    np.testing.assert_allclose(cams[0].project(world)[0, 0, 1].item(), 0.0, atol=1e-9)
    R2, _ = look_at_extrinsics(torch.tensor([[0.0, 3.0, 0.0]]))  # looking straight down: no NaN
    assert torch.isfinite(R2).all()


def _slanted_quad_scene(dtype=torch.float64):
    """A quad in the plane z = 3 + 0.8 x (world) seen by an identity camera; returns mesh, cameras, plane."""
    verts = torch.tensor([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]], dtype=dtype)
    verts[:, 2] = 3.0 + 0.8 * verts[:, 0]
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    cams = PerspectiveCameras(torch.eye(3, dtype=dtype), torch.zeros(3, dtype=dtype), (40.0, 44.0), (48, 64),
                              (30.5, 23.0))
    return Meshes([verts], [faces]), cams


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_perspective_correct_interpolation_on_slanted_quad(dtype):
    mesh, cams = _slanted_quad_scene(dtype)
    screen = cams.project(mesh.verts_packed())
    frag = rasterize_meshes(mesh, screen, cams.image_size)
    mask = frag.pix_to_face[0] >= 0
    assert mask.sum() > 300
    r, c = (t.numpy() for t in mask.nonzero(as_tuple=True))
    # Float64 ray through the pixel centre meets the plane z = 3 + 0.8 x.
    dx = (c + 0.5 - 30.5) / 40.0
    dy = (r + 0.5 - 23.0) / 44.0
    t = 3.0 / (1.0 - 0.8 * dx)
    hit = np.stack([t * dx, t * dy, t], 1)
    attrs = mesh.verts_packed()[mesh.faces_packed()]
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    got = interpolate_face_attributes(frag.pix_to_face, frag.bary_coords, attrs)[0][mask].numpy()
    np.testing.assert_allclose(got, hit, **tol)
    np.testing.assert_allclose(frag.zbuf[0][mask].numpy(), t, **tol)
    # The differentiable recomputation agrees with the rasteriser.
    bary, depth = screen_barycentrics(frag.pix_to_face, screen[0][mesh.faces_packed()])
    torch.testing.assert_close(bary, frag.bary_coords)
    torch.testing.assert_close(depth, frag.zbuf)


def test_interpolation_gradients_match_finite_differences():
    mesh, cams = _slanted_quad_scene(torch.float64)
    faces = mesh.faces_packed()
    verts = mesh.verts_packed()
    cams_small = PerspectiveCameras(cams.R, cams.T, (10.0, 11.0), (12, 16), (8.0, 6.0))
    frag = rasterize_meshes(mesh, cams_small.project(verts), (12, 16))
    assert (frag.pix_to_face >= 0).sum() > 20
    colours = torch.rand(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def image(v, col):
        bary, _ = screen_barycentrics(frag.pix_to_face, cams_small.project(v)[0][faces])
        return interpolate_face_attributes(frag.pix_to_face, bary, col[faces])

    v = verts.clone().requires_grad_(True)
    col = colours.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(image, (v, col), eps=1e-6, atol=1e-6)
    image(v, col).sum().backward()
    assert v.grad.abs().sum() > 0 and col.grad.abs().sum() > 0


def test_vertex_colour_gradient_is_barycentric_coverage():
    mesh, cams = _slanted_quad_scene(torch.float32)
    colours = torch.rand(4, 3, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    m = Meshes(mesh.verts_list(), mesh.faces_list(), TexturesVertex([colours]))
    out = render_views(m, cams, shade=False)
    out.rgb[..., 0].sum().backward()
    frag = out.fragments
    mask = frag.pix_to_face >= 0
    expected = torch.zeros(4).index_add(
        0, m.faces_packed()[frag.pix_to_mesh_face[mask]].reshape(-1), frag.bary_coords[mask].reshape(-1)
    )
    torch.testing.assert_close(colours.grad[:, 0], expected, rtol=1e-4, atol=1e-3)
    assert (colours.grad[:, 1:] == 0).all()


def test_uv_texture_lookup_is_bilinear_and_differentiable():
    # A quad facing the camera at constant depth: UV is affine in pixel position.
    verts = torch.tensor([[-1.0, 1.0, 2.0], [1.0, 1.0, 2.0], [1.0, -1.0, 2.0], [-1.0, -1.0, 2.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    uvs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    Ht, Wt = 8, 16
    # Texel (i, j) holds its centre's u in red and v in green (v up: row 0 is the top, v near 1).
    u_c = (torch.arange(Wt) + 0.5) / Wt
    v_c = 1 - (torch.arange(Ht) + 0.5) / Ht
    tex = torch.stack([u_c[None, :].expand(Ht, Wt), v_c[:, None].expand(Ht, Wt), torch.zeros(Ht, Wt)], -1)
    tex.requires_grad_(True)
    mesh = Meshes([verts], [faces], TexturesUV([tex], [faces], [uvs]))
    cams = PerspectiveCameras(torch.eye(3), torch.zeros(3), (20.0, 20.0), (40, 40), (20.0, 20.0))
    frag = rasterize_meshes(mesh, cams.project(verts), (40, 40))
    colour = sample_textures(mesh, frag.pix_to_mesh_face, frag.bary_coords, 1)
    mask = frag.pix_to_face[0] >= 0
    r, c = mask.nonzero(as_tuple=True)
    # camera looks at +z with y down: world x = -1 .. 1 maps to pixels 10 .. 30; the quad's world y = 1
    # (v = 0) is at the image's top (y = 10).
    u = (c.double() + 0.5 - 10.0) / 20.0
    v = (r.double() + 0.5 - 10.0) / 20.0
    inner = (u > 0.5 / Wt) & (u < 1 - 0.5 / Wt) & (v > 0.5 / Ht) & (v < 1 - 0.5 / Ht)
    assert inner.sum() > 200
    got = colour[0][mask]
    torch.testing.assert_close(got[inner, 0].double(), u[inner], rtol=0, atol=1e-5)
    torch.testing.assert_close(got[inner, 1].double(), 1 - v[inner], rtol=0, atol=1e-5)
    colour.sum().backward()
    assert tex.grad.abs().sum() > 0


def test_lambertian_directional_and_point_lights():
    albedo = torch.tensor([[0.8, 0.4, 0.2]], dtype=torch.float64)
    n = torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64)
    p = torch.tensor([[0.5, 0.0, 0.0]], dtype=torch.float64)
    theta = math.radians(60)
    d = DirectionalLight(direction=(math.sin(theta), 0.0, math.cos(theta)), color=(0.6, 0.6, 0.6))
    out = lambertian_shading(albedo, n, p, [d], ambient=(0.2, 0.2, 0.2))
    torch.testing.assert_close(out, albedo * (0.2 + 0.6 * math.cos(theta)))
    pl = PointLight(location=(0.5, 3.0, 3.0), color=(1.0, 0.5, 0.0))
    out = lambertian_shading(albedo, n, p, [pl], ambient=(0.1, 0.1, 0.1))
    cos = 3.0 / math.sqrt(18.0)
    torch.testing.assert_close(out, albedo * (0.1 + torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64) * cos))
    behind = DirectionalLight(direction=(0.0, 0.0, -1.0), color=(1.0, 1.0, 1.0))
    torch.testing.assert_close(lambertian_shading(albedo, n, p, [behind], ambient=(0.3,) * 3), albedo * 0.3)
    # two-sided: seen from below (view direction +z), the normal flips towards the viewer
    flipped = lambertian_shading(albedo, n, p, [behind], ambient=(0.3,) * 3, view_dirs=torch.tensor([[0, 0, 1.0]]).double())
    torch.testing.assert_close(flipped, albedo * 1.3)
    with pytest.raises(ValueError, match="point lights"):
        lambertian_shading(albedo, n, None, [pl])


def _sphere(subdiv=3, radius=0.5):
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdiv, radius=radius)
    return torch.tensor(s.vertices, dtype=torch.float32), torch.tensor(s.faces)


def test_sphere_silhouettes_match_analytic_disk_and_depth():
    v, f = _sphere(4)
    out = render_views(Meshes([v], [f]), image_size=(128, 128))
    assert out.rgb.shape == (1, 8, 128, 128, 3) and out.mask.shape == (1, 8, 128, 128)
    cams = default_views((128, 128))
    focal = cams.focal_length[0, 1].item()
    # the silhouette of a sphere of radius r at distance d is a disk of radius f * tan(asin(r / d))
    # (polygonal sphere: inscribed, slightly smaller)
    radius_px = focal * math.tan(math.asin(0.5 / DEFAULT_DISTANCE))
    area = out.mask.sum(dim=(2, 3))[0]
    assert ((area < math.pi * radius_px**2) & (area > 0.98 * math.pi * radius_px**2)).all()
    torch.testing.assert_close(out.mask, silhouette(out.fragments.pix_to_face).reshape(out.mask.shape))
    on = out.mask > 0
    assert (out.depth[on] > DEFAULT_DISTANCE - 0.5 - 1e-4).all() and (out.depth[on] < DEFAULT_DISTANCE).all()
    assert (out.depth[~on] == 0).all()
    torch.testing.assert_close(out.rgb[~on], torch.ones_like(out.rgb[~on]))
    assert (out.rgb[on] < 1).all() and (out.rgb[on] > 0.3).all()


def test_ragged_render_equals_per_mesh_and_per_mesh_cameras():
    v0, f0 = _sphere(2)
    v1 = v0[:, [0, 2, 1]] * torch.tensor([1.0, 0.6, 0.9]) + 0.1
    f1 = f0[:100]
    cols = [torch.rand(v.shape[0], 3, generator=torch.Generator().manual_seed(i)) for i, v in enumerate((v0, v1))]
    batch = Meshes([v0, v1], [f0, f1], TexturesVertex(cols))
    cams = orbit_cameras([0.0, 120.0, 240.0], [20.0, 20.0, -10.0], 2.5, (40, 48))
    out = render_views(batch, cams)
    for b in range(2):
        single = render_views(batch[b], cams)
        torch.testing.assert_close(out.rgb[b], single.rgb[0])
        torch.testing.assert_close(out.depth[b], single.depth[0])
        torch.testing.assert_close(out.mask[b], single.mask[0])
    idx = torch.tensor([0, 1, 2, 0, 1, 2])
    per_mesh = render_views(batch, PerspectiveCameras(cams.R[idx], cams.T[idx], cams.focal_length[idx], (40, 48)),
                            per_mesh_cameras=True)
    torch.testing.assert_close(per_mesh.rgb, out.rgb)
    assert out.mask.sum() > 1000


def test_render_gradient_reaches_vertex_positions():
    v, f = _sphere(2)
    v = v.clone().requires_grad_(True)
    out = render_views(Meshes([v], [f]), image_size=(32, 32))
    (out.rgb.sum() + out.depth.sum()).backward()
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0


def test_bad_camera_inputs_raise():
    with pytest.raises(ValueError, match="R must be"):
        PerspectiveCameras(torch.eye(2), torch.zeros(3), (1.0, 1.0), (8, 8))
    with pytest.raises(ValueError, match="fov_deg"):
        PerspectiveCameras.from_fov(190.0, (8, 8), torch.eye(3)[None], torch.zeros(1, 3))
    with pytest.raises(ValueError, match="image_size"):
        v, f = _sphere(1)
        render_views(Meshes([v], [f]), default_views((16, 16)), image_size=(8, 8))


def test_cameras_from_an_opencv_record_and_resized():
    from sam3d_eval.render.cameras import PerspectiveCameras

    K = [[100.0, 0.0, 31.5], [0.0, 90.0, 20.25], [0.0, 0.0, 1.0]]
    R = [[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    T = [0.1, -0.2, 3.0]
    cam = PerspectiveCameras.from_intrinsics(K, R, T, (48, 64))
    assert cam.image_size == (48, 64) and cam.R.dtype == torch.float32 and cam.R.shape == (1, 3, 3)
    assert torch.equal(cam.focal_length, torch.tensor([[100.0, 90.0]]))
    assert torch.equal(cam.principal_point, torch.tensor([[31.5, 20.25]]))
    assert torch.equal(cam.T, torch.tensor([T]))
    # a pixel's projection moves with the image when it is resized to 24 x 32
    half = PerspectiveCameras.from_intrinsics(K, R, T, (48, 64), resize_to=(24, 32), dtype=torch.float64)
    assert half.image_size == (24, 32) and half.R.dtype == torch.float64
    x = torch.tensor([[[0.3, -0.1, 0.5]]], dtype=torch.float64)
    uv_half, uv = half.project(x)[..., :2], cam.project(x.float()).double()[..., :2]  # (u, v); depth unchanged
    assert torch.allclose(uv_half, uv / 2, rtol=1e-6)
