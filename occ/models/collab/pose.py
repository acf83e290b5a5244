"""Planar (SE(2)) geometry for moving BEV tokens between agents' ego frames.

BEV tokens live on the ground plane, so a pose is (x, y, yaw) in the global
frame. ``sender2receiver = inv(receiver2global) @ sender2global``. Global
coordinates are kilometres large, so the composition runs in float64 and only
the (small) relative transform is cast to float32.
"""
from __future__ import annotations

import math

import torch


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
