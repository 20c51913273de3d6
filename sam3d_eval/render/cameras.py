"""Pinhole perspective cameras in the OpenCV convention, look-at extrinsics and an orbit helper.

Conventions (used by the whole `render` layer):
- World: right-handed, y up (glTF, trimesh).
- Camera (OpenCV): x right, y down, z forward (the camera looks along +z). World -> camera is
  `X_cam = R @ X_world + T` with column vectors; pytorch3d's `R` is the transpose of this one and its
  camera axes are x left, y up.
- Pixels: x right, y down, the image's top-left corner at (0, 0), pixel `(row r, col c)` centred at
  `(c + 0.5, r + 0.5)`; `u = fx * x / z + cx`, `v = fy * y / z + cy`. A principal point at the image centre
  is `(W / 2, H / 2)`. Intrinsics calibrated with OpenCV (centre of pixel (0, 0) at (0, 0)) need
  `cx + 0.5, cy + 0.5`.
"""

from __future__ import annotations

from typing import Sequence

import torch


def _batch(x, n: int | None, width: int, name: str, dtype, device) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=dtype, device=device)
    if t.dim() == 1:
        t = t[None]
    if t.dim() != 2 or t.shape[1] != width:
        raise ValueError(f"{name} must be ({width},) or (C, {width}), got {tuple(t.shape)}")
    if n is not None:
        if t.shape[0] not in (1, n):
            raise ValueError(f"{name} has {t.shape[0]} rows for {n} cameras")
        t = t.expand(n, width)
    return t


