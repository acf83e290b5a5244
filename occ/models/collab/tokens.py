"""BEV maps <-> tokens: one token per BEV cell, a feature and a metric position.

A token is a row of ``feat`` [N, C] with its position ``pos`` [N, 2] (x, y in
metres, in the frame of the agent that owns the map) and ``size`` [N] (how
many BEV cells it stands for; 1 before merging).
"""
from __future__ import annotations

import torch

from occ.geometry import OccGrid, xy_range


def bev_cell_centres(x_cells: int, y_cells: int, pc_range, device=None) -> torch.Tensor:
    """Metric centres of a BEV grid's cells, raster order (x major).

    Args:
        x_cells, y_cells: BEV size X, Y.
        pc_range: (x_min, y_min, z_min, x_max, y_max, z_max) or (x_min, y_min, x_max, y_max).
    Returns:
        float32 [X*Y, 2]; row ``i*Y + j`` is the centre of cell (i, j) (``occ.geometry.OccGrid``).
    """
    return OccGrid.from_shape(xy_range(pc_range), (x_cells, y_cells)).centers_torch(device).reshape(-1, 2)


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
    return OccGrid.from_shape(xy_range(pc_range), tuple(bev_shape)).points_to_index_torch(pos)
