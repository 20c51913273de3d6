"""Rotations from unit quaternions and back, in ONE convention: quaternions are (w, x, y, z), real part first.

Matrices act on column vectors, `x' = R x` (pytorch3d `quaternion_to_matrix`); the row-vector transforms
of `similarity` use their transpose. 3DGS splat files store rot_0..3 in this same (w, x, y, z) order.
"""

from __future__ import annotations

import torch

__all__ = ["matrix_to_quaternion", "quaternion_to_matrix"]


def quaternion_to_matrix(quaternions: torch.Tensor) -> torch.Tensor:
    """Rotation matrices `(..., 3, 3)` (column-vector convention) from quaternions `(..., 4)` (w, x, y, z).

    pytorch3d's formula: non-unit quaternions are normalised implicitly (the 2 / |q|^2 factor); q and -q
    give the same matrix. Differentiable.
    """
    if quaternions.shape[-1] != 4:
        raise ValueError(f"quaternions must be (..., 4) (w, x, y, z), got {tuple(quaternions.shape)}")
    r, i, j, k = torch.unbind(quaternions, -1)
    two_s = 2.0 / (quaternions * quaternions).sum(-1)
    o = torch.stack(
        (
            1 - two_s * (j * j + k * k), two_s * (i * j - k * r), two_s * (i * k + j * r),
            two_s * (i * j + k * r), 1 - two_s * (i * i + k * k), two_s * (j * k - i * r),
            two_s * (i * k - j * r), two_s * (j * k + i * r), 1 - two_s * (i * i + j * j),
        ),
        -1,
    )
    return o.reshape(quaternions.shape[:-1] + (3, 3))


def _sqrt_positive_part(x: torch.Tensor) -> torch.Tensor:
    # sqrt(max(0, x)) with a zero (not NaN) gradient at 0, as pytorch3d.
    ret = torch.zeros_like(x)
    positive = x > 0
    ret[positive] = torch.sqrt(x[positive])
    return ret


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Unit quaternions `(..., 4)` (w, x, y, z) with w >= 0 from rotation matrices `(..., 3, 3)` (column convention).

    pytorch3d's method: of the four candidate formulas, use the one with the largest denominator (stable
    for every rotation, including 180 degrees). The sign is fixed so that w >= 0 (q and -q are one rotation).
    """
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"matrix must be (..., 3, 3), got {tuple(matrix.shape)}")
    batch = matrix.shape[:-2]
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = torch.unbind(matrix.reshape(batch + (9,)), -1)
    q_abs = _sqrt_positive_part(
        torch.stack(
            (1.0 + m00 + m11 + m22, 1.0 + m00 - m11 - m22, 1.0 - m00 + m11 - m22, 1.0 - m00 - m11 + m22), -1
        )
    )
    # Row c is the quaternion times 2 q_abs[c]; it is accurate where q_abs[c] is large.
    quat_by_rijk = torch.stack(
        (
            torch.stack((q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01), -1),
            torch.stack((m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20), -1),
            torch.stack((m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21), -1),
            torch.stack((m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2), -1),
        ),
        -2,
    )
    floor = torch.tensor(0.1, dtype=q_abs.dtype, device=q_abs.device)
    candidates = quat_by_rijk / (2.0 * q_abs[..., None].max(floor))
    best = q_abs.argmax(-1)
    out = torch.gather(candidates, -2, best[..., None, None].expand(batch + (1, 4)))[..., 0, :]
    return torch.where(out[..., :1] < 0, -out, out)
