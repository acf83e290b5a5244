"""Ego-motion features of the world model: what the forecaster is conditioned on.

Poses are ``ego2global`` [B, 4, 4] as in the batch contract. The motion
between two keyframes is expressed in the *earlier* frame's ego coordinates
(x forward, y left). Pose algebra and label warps live in ``occ.geometry``.
"""
from __future__ import annotations

import torch

from occ.geometry import relative_pose, yaw_of


def pose_features(rel: torch.Tensor) -> torch.Tensor:
    """Planar motion features of a relative pose [..., 4, 4] -> [..., 4]: (dx, dy, sin yaw, cos yaw).

    dx, dy are metres in the earlier frame; at 2 Hz they are a few metres, so
    they need no further scaling for an MLP.
    """
    yaw = yaw_of(rel)
    return torch.stack([rel[..., 0, 3], rel[..., 1, 3], torch.sin(yaw), torch.cos(yaw)], -1)


def step_poses(ego2global: torch.Tensor) -> torch.Tensor:
    """Per-step motion of a pose sequence [B, S, 4, 4] -> features [B, S, 4].

    Entry s is the motion from frame s to frame s+1 (what happens *after*
    frame s): frame s+1's ego frame expressed in frame s's. The last entry,
    with no next frame, is zero motion (identity).
    """
    b, s = ego2global.shape[:2]
    feats = torch.zeros(b, s, 4, dtype=torch.float32, device=ego2global.device)
    feats[..., 3] = 1.0                                   # cos(0): identity rotation
    if s > 1:
        rel = relative_pose(ego2global[:, 1:].reshape(-1, 4, 4), ego2global[:, :-1].reshape(-1, 4, 4))
        feats[:, :-1] = pose_features(rel).view(b, s - 1, 4)
    return feats
