"""The occupancy grid: range, voxel size, shape, and index <-> metric maps.

Occ3D-nuScenes: x, y in [-40, 40] m, z in [-1, 5.4] m, 0.4 m voxels ->
200x200x16. Arrays are indexed [X, Y, Z] with index 0 at the minimum corner;
voxel (i, j, k) covers [lo + i*v, lo + (i+1)*v) on each axis.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OCC3D_RANGE = (-40.0, -40.0, -1.0, 40.0, 40.0, 5.4)


@dataclass(frozen=True)
class OccGrid:
    """An axis-aligned voxel grid in the ego frame (x forward, y left, z up)."""

    pc_range: tuple = OCC3D_RANGE   # (x_min, y_min, z_min, x_max, y_max, z_max), metres
    voxel_size: float = 0.4          # metres, cubic voxels

    @classmethod
    def from_voxel(cls, voxel_size: float, pc_range=OCC3D_RANGE) -> 'OccGrid':
        return cls(tuple(float(v) for v in pc_range), float(voxel_size))

    @property
    def shape(self) -> tuple:
        """(X, Y, Z) number of voxels."""
        lo, hi = np.array(self.pc_range[:3]), np.array(self.pc_range[3:])
        return tuple(int(round(n)) for n in (hi - lo) / self.voxel_size)

    @property
    def lower(self) -> np.ndarray:
        return np.asarray(self.pc_range[:3], dtype=np.float64)

    def centers(self) -> np.ndarray:
        """Voxel centres, float32 [X, Y, Z, 3] in metres (ego frame)."""
        axes = [self.lower[a] + (np.arange(n) + 0.5) * self.voxel_size
                for a, n in enumerate(self.shape)]
        return np.stack(np.meshgrid(*axes, indexing='ij'), -1).astype(np.float32)

    def points_to_index(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Metric points [..., 3] -> integer indices [..., 3] and an in-grid mask [...]."""
        idx = np.floor((np.asarray(pts)[..., :3] - self.lower) / self.voxel_size).astype(np.int64)
        inside = np.all((idx >= 0) & (idx < np.array(self.shape)), axis=-1)
        return idx, inside

    def index_to_points(self, idx: np.ndarray) -> np.ndarray:
        """Integer indices [..., 3] -> voxel centres [..., 3] (metres)."""
        return (self.lower + (np.asarray(idx) + 0.5) * self.voxel_size).astype(np.float32)


OCC3D_GRID = OccGrid()                      # 200 x 200 x 16
CPU_GRID = OccGrid.from_voxel(0.8)          # 100 x 100 x 8, same range
