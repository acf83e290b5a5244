"""BEV maps <-> tokens: one token per BEV cell, a feature and a metric position.

A token is a row of ``feat`` [N, C] with its position ``pos`` [N, 2] (x, y in
metres, in the frame of the agent that owns the map) and ``size`` [N] (how
many BEV cells it stands for; 1 before merging).
"""
from __future__ import annotations

import torch


def bev_cell_centres(x_cells: int, y_cells: int, pc_range, device=None) -> torch.Tensor:
    """Metric centres of a BEV grid's cells, raster order (x major).

    Args:
        x_cells, y_cells: BEV size X, Y.
        pc_range: (x_min, y_min, z_min, x_max, y_max, z_max) or (x_min, y_min, x_max, y_max).
    Returns:
        float32 [X*Y, 2]; row ``i*Y + j`` is the centre of cell (i, j).
    """
    x_min, y_min, x_max, y_max = _xy_range(pc_range)
    dx = (x_max - x_min) / x_cells
    dy = (y_max - y_min) / y_cells
    xs = x_min + (torch.arange(x_cells, device=device, dtype=torch.float32) + 0.5) * dx
    ys = y_min + (torch.arange(y_cells, device=device, dtype=torch.float32) + 0.5) * dy
    gx, gy = torch.meshgrid(xs, ys, indexing='ij')
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)


def _xy_range(pc_range) -> tuple:
    r = [float(v) for v in pc_range]
    if len(r) == 6:
        return r[0], r[1], r[3], r[4]
    if len(r) == 4:
        return tuple(r)
    raise ValueError(f'pc_range must have 4 or 6 numbers, got {len(r)}: {pc_range}')


def bev_to_tokens(bev: torch.Tensor, pc_range) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per cell.

    Args:
        bev: [C, X, Y] features of one agent.
    Returns:
        feat [X*Y, C] (raster order, differentiable view of ``bev``), pos [X*Y, 2] metres.
    """
    if bev.dim() != 3:
        raise ValueError(f'bev_to_tokens expects [C, X, Y], got {tuple(bev.shape)}')
    c, x, y = bev.shape
    feat = bev.reshape(c, x * y).t()
    return feat, bev_cell_centres(x, y, pc_range, device=bev.device)


def points_to_cells(pos: torch.Tensor, bev_shape, pc_range) -> tuple[torch.Tensor, torch.Tensor]:
    """Metric positions [N, 2] -> integer cells [N, 2] (i, j) and an inside mask [N]."""
    x_min, y_min, x_max, y_max = _xy_range(pc_range)
    x_cells, y_cells = bev_shape
    dx = (x_max - x_min) / x_cells
    dy = (y_max - y_min) / y_cells
    i = torch.floor((pos[:, 0] - x_min) / dx).long()
    j = torch.floor((pos[:, 1] - y_min) / dy).long()
    inside = (i >= 0) & (i < x_cells) & (j >= 0) & (j < y_cells)
    return torch.stack([i, j], -1), inside
