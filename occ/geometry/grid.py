"""The grid: range, cell size, shape, cell centres and index <-> metric maps, in numpy and torch.

Occ3D-nuScenes: x, y in [-40, 40] m, z in [-1, 5.4] m, 0.4 m voxels ->
200x200x16. Arrays are indexed [X, Y, Z] with index 0 at the minimum corner;
cell ``i`` of an axis covers ``[lo + i*v, lo + (i+1)*v)`` and has its centre at
``lo + (i + 0.5) * v``. That centre convention is grid_sample's
``align_corners=False`` (normalised -1 / +1 are the outer *edges* of the first /
last cell), so BEV feature maps over the same range sample consistently.

One ``OccGrid`` serves the 3D label grid, BEV feature maps (``grid.bev()`` or
``OccGrid.from_shape(pc_range, (X, Y))``) and coarser query grids: it has as
many axes as ``pc_range`` has (min, max) pairs, 3 for ``(x_min, y_min, z_min,
x_max, y_max, z_max)`` and 2 for ``(x_min, y_min, x_max, y_max)``.

numpy methods compute in float64 (centres are returned as float32, as label
code expects); torch methods compute in the dtype asked for (float32 by
default: what the model code multiplies with), so ask for float64 where
sub-micrometre exactness matters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

OCC3D_RANGE = (-40.0, -40.0, -1.0, 40.0, 40.0, 5.4)


def xy_range(pc_range) -> tuple:
    """(x_min, y_min, x_max, y_max) of a 6-number (3D) or 4-number (BEV) range."""
    r = [float(v) for v in pc_range]
    if len(r) == 6:
        return r[0], r[1], r[3], r[4]
    if len(r) == 4:
        return tuple(r)
    raise ValueError(f'pc_range must have 4 or 6 numbers, got {len(r)}: {pc_range}')


@dataclass(frozen=True)
class OccGrid:
    """An axis-aligned grid of cells in the ego frame (x forward, y left, z up).

    Args:
        pc_range: (x_min, y_min, z_min, x_max, y_max, z_max) metres, or the
            4-number (x_min, y_min, x_max, y_max) of a BEV grid.
        voxel_size: cell size in metres, one number (cubic cells) or one per axis.
    """

    pc_range: tuple = OCC3D_RANGE
    voxel_size: float | tuple = 0.4

    def __post_init__(self):
        r = tuple(float(v) for v in self.pc_range)
        if len(r) not in (4, 6):
            raise ValueError(f'OccGrid: pc_range must have 4 (x/y) or 6 (x/y/z) numbers, got {len(r)}: {r}')
        n = len(r) // 2
        if any(hi <= lo for lo, hi in zip(r[:n], r[n:])):
            raise ValueError(f'OccGrid: pc_range {r} has an empty axis (max <= min)')
        v = self.voxel_size
        if isinstance(v, (tuple, list, np.ndarray)):
            v = tuple(float(s) for s in v)
            if len(v) != n:
                raise ValueError(f'OccGrid: voxel_size {v} has {len(v)} entries for a {n}-axis grid')
            bad = min(v) <= 0
        else:
            v = float(v)
            bad = v <= 0
        if bad:
            raise ValueError(f'OccGrid: voxel_size must be positive, got {self.voxel_size}')
        object.__setattr__(self, 'pc_range', r)
        object.__setattr__(self, 'voxel_size', v)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_voxel(cls, voxel_size: float, pc_range=OCC3D_RANGE) -> 'OccGrid':
        """Cubic cells of ``voxel_size`` metres over ``pc_range``."""
        return cls(tuple(float(v) for v in pc_range), float(voxel_size))

    @classmethod
    def from_shape(cls, pc_range, shape) -> 'OccGrid':
        """``shape`` cells over ``pc_range`` (cells need not be cubic: size = extent / count).

        A 2-entry ``shape`` with a 6-number range gives the BEV grid over x/y.
        """
        shape = tuple(int(s) for s in shape)
        r = tuple(float(v) for v in pc_range)
        if len(shape) == 2 and len(r) == 6:
            r = xy_range(r)
        if len(r) != 2 * len(shape) or min(shape) < 1:
            raise ValueError(f'OccGrid.from_shape: shape {shape} does not fit pc_range {r}')
        n = len(shape)
        return cls(r, tuple((r[n + a] - r[a]) / shape[a] for a in range(n)))

    def bev(self) -> 'OccGrid':
        """The 2-axis grid over x/y (same cells seen from above)."""
        if self.ndim == 2:
            return self
        return OccGrid(xy_range(self.pc_range), tuple(float(v) for v in self.voxel[:2]))

    # -- description -----------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.pc_range) // 2

    @property
    def lower(self) -> np.ndarray:
        """Minimum corner, float64 [ndim]."""
        return np.asarray(self.pc_range[:self.ndim], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        """Maximum corner, float64 [ndim]."""
        return np.asarray(self.pc_range[self.ndim:], dtype=np.float64)

    @property
    def voxel(self) -> np.ndarray:
        """Cell size per axis, float64 [ndim]."""
        v = self.voxel_size
        return np.asarray(v if isinstance(v, tuple) else (v,) * self.ndim, dtype=np.float64)

    @property
    def shape(self) -> tuple:
        """Number of cells per axis, e.g. (X, Y, Z)."""
        return tuple(int(round(n)) for n in (self.upper - self.lower) / self.voxel)

    @property
    def xy_range(self) -> tuple:
        """(x_min, y_min, x_max, y_max)."""
        return xy_range(self.pc_range)

    def tiles_range(self, atol: float = 1e-6) -> bool:
        """Whether whole cells cover the range exactly (no partial cell at the max edge)."""
        return bool(np.allclose(np.array(self.shape) * self.voxel, self.upper - self.lower, atol=atol))

    # -- numpy -----------------------------------------------------------------------------
    def axis_centers(self, axis: int) -> np.ndarray:
        """Cell centres along one axis, float64 [n]: ``lo + (i + 0.5) * v``."""
        return self.lower[axis] + (np.arange(self.shape[axis]) + 0.5) * self.voxel[axis]

    def centers(self) -> np.ndarray:
        """Cell centres, float32 [*shape, ndim] in metres (ego frame)."""
        axes = [self.axis_centers(a) for a in range(self.ndim)]
        return np.stack(np.meshgrid(*axes, indexing='ij'), -1).astype(np.float32)

    def points_to_index(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Metric points [..., >=ndim] -> integer indices [..., ndim] and an in-grid mask [...]."""
        idx = np.floor((np.asarray(pts)[..., :self.ndim] - self.lower) / self.voxel).astype(np.int64)
        inside = np.ones(idx.shape[:-1], bool)
        for a, n in enumerate(self.shape):          # per axis: an all() over a width-3 axis is slow
            inside &= (idx[..., a] >= 0) & (idx[..., a] < n)
        return idx, inside

    def points_to_flat(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Metric points [..., >=ndim] -> raster index [...] (``flat_index`` of ``points_to_index``,
        meaningful where inside) and the in-grid mask [...]; computed axis by axis, without the
        [..., ndim] index array (the hot path of label voxelisation)."""
        pts = np.asarray(pts)
        flat = np.zeros(pts.shape[:-1], np.int64)
        inside = np.ones(pts.shape[:-1], bool)
        for a, n in enumerate(self.shape):
            i = np.floor((pts[..., a] - self.lower[a]) / self.voxel[a])
            inside &= (i >= 0) & (i < n)
            flat *= n
            flat += i.astype(np.int64)
        return flat, inside

    def index_to_points(self, idx: np.ndarray) -> np.ndarray:
        """Integer indices [..., ndim] -> cell centres [..., ndim] float32 (metres)."""
        return (self.lower + (np.asarray(idx) + 0.5) * self.voxel).astype(np.float32)

    # -- torch -----------------------------------------------------------------------------
    def axis_centers_torch(self, axis: int, device=None, dtype=torch.float32) -> torch.Tensor:
        """Cell centres along one axis, [n] in ``dtype`` (computed in ``dtype``)."""
        lo, v = float(self.lower[axis]), float(self.voxel[axis])
        return lo + (torch.arange(self.shape[axis], device=device, dtype=dtype) + 0.5) * v

    def centers_torch(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """Cell centres [*shape, ndim] (e.g. [X, Y, 2] for a BEV grid)."""
        axes = [self.axis_centers_torch(a, device, dtype) for a in range(self.ndim)]
        return torch.stack(torch.meshgrid(*axes, indexing='ij'), -1)

    def points_to_index_torch(self, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Metric points [..., >=ndim] -> long indices [..., ndim] and an in-grid mask [...] (bool).

        Computed in ``pts``' dtype.
        """
        cols = []
        for a in range(self.ndim):
            cols.append(torch.floor((pts[..., a] - float(self.lower[a])) / float(self.voxel[a])).long())
        idx = torch.stack(cols, -1)
        inside = torch.ones(idx.shape[:-1], dtype=torch.bool, device=idx.device)
        for a, n in enumerate(self.shape):
            inside &= (idx[..., a] >= 0) & (idx[..., a] < n)
        return idx, inside

    def index_to_points_torch(self, idx: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """Integer indices [..., ndim] -> cell centres [..., ndim] in ``dtype``."""
        cols = [float(self.lower[a]) + (idx[..., a].to(dtype) + 0.5) * float(self.voxel[a])
                for a in range(self.ndim)]
        return torch.stack(cols, -1)

    def flat_index(self, idx):
        """Raster (row-major, last axis fastest) index of integer indices [..., ndim] (numpy or torch)."""
        out = idx[..., 0]
        for a in range(1, self.ndim):
            out = out * self.shape[a] + idx[..., a]
        return out


OCC3D_GRID = OccGrid()                      # 200 x 200 x 16
CPU_GRID = OccGrid.from_voxel(0.8)          # 100 x 100 x 8, same range
