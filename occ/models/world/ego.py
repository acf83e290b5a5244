"""Ego-motion geometry of the world model: relative poses and label-grid warps.

Poses are ``ego2global`` [B, 4, 4] as in the batch contract. The relative
motion between two keyframes is expressed in the *earlier* frame's ego
coordinates (x forward, y left), which is what the forecaster is conditioned on.
"""
from __future__ import annotations

import torch

from occ.constants import FREE
from occ.models.temporal.align import cur2past_transform


def relative_pose(ego2global_from: torch.Tensor, ego2global_to: torch.Tensor) -> torch.Tensor:
    """``to`` ego frame expressed in the ``from`` ego frame: inv(from) @ to, [B, 4, 4] float32."""
    return cur2past_transform(ego2global_to, ego2global_from)


def pose_features(rel: torch.Tensor) -> torch.Tensor:
    """Planar motion features of a relative pose [..., 4, 4] -> [..., 4]: (dx, dy, sin yaw, cos yaw).

    dx, dy are metres in the earlier frame; at 2 Hz they are a few metres, so
    they need no further scaling for an MLP.
    """
    yaw = torch.atan2(rel[..., 1, 0], rel[..., 0, 0])
    return torch.stack([rel[..., 0, 3], rel[..., 1, 3], torch.sin(yaw), torch.cos(yaw)], -1)


def step_poses(ego2global: torch.Tensor) -> torch.Tensor:
    """Per-step motion of a pose sequence [B, S, 4, 4] -> features [B, S, 4].

    Entry s is the motion from frame s to frame s+1 (what happens *after*
    frame s); the last entry, with no next frame, is zero motion (identity).
    """
    b, s = ego2global.shape[:2]
    feats = torch.zeros(b, s, 4, dtype=torch.float32, device=ego2global.device)
    feats[..., 3] = 1.0                                   # cos(0): identity rotation
    if s > 1:
        rel = relative_pose(ego2global[:, :-1].reshape(-1, 4, 4), ego2global[:, 1:].reshape(-1, 4, 4))
        feats[:, :-1] = pose_features(rel).view(b, s - 1, 4)
    return feats


def warp_labels(labels: torch.Tensor, dst2src: torch.Tensor, pc_range, voxel_size: float,
                fill: int = FREE) -> torch.Tensor:
    """Nearest-neighbour warp of label grids into another ego frame.

    Pull: every destination voxel centre is mapped into the source frame and
    takes the label of the source voxel it lands in; centres landing outside
    the source grid get ``fill`` (free: nothing is known to be there).

    Args:
        labels: [B, X, Y, Z] integer labels in the source frame.
        dst2src: [B, 4, 4] destination ego coords -> source ego coords.
        pc_range: (x_min, y_min, z_min, x_max, y_max, z_max) metres.
        voxel_size: metres.
    Returns:
        [B, X, Y, Z] labels (same dtype) in the destination frame.
    """
    b, nx, ny, nz = labels.shape
    dev = labels.device
    lo = torch.tensor(pc_range[:3], dtype=torch.float64, device=dev)
    axes = [lo[a] + (torch.arange(n, device=dev, dtype=torch.float64) + 0.5) * voxel_size
            for a, n in enumerate((nx, ny, nz))]
    centers = torch.stack(torch.meshgrid(*axes, indexing='ij'), -1).reshape(-1, 3)   # [V, 3]
    m = dst2src.to(dev, torch.float64)
    src = centers[None] @ m[:, :3, :3].transpose(1, 2) + m[:, None, :3, 3]          # [B, V, 3]
    idx = torch.floor((src - lo) / voxel_size).long()
    size = torch.tensor([nx, ny, nz], device=dev)
    inside = ((idx >= 0) & (idx < size)).all(-1)
    idx = torch.minimum(idx.clamp(min=0), size - 1)
    flat = (idx[..., 0] * ny + idx[..., 1]) * nz + idx[..., 2]
    out = labels.reshape(b, -1).gather(1, flat)
    out = torch.where(inside, out, torch.full_like(out, fill))
    return out.view(b, nx, ny, nz)
