"""Rigid transforms: SE(3) as 4x4 homogeneous matrices, SE(2) as (x, y, yaw) and 3x3 matrices.

Convention (docs/ARCHITECTURE.md): a matrix named ``a2b`` maps points in
frame a to frame b; ``ego2global`` is an ego pose. Global coordinates are
kilometres large, so relative poses are composed in float64 and only the
(small) result is cast to float32.
"""
from __future__ import annotations

import math

import torch

# ------------------------------------------------------------------------------ SE(3)


def planar_pose(x: float, y: float, yaw: float) -> torch.Tensor:
    """Ground-plane pose as a float32 [4, 4]: rotation ``yaw`` (radians, about z) then translation (x, y, 0)."""
    c, s = math.cos(yaw), math.sin(yaw)
    m = torch.eye(4)
    m[:2, :2] = torch.tensor([[c, -s], [s, c]])
    m[0, 3], m[1, 3] = x, y
    return m


def relative_pose(src2global: torch.Tensor, dst2global: torch.Tensor,
                  src_aug: torch.Tensor | None = None, dst_aug: torch.Tensor | None = None) -> torch.Tensor:
    """The map from one (augmented) ego frame to another: ``src2dst``, float32 [..., 4, 4].

    ``dst_aug @ inv(dst2global) @ src2global @ inv(src_aug)``: ``src_aug`` /
    ``dst_aug`` are the BEV augmentations (original -> augmented ego
    coordinates) of the two frames, None for identity.

    Args:
        src2global, dst2global: [..., 4, 4] ego poses.
        src_aug, dst_aug: [..., 4, 4] or None.
    Returns:
        float32 [..., 4, 4].
    """
    # float64: the sub-centimetre relative motion must survive the subtraction
    # of kilometre-large global translations.
    m = torch.linalg.solve(dst2global.double(), src2global.double())   # inv(dst) @ src
    if src_aug is not None:
        m = m @ torch.linalg.inv(src_aug.double())
    if dst_aug is not None:
        m = dst_aug.double() @ m
    return m.float()


def transform_points(mat: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Apply [B, 4, 4] (or [4, 4]) to points [B, ..., 3] (or [..., 3]); returns [B, ..., 3].

    Written out per row (no matmul), so the result does not depend on a BLAS
    summation order; computed in ``pts``' dtype.
    """
    m = mat.to(pts)
    batched = m.dim() == 3
    shape = pts.shape
    p = pts.reshape(shape[0], -1, 3) if batched else pts.reshape(1, -1, 3)
    m = m if batched else m[None]
    rows = [m[:, r, 0, None] * p[..., 0] + m[:, r, 1, None] * p[..., 1] + m[:, r, 2, None] * p[..., 2]
            + m[:, r, 3, None] for r in range(3)]
    return torch.stack(rows, -1).reshape(shape)


def transform_xy(points: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
    """Apply [B, 4, 4] to ground-plane points [B, ..., 2] (z = 0); returns [B, ..., 2]."""
    rot = mat[:, :2, :2]
    trans = mat[:, :2, 3]
    shape = points.shape
    flat = points.reshape(shape[0], -1, 2)
    out = flat @ rot.transpose(1, 2) + trans[:, None]
    return out.reshape(shape)


def yaw_of(mat: torch.Tensor) -> torch.Tensor:
    """Rotation about z of [..., 4, 4] (or [..., 3, 3]) matrices, radians [...]: atan2(R10, R00)."""
    return torch.atan2(mat[..., 1, 0], mat[..., 0, 0])


def is_planar(mat, atol: float = 1e-8) -> bool:
    """Whether every [..., 4, 4] map keeps z and moves x/y independently of z.

    True for BEV flips / rotations and ground-plane ego motion; then a label
    grid can be resampled column by column. Tolerances as ``numpy.allclose``.
    """
    m = torch.as_tensor(mat, dtype=torch.float64).reshape(-1, 4, 4)
    z_row = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64, device=m.device)
    return bool(torch.allclose(m[:, 2], z_row.expand_as(m[:, 2]), rtol=1e-5, atol=atol)
                and torch.allclose(m[:, :2, 2], torch.zeros_like(m[:, :2, 2]), rtol=1e-5, atol=atol))


# ------------------------------------------------------------------------------ SE(2)
# BEV tokens live on the ground plane, so an agent pose is (x, y, yaw) in the
# global frame and sender2receiver = inv(receiver2global) @ sender2global.


def pose2d(ego2global) -> tuple:
    """(x, y, yaw) of a 4x4 ego->global matrix (roll and pitch are dropped)."""
    m = torch.as_tensor(ego2global, dtype=torch.float64)
    if m.shape != (4, 4):
        raise ValueError(f'pose2d expects a 4x4 matrix, got {tuple(m.shape)}')
    return float(m[0, 3]), float(m[1, 3]), math.atan2(float(m[1, 0]), float(m[0, 0]))


def se2(x: float, y: float, yaw: float) -> torch.Tensor:
    """float64 [3, 3] homogeneous matrix of a planar pose."""
    c, s = math.cos(yaw), math.sin(yaw)
    return torch.tensor([[c, -s, x], [s, c, y], [0.0, 0.0, 1.0]], dtype=torch.float64)


def relative_se2(sender_pose: tuple, receiver_pose: tuple) -> torch.Tensor:
    """float64 [3, 3] mapping sender-frame points into the receiver's frame."""
    return torch.linalg.inv(se2(*receiver_pose)) @ se2(*sender_pose)


def apply_se2(t: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Apply a [3, 3] planar transform to points [N, 2]; returns [N, 2] in ``pts``' dtype."""
    t = t.to(device=pts.device, dtype=torch.float64)
    p = pts.to(torch.float64)
    out = p @ t[:2, :2].t() + t[:2, 2]
    return out.to(pts.dtype)


def bev_aug_2d(bev_aug) -> torch.Tensor:
    """The planar part [3, 3] (float64) of a 4x4 BEV augmentation (flip / rotation / shift)."""
    m = torch.as_tensor(bev_aug, dtype=torch.float64).cpu()
    if m.shape != (4, 4):
        raise ValueError(f'bev_aug must be 4x4, got {tuple(m.shape)}')
    out = torch.eye(3, dtype=torch.float64)
    out[:2, :2] = m[:2, :2]
    out[:2, 2] = m[:2, 3]
    return out


def perturb_pose(pose: tuple, std_m: float, std_deg: float, gen: torch.Generator) -> tuple:
    """Localisation error: Gaussian noise on x, y (metres) and yaw (degrees), drawn from ``gen``."""
    if std_m <= 0 and std_deg <= 0:
        return pose
    n = torch.randn(3, generator=gen, dtype=torch.float64)
    return (pose[0] + std_m * float(n[0]), pose[1] + std_m * float(n[1]),
            pose[2] + math.radians(std_deg) * float(n[2]))
