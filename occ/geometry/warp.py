"""Moving grids between ego frames: label grids (nearest) and BEV feature maps (bilinear).

Both pull: every *destination* cell centre is mapped into the source frame
(``dst2src``, e.g. ``relative_pose(dst2global, src2global)``) and reads the
source there. Cells whose centre lands outside the source grid get a fill
value (labels) or are flagged invalid (features).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from occ.constants import FREE

from .grid import OccGrid, xy_range
from .pose import is_planar, transform_points, transform_xy

# ------------------------------------------------------------------------------ labels


def label_pull_index(dst2src, grid: OccGrid, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Source cell of every destination cell: raster indices and an inside mask.

    Computed in float64. When every map is planar (keeps z, x/y independent
    of z: BEV flips and rotations, ground-plane motion) only the x/y columns
    are mapped and the index is per column, shared by all z levels;
    otherwise it is per voxel.

    Args:
        dst2src: [B, 4, 4] (torch or numpy) destination -> source coordinates.
        grid: the 3-axis grid both label grids live on.
    Returns:
        index long [B, N] raster index into the source grid's N cells (N = X*Y
        columns or X*Y*Z voxels; clamped into the grid) and inside bool [B, N]
        (False: the centre left the source grid). ``gather_labels`` reads with them.
    """
    if grid.ndim != 3:
        raise ValueError(f'label_pull_index needs a 3-axis grid, got {grid.pc_range}')
    m = torch.as_tensor(dst2src).to(device=device, dtype=torch.float64)
    if m.dim() != 3 or m.shape[1:] != (4, 4):
        raise ValueError(f'dst2src must be [B, 4, 4], got {tuple(m.shape)}')
    b = m.shape[0]
    if is_planar(m):
        bev = grid.bev()
        cx, cy = bev.centers_torch(m.device, torch.float64).unbind(-1)                  # [X, Y] each
        mm = m[:, :, :, None, None]
        sx = mm[:, 0, 0] * cx + mm[:, 0, 1] * cy + mm[:, 0, 3]
        sy = mm[:, 1, 0] * cx + mm[:, 1, 1] * cy + mm[:, 1, 3]
        cells = bev
        idx, inside = cells.points_to_index_torch(torch.stack([sx, sy], -1))            # [B, X, Y, 2]
    else:
        centers = grid.centers_torch(m.device, torch.float64).reshape(1, -1, 3).expand(b, -1, 3)
        cells = grid
        idx, inside = cells.points_to_index_torch(transform_points(m, centers))         # [B, V, 3]
    idx = torch.minimum(idx.clamp(min=0), torch.tensor(cells.shape, device=m.device) - 1)
    return cells.flat_index(idx).reshape(b, -1), inside.reshape(b, -1)


def gather_labels(labels: torch.Tensor, index: torch.Tensor, inside: torch.Tensor, fill: int) -> torch.Tensor:
    """Read [B, X, Y, Z] ``labels`` at ``label_pull_index``'s cells; ``fill`` outside. Same shape and dtype."""
    b, n = index.shape
    cells = labels.reshape(b, n, -1)                       # [B, N, Z] (columns) or [B, N, 1] (voxels)
    rows = torch.arange(b, device=labels.device)[:, None]
    out = cells[rows, index.to(labels.device)]
    out = torch.where(inside.to(labels.device)[..., None], out, torch.full_like(out, fill))
    return out.view(labels.shape)


def warp_labels(labels, dst2src, grid: OccGrid, fill: int = FREE):
    """Nearest-neighbour warp of label grids into another ego frame.

    Every destination voxel centre is mapped into the source frame and takes
    the label of the source voxel it lands in; centres landing outside the
    source grid get ``fill`` (default free; 255 = unknown, 0 for masks).

    Args:
        labels: integer [X, Y, Z] or [B, X, Y, Z] on ``grid``, torch or numpy.
        dst2src: [4, 4] or [B, 4, 4]: destination ego coords -> source ego coords.
        grid: the grid (``OccGrid``) of both frames.
        fill: value of voxels with no source.
    Returns:
        labels in the destination frame: same shape, dtype and kind (numpy in, numpy out).
    """
    is_np = isinstance(labels, np.ndarray)
    lab = torch.from_numpy(np.ascontiguousarray(labels)) if is_np else labels
    single = lab.dim() == 3
    if single:
        lab = lab[None]
    if tuple(lab.shape[1:]) != grid.shape:
        raise ValueError(f'warp_labels: labels {tuple(lab.shape)} are not on the grid {grid.shape}')
    m = torch.as_tensor(dst2src)
    if m.dim() == 2:
        m = m[None].expand(lab.shape[0], 4, 4)
    flat, inside = label_pull_index(m, grid, lab.device)
    out = gather_labels(lab, flat, inside, fill)
    out = out[0] if single else out
    return out.numpy() if is_np else out


# ------------------------------------------------------------------------------ BEV features


def metric_to_normalized(xy: torch.Tensor, pc_range) -> torch.Tensor:
    """Metric x/y [..., 2] -> grid_sample coordinates [..., 2] in (W=Y, H=X) order.

    grid_sample on a [B, C, X, Y] map reads ``grid[..., 0]`` along the last
    axis (Y) and ``grid[..., 1]`` along X, hence the swap. -1 / +1 are the
    outer edges of the range (``align_corners=False``, as ``OccGrid``'s centres).
    """
    x0, y0, x1, y1 = xy_range(pc_range)
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


def warp_bev(feat: torch.Tensor, dst2src: torch.Tensor, pc_range) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp BEV feature maps into another (augmented) ego frame, bilinearly.

    Args:
        feat: [B, C, X, Y] features over ``pc_range``'s x/y in the source frame.
        dst2src: [B, 4, 4] destination -> source coordinates (for temporal
            alignment: current -> past, ``relative_pose(cur, past, aug_cur, aug_past)``);
            the sampling positions are computed in its dtype (float32 from ``relative_pose``).
        pc_range: grid range (x_min, y_min, z_min, x_max, y_max, z_max) or its x/y part.
    Returns:
        warped [B, C, X, Y] (zero where invalid) and valid [B, 1, X, Y] float
        (1 where the destination cell centre falls inside the source map).
    """
    b, _, nx, ny = feat.shape
    m = dst2src.to(feat.device)
    centers = OccGrid.from_shape(xy_range(pc_range), (nx, ny)).centers_torch(feat.device, m.dtype)
    src_xy = transform_xy(centers.expand(b, nx, ny, 2), m)
    grid = metric_to_normalized(src_xy, pc_range).to(feat.dtype)
    valid = inside_mask(grid)[:, None].to(feat.dtype)
    return sample_bev(feat, grid) * valid, valid
