"""Ray origins for RayIoU: LiDAR positions of keyframes of the same scene, in the current ego frame.

Follows SparseOcc's ``loaders/ego_pose_dataset.py`` (MCG-NJU/SparseOcc): for the
reference frame, every keyframe k of its scene contributes the position of
its LiDAR, ``inv(ego2global_ref) @ ego2global_k @ lidar2ego_k @ [0, 0, 0, 1]``;
positions farther than 1 m from the grid's x/y border are dropped (SparseOcc:
``|x| < 39 and |y| < 39`` for the +-40 m Occ3D grid), and when more than 8
remain, 8 are picked evenly by ``round(linspace(0, n - 1, 8))``. We also drop
positions outside the grid's z range (a ray cannot start outside the grid).

Without info files (e.g. a bare Occ3D ``gts/`` folder), ``default_origins``
gives one origin: the nuScenes LIDAR_TOP position in the ego frame
(0.9858, 0.0, 1.8402) m, the value in SparseOcc's ray_metrics.py comment.
RayIoU from a single origin is not comparable to published numbers; the tool
says so when it falls back to it.
"""
from __future__ import annotations

import numpy as np

from occ.evaluation.sources import infos_by_scene
from occ.geometry import OccGrid

NUSCENES_LIDAR_IN_EGO = (0.9858, 0.0, 1.8402)
MAX_ORIGINS = 8
BORDER_MARGIN = 1.0   # metres kept from the x/y border (SparseOcc: 39 m of 40 m)


def default_origins() -> np.ndarray:
    """float64 [1, 3]: the nuScenes LiDAR position in the ego frame."""
    return np.asarray([NUSCENES_LIDAR_IN_EGO], np.float64)


def lidar_positions_in_frame(ref_ego2global: np.ndarray, ego2globals: np.ndarray,
                             lidar2egos: np.ndarray) -> np.ndarray:
    """LiDAR positions of K frames in the reference ego frame, float64 [K, 3].

    Args:
        ref_ego2global: [4, 4] pose of the reference frame.
        ego2globals: [K, 4, 4] poses of the K frames.
        lidar2egos: [K, 4, 4] LiDAR extrinsics of the K frames.
    """
    lidar2global = np.asarray(ego2globals, np.float64) @ np.asarray(lidar2egos, np.float64)
    global2ref = np.linalg.inv(np.asarray(ref_ego2global, np.float64))
    return (global2ref[None] @ lidar2global)[:, :3, 3]


def select_origins(positions: np.ndarray, grid: OccGrid, max_origins: int = MAX_ORIGINS,
                   margin: float = BORDER_MARGIN) -> np.ndarray:
    """Keep positions well inside the grid, then at most ``max_origins`` evenly spaced ones."""
    p = np.asarray(positions, np.float64).reshape(-1, 3)
    lo, hi = np.asarray(grid.pc_range[:3]), np.asarray(grid.pc_range[3:])
    ok = ((p[:, 0] > lo[0] + margin) & (p[:, 0] < hi[0] - margin)
          & (p[:, 1] > lo[1] + margin) & (p[:, 1] < hi[1] - margin)
          & (p[:, 2] >= lo[2]) & (p[:, 2] < hi[2]))
    p = p[ok]
    if len(p) > max_origins:
        p = p[np.round(np.linspace(0, len(p) - 1, max_origins)).astype(np.int64)]
    return p


def origins_from_infos(infos: list, grid: OccGrid, max_origins: int = MAX_ORIGINS) -> dict:
    """token -> float64 [T, 3] origins for every info (CONTRACTS.md info dicts).

    Uses ``scene_name``, ``timestamp``, ``ego2global`` and ``lidar2ego`` of all
    infos of each scene (the frames given, in time order). A frame whose own
    LiDAR is outside the grid (never for real data) falls back to ``default_origins``.
    """
    out = {}
    for frames in infos_by_scene(infos):
        e2g = np.stack([np.asarray(f['ego2global'], np.float64) for f in frames])
        l2e = np.stack([np.asarray(f['lidar2ego'], np.float64) for f in frames])
        for ref, info in enumerate(frames):
            pos = lidar_positions_in_frame(e2g[ref], e2g, l2e)
            sel = select_origins(pos, grid, max_origins)
            out[info['token']] = sel if len(sel) else default_origins()
    return out
