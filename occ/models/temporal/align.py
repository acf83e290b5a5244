"""Ego-motion alignment of BEV feature maps: pure geometry functions and a module.

A BEV map [B, C, X, Y] covers the grid's x/y range in its frame's *augmented*
ego frame (``bev_aug`` maps original ego coordinates to augmented ones). Cell
(i, j) has its centre at ``lo + (i + 0.5) * voxel`` (``occ.grid.OccGrid``),
which is exactly grid_sample's ``align_corners=False`` convention: normalised
-1 / +1 are the outer *edges* of the first / last cell.

To bring a past map into the current frame we pull: for every current cell
centre, find where that point lies in the past map and sample there.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def cur2past_transform(ego2global_cur: torch.Tensor, ego2global_past: torch.Tensor,
                       bev_aug_cur: torch.Tensor | None = None,
                       bev_aug_past: torch.Tensor | None = None) -> torch.Tensor:
    """4x4 map from current augmented ego coords to past augmented ego coords.

    ``bev_aug_past @ inv(ego2global_past) @ ego2global_cur @ inv(bev_aug_cur)``.

    Args:
        ego2global_cur, ego2global_past: [B, 4, 4].
        bev_aug_cur, bev_aug_past: [B, 4, 4] or None (identity).
    Returns:
        [B, 4, 4] float32.
    """
    # Global translations are kilometres: compose in float64 so the
    # sub-centimetre relative motion survives the subtraction.
    cur = ego2global_cur.double()
    past = ego2global_past.double()
    m = torch.linalg.solve(past, cur)   # inv(past) @ cur
    if bev_aug_cur is not None:
        m = m @ torch.linalg.inv(bev_aug_cur.double())
    if bev_aug_past is not None:
        m = bev_aug_past.double() @ m
    return m.float()


def bev_cell_centers(bev_shape: tuple, pc_range, device=None) -> torch.Tensor:
    """Metric x/y of every BEV cell centre, [X, Y, 2] (z plane 0).

    Args:
        bev_shape: (X, Y) cells covering ``pc_range[0]..pc_range[3]`` (x) and
            ``pc_range[1]..pc_range[4]`` (y); cells may be non-square if X != Y.
    """
    nx, ny = bev_shape
    x0, y0, x1, y1 = pc_range[0], pc_range[1], pc_range[3], pc_range[4]
    xs = x0 + (torch.arange(nx, device=device, dtype=torch.float32) + 0.5) * ((x1 - x0) / nx)
    ys = y0 + (torch.arange(ny, device=device, dtype=torch.float32) + 0.5) * ((y1 - y0) / ny)
    return torch.stack(torch.meshgrid(xs, ys, indexing='ij'), -1)


def transform_xy(points: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
    """Apply [B, 4, 4] to ground-plane points [B, ..., 2] (z = 0); returns [B, ..., 2]."""
    rot = mat[:, :2, :2]
    trans = mat[:, :2, 3]
    shape = points.shape
    flat = points.reshape(shape[0], -1, 2)
    out = flat @ rot.transpose(1, 2) + trans[:, None]
    return out.reshape(shape)


def metric_to_normalized(xy: torch.Tensor, pc_range) -> torch.Tensor:
    """Metric x/y [..., 2] -> grid_sample coordinates [..., 2] in (W=Y, H=X) order.

    grid_sample on a [B, C, X, Y] map reads ``grid[..., 0]`` along the last
    axis (Y) and ``grid[..., 1]`` along X, hence the swap.
    """
    x0, y0, x1, y1 = pc_range[0], pc_range[1], pc_range[3], pc_range[4]
    u = (xy[..., 0] - x0) / (x1 - x0) * 2 - 1
    v = (xy[..., 1] - y0) / (y1 - y0) * 2 - 1
    return torch.stack([v, u], -1)


def inside_mask(grid: torch.Tensor) -> torch.Tensor:
    """True where a normalised sampling location [..., 2] lies inside the map's extent."""
    return (grid.abs() <= 1.0).all(-1)


def sample_bev(feat: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear sample ``feat`` [B, C, X, Y] at normalised ``grid`` [B, H, W, 2] -> [B, C, H, W].

    Border padding: a point inside the extent but beyond the last cell centre
    lies inside that cell, so it takes that cell's value instead of blending
    with zeros; points outside the extent are flagged by ``inside_mask``.
    """
    return F.grid_sample(feat, grid, mode='bilinear', padding_mode='border', align_corners=False)


def warp_bev(feat: torch.Tensor, cur2past: torch.Tensor, pc_range) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp a past BEV map into the current frame.

    Args:
        feat: past features [B, C, X, Y] in the past (augmented) ego frame.
        cur2past: [B, 4, 4] from ``cur2past_transform``.
        pc_range: grid range (x_min, y_min, z_min, x_max, y_max, z_max).
    Returns:
        warped [B, C, X, Y] (zero where invalid) and valid [B, 1, X, Y] float
        (1 where the current cell centre falls inside the past map).
    """
    b, _, nx, ny = feat.shape
    centers = bev_cell_centers((nx, ny), pc_range, feat.device)
    past_xy = transform_xy(centers.expand(b, nx, ny, 2), cur2past.to(feat.device))
    grid = metric_to_normalized(past_xy, pc_range).to(feat.dtype)
    valid = inside_mask(grid)[:, None].to(feat.dtype)
    return sample_bev(feat, grid) * valid, valid


class BEVAligner(nn.Module):
    """Warp past BEV maps into the current ego frame from poses and BEV augmentation.

    Args:
        pc_range: grid range (x_min, y_min, z_min, x_max, y_max, z_max), metres.
    """

    def __init__(self, pc_range):
        super().__init__()
        self.pc_range = tuple(float(v) for v in pc_range)

    def forward(self, feat: torch.Tensor, ego2global_cur: torch.Tensor, ego2global_past: torch.Tensor,
                bev_aug_cur: torch.Tensor | None = None, bev_aug_past: torch.Tensor | None = None,
                past_valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            feat: [B, C, X, Y] past features.
            ego2global_cur, ego2global_past, bev_aug_cur, bev_aug_past: [B, 4, 4].
            past_valid: optional bool/float [B] (the past frame exists) or
                [B, 1, X, Y] (per-cell validity of the past map).
        Returns:
            warped [B, C, X, Y], valid [B, 1, X, Y] float.
        """
        m = cur2past_transform(ego2global_cur, ego2global_past, bev_aug_cur, bev_aug_past)
        if past_valid is not None and past_valid.dim() == 4:
            # Carry the past map's own validity through the same warp.
            warped, valid = warp_bev(torch.cat([feat, past_valid.to(feat.dtype)], 1), m, self.pc_range)
            carried = (warped[:, -1:] > 0.5).to(feat.dtype)
            valid = valid * carried
            return warped[:, :-1] * valid, valid
        warped, valid = warp_bev(feat, m, self.pc_range)
        if past_valid is not None:
            v = past_valid.to(feat.dtype).view(-1, 1, 1, 1)
            warped, valid = warped * v, valid * v
        return warped, valid