class PerspectiveCameras:
    """A batch of C pinhole cameras sharing one image size.

    Args:
        R: `(C, 3, 3)` world -> camera rotations (OpenCV axes).
        T: `(C, 3)` world -> camera translations.
        focal_length: `(C, 2)` or `(2,)` (fx, fy) in pixels.
        principal_point: `(C, 2)` or `(2,)` (cx, cy) in pixels; default the image centre.
        image_size: `(H, W)` in pixels.
    """

    def __init__(
        self,
        R: torch.Tensor,
        T: torch.Tensor,
        focal_length: torch.Tensor | Sequence[float],
        image_size: tuple[int, int],
        principal_point: torch.Tensor | Sequence[float] | None = None,
    ) -> None:
        if R.dim() == 2:
            R = R[None]
        if R.dim() != 3 or R.shape[1:] != (3, 3):
            raise ValueError(f"R must be (C, 3, 3), got {tuple(R.shape)}")
        if not R.is_floating_point():
            raise ValueError(f"R must be floating point, got {R.dtype}")
        C = R.shape[0]
        H, W = (int(s) for s in image_size)
        if H <= 0 or W <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        dtype, device = R.dtype, R.device
        self.R = R
        self.T = _batch(T, C, 3, "T", dtype, device)
        self.focal_length = _batch(focal_length, C, 2, "focal_length", dtype, device)
        pp = (W / 2.0, H / 2.0) if principal_point is None else principal_point
        self.principal_point = _batch(pp, C, 2, "principal_point", dtype, device)
        self.image_size = (H, W)

    @classmethod
    def from_fov(
        cls,
        fov_deg: float | torch.Tensor,
        image_size: tuple[int, int],
        R: torch.Tensor,
        T: torch.Tensor,
    ) -> "PerspectiveCameras":
        """Cameras with vertical field of view `fov_deg` (degrees), square pixels, centred principal point."""
        fov = torch.as_tensor(fov_deg, dtype=R.dtype, device=R.device)
        if bool((fov <= 0).any() or (fov >= 180).any()):
            raise ValueError(f"fov_deg must lie in (0, 180), got {fov_deg}")
        H = int(image_size[0])
        f = (H / 2.0) / torch.tan(torch.deg2rad(fov) / 2.0)
        C = R.shape[0] if R.dim() == 3 else 1
        f = f.reshape(-1, 1).expand(C, 2)
        return cls(R, T, f, image_size)

    @classmethod
    def from_intrinsics(
        cls,
        K,
        R,
        T,
        image_size: tuple[int, int],
        *,
        resize_to: tuple[int, int] | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> "PerspectiveCameras":
        """One camera from an OpenCV camera record (a manifest's ``camera``: ``x_cam = R x + T``).

        Args:
            K: 3x3 intrinsics in pixels (nested sequences or an array; the skew `K[0][1]` is not modelled).
            R: 3x3 world -> camera rotation. T: 3 world -> camera translation.
            image_size: (H, W) of the image `K` is for, in pixels.
            resize_to: (H', W'): the camera of that image resized to H' x W' (focal lengths and principal point
                scaled by W'/W and H'/H); None keeps `image_size`.
            dtype, device: of the camera's tensors.
        """
        H, W = (int(s) for s in image_size)
        sy, sx = (1.0, 1.0) if resize_to is None else (resize_to[0] / H, resize_to[1] / W)
        focal = torch.tensor([float(K[0][0]) * sx, float(K[1][1]) * sy], dtype=dtype, device=device)
        centre = torch.tensor([float(K[0][2]) * sx, float(K[1][2]) * sy], dtype=dtype, device=device)
        return cls(torch.as_tensor(R, dtype=dtype, device=device)[None], torch.as_tensor(T, dtype=dtype, device=device)[None],
                   focal, (H, W) if resize_to is None else tuple(int(s) for s in resize_to), centre)

    def __len__(self) -> int:
        return self.R.shape[0]

    def __getitem__(self, index) -> "PerspectiveCameras":
        if isinstance(index, int):
            index = [index]
        return PerspectiveCameras(
            self.R[index], self.T[index], self.focal_length[index], self.image_size, self.principal_point[index]
        )

    def to(self, device: torch.device | str) -> "PerspectiveCameras":
        return PerspectiveCameras(
            self.R.to(device), self.T.to(device), self.focal_length.to(device), self.image_size,
            self.principal_point.to(device),
        )

    @property
    def device(self) -> torch.device:
        return self.R.device

    def get_camera_center(self) -> torch.Tensor:
        """`(C, 3)` camera centres in world coordinates, `-R^T T`."""
        return -(self.R.transpose(1, 2) @ self.T[:, :, None])[:, :, 0]

    def view_directions(self) -> torch.Tensor:
        """`(C, 3)` unit viewing directions (camera +z) in world coordinates."""
        return self.R[:, 2, :]

    def _select(self, camera_index: torch.Tensor | None):
        if camera_index is None:
            return self.R, self.T, self.focal_length, self.principal_point
        return (self.R[camera_index], self.T[camera_index], self.focal_length[camera_index],
                self.principal_point[camera_index])

    def transform_points_view(self, points: torch.Tensor, camera_index: torch.Tensor | None = None) -> torch.Tensor:
        """World points to camera coordinates.

        points: `(P, 3)` (seen by every camera) or `(C, P, 3)`; returns `(C, P, 3)`. With `camera_index`
        `(M,)` int64, points `(M, 3)` each go through their own camera and the result is `(M, 3)`.
        """
        R, T, _, _ = self._select(camera_index)
        if camera_index is not None:
            if points.shape != (camera_index.shape[0], 3):
                raise ValueError(f"with camera_index points must be (M, 3), got {tuple(points.shape)}")
            return (R @ points[:, :, None])[:, :, 0] + T
        if points.dim() == 2:
            points = points[None]
        if points.dim() != 3 or points.shape[-1] != 3 or points.shape[0] not in (1, len(self)):
            raise ValueError(f"points must be (P, 3) or ({len(self)}, P, 3), got {tuple(points.shape)}")
        return points @ R.transpose(1, 2) + T[:, None, :]

    def project(self, points: torch.Tensor, camera_index: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
        """World points to `(..., 3)` pixel x, pixel y (conventions above) and view depth z.

        Shapes as `transform_points_view`. Depths at or behind the camera are returned as they are (the
        rasteriser drops such faces); x, y there use `max(z, eps)` to stay finite. Differentiable.
        """
        cam = self.transform_points_view(points, camera_index)
        _, _, f, c = self._select(camera_index)
        if camera_index is None:
            f, c = f[:, None, :], c[:, None, :]
        z = cam[..., 2:3]
        xy = cam[..., :2] / z.clamp(min=eps) * f + c
        return torch.cat([xy, z], dim=-1)


def look_at_extrinsics(
    eye: torch.Tensor,
    at: torch.Tensor | Sequence[float] = (0.0, 0.0, 0.0),
    up: torch.Tensor | Sequence[float] = (0.0, 1.0, 0.0),
) -> tuple[torch.Tensor, torch.Tensor]:
    """World -> camera `R` `(C, 3, 3)` and `T` `(C, 3)` (OpenCV axes) of cameras at `eye` `(C, 3)` looking
    at `at`, with world `up` appearing up in the image. When the view is parallel to `up`, world -z (or +x)
    stands in for it."""
    eye = eye if eye.dim() == 2 else eye[None]
    at = torch.as_tensor(at, dtype=eye.dtype, device=eye.device).expand_as(eye)
    up = torch.as_tensor(up, dtype=eye.dtype, device=eye.device).expand_as(eye)
    z = torch.nn.functional.normalize(at - eye, dim=1)
    x = torch.linalg.cross(z, up, dim=1)
    for alt in ((0.0, 0.0, -1.0), (1.0, 0.0, 0.0)):
        bad = x.norm(dim=1, keepdim=True) < 1e-6
        alt_up = torch.tensor(alt, dtype=eye.dtype, device=eye.device).expand_as(eye)
        x = torch.where(bad, torch.linalg.cross(z, alt_up, dim=1), x)
    x = torch.nn.functional.normalize(x, dim=1)
    y = torch.linalg.cross(z, x, dim=1)  # image down
    R = torch.stack([x, y, z], dim=1)
    T = -(R @ eye[:, :, None])[:, :, 0]
    return R, T


def orbit_eye(azimuth_deg, elevation_deg, distance, dtype=torch.float32, device=None) -> torch.Tensor:
    """`(C, 3)` positions on spheres around the origin, broadcast over the three arguments: azimuth about
    +y from +z towards +x, elevation above the xz-plane (pytorch3d `camera_position_from_spherical_angles`)."""
    az, el, d = torch.broadcast_tensors(
        *(torch.as_tensor(a, dtype=dtype, device=device).reshape(-1) for a in (azimuth_deg, elevation_deg, distance))
    )
    az, el = torch.deg2rad(az), torch.deg2rad(el)
    return torch.stack([d * torch.cos(el) * torch.sin(az), d * torch.sin(el), d * torch.cos(el) * torch.cos(az)], 1)


def orbit_cameras(
    azimuth_deg,
    elevation_deg,
    distance,
    image_size: tuple[int, int] = (256, 256),
    fov_deg: float = 40.0,
    at: Sequence[float] = (0.0, 0.0, 0.0),
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> PerspectiveCameras:
    """Cameras on an orbit around `at` looking at it, y up; azimuth/elevation in degrees broadcast with
    distance (world units) to C cameras; vertical field of view `fov_deg`."""
    if bool((torch.as_tensor(distance) <= 0).any()):
        raise ValueError(f"distance must be positive, got {distance}")
    at_t = torch.as_tensor(at, dtype=dtype, device=device)
    eye = orbit_eye(azimuth_deg, elevation_deg, distance, dtype, device) + at_t
    R, T = look_at_extrinsics(eye, at_t)
    return PerspectiveCameras.from_fov(fov_deg, image_size, R, T)

