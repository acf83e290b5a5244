"""Occ3D-style labels: semantic voxels from accumulated sensor points, and visibility masks.

Semantics are made the way Occ3D makes them: from the points the LiDAR returned (the static scene
accumulated over the whole scene in the global frame, objects from the keyframe's own sweep),
voxelised in the ego frame. A voxel is occupied when some point lies in it, so a label is a
surface a sensor reached: the inside of buildings and vehicles, their far sides and everything
no beam ever met stay free (17).

Visibility follows Occ3D: a ray marks every voxel it traverses up to and including the first
occupied voxel; rays that leave the grid without a hit mark nothing. ``mask_camera`` uses camera
pixel rays, ``mask_lidar`` the LiDAR beams.
"""
from __future__ import annotations

import numpy as np

from occ.constants import FREE
from occ.geometry import OccGrid

# Which class wins a voxel that points of several classes share: objects over stuff, then manmade
# over vegetation over the ground classes (higher wins; ties go to the higher class index).
_PRIORITY = np.array([5, 6, 7, 7, 7, 7, 7, 7, 6, 7, 7, 0, 0, 0, 0, 3, 2, 0], np.int64)


def voxelize_points(points: np.ndarray, cls: np.ndarray, grid: OccGrid, transform: np.ndarray | None = None,
                    out: np.ndarray | None = None) -> np.ndarray:
    """Semantic grid uint8 [X, Y, Z] (FREE = 17) of labelled points.

    Args:
        points: [P, 3] metres in the grid's frame (or in the frame ``transform`` maps to the
            grid's, [4, 4]); points outside the grid are ignored.
        cls: uint8 [P] Occ3D class (0..16) of each point.
        grid: the occupancy grid.
        out: optional int64 [X * Y * Z] voxel codes of other points to merge with (filled in place);
            see ``voxel_codes``.
    A voxel takes the class of highest ``_PRIORITY`` among its points (ties: the higher class).
    """
    code = voxel_codes(points, cls, grid, transform, out)
    return np.where(code > 0, code % 32 - 1, FREE).astype(np.uint8).reshape(grid.shape)


def voxel_codes(points: np.ndarray, cls: np.ndarray, grid: OccGrid, transform: np.ndarray | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
    """int64 [X * Y * Z]: per voxel the largest ``_PRIORITY * 32 + class + 1`` of its points (0: none);
    accumulated into ``out`` when given. Arguments as ``voxelize_points``."""
    code = np.zeros(int(np.prod(grid.shape)), np.int64) if out is None else out
    p = np.asarray(points, np.float64).reshape(-1, 3)
    if transform is not None:
        p = p @ transform[:3, :3].T + transform[:3, 3]
    flat, inside = grid.points_to_flat(p)
    c = np.asarray(cls, np.int64)[inside]
    if len(c):
        np.maximum.at(code, flat[inside], _PRIORITY[c] * 32 + c + 1)
    return code


def fill_vertical_gaps(sem: np.ndarray, classes, max_gap: int) -> np.ndarray:
    """Densify observed vertical surfaces: in every column, free runs of at most ``max_gap`` voxels
    between two voxels of the same class in ``classes`` take that class (uint8 [X, Y, Z] -> a copy).

    Why: a facade or crown seen by a 32-beam LiDAR from a few distances is a stack of points with
    gaps between the rings; Occ3D closes such holes by surface reconstruction, this closes the
    vertical ones (the only ones the ring pattern leaves on vertical surfaces).
    """
    out = sem.copy()
    for c in classes:
        is_c = sem == c
        for gap in range(1, max_gap + 1):
            # free run of exactly ``gap`` voxels starting at level k, with class c at k-1 and k+gap
            inner = np.ones(sem[..., 1:sem.shape[2] - gap].shape, bool)
            for j in range(gap):
                inner &= sem[..., 1 + j:sem.shape[2] - gap + j] == FREE
            run = is_c[..., :sem.shape[2] - gap - 1] & inner & is_c[..., gap + 1:]
            for j in range(gap):
                sl = out[..., 1 + j:sem.shape[2] - gap + j]
                sl[run] = c
    return out


def ray_visibility(occupied: np.ndarray, grid: OccGrid, origin: np.ndarray, dirs: np.ndarray,
                   endpoint_only: np.ndarray | None = None) -> np.ndarray:
    """Voxels (bool [X, Y, Z]) traversed by rays up to and including their first occupied voxel.

    Args:
        occupied: bool [X, Y, Z]; origin: [3] or per-ray [R, 3] origins (ego frame);
        dirs: [R, 3] unit directions.
        endpoint_only: optional bool [X, Y, Z]: a ray whose first occupied voxel is one of these
            marks only that voxel, not the free voxels before it.
    Exact voxel traversal (Amanatides & Woo), all rays advanced together one voxel
    boundary per iteration. Rays leaving the grid without meeting an occupied
    voxel mark nothing.
    """
    shape = np.array(occupied.shape)
    v = grid.voxel_size
    lo = grid.lower
    hi = lo + shape * v
    origin = np.broadcast_to(np.asarray(origin, np.float64), dirs.shape)
    with np.errstate(divide='ignore', invalid='ignore'):
        dd = np.where(np.abs(dirs) < 1e-12, 1e-12, dirs)
        t_a, t_b = (lo - origin) / dd, (hi - origin) / dd
        t_in = np.maximum(np.minimum(t_a, t_b).max(1), 0)
        t_out = np.maximum(t_a, t_b).min(1)
        ok = t_out > t_in
        d, o, t_in, t_out = dd[ok], origin[ok], t_in[ok], t_out[ok]
        p = o + d * (t_in + 1e-9)[:, None]
        ijk = np.clip(np.floor((p - lo) / v).astype(np.int64), 0, shape - 1)
        step = np.where(d > 0, 1, -1)
        t_max = (lo + (ijk + (step > 0)) * v - o) / d                     # next boundary, per axis
        t_delta = v / np.abs(d)
    occ_flat = occupied.ravel()
    alive = np.arange(len(d))
    hit = np.zeros(len(d), bool)
    hit_vox = np.full(len(d), -1, np.int64)
    rays_log, vox_log = [], []
    while len(alive):
        flat = (ijk[alive, 0] * shape[1] + ijk[alive, 1]) * shape[2] + ijk[alive, 2]
        rays_log.append(alive)
        vox_log.append(flat)
        stop = occ_flat[flat]
        hit[alive[stop]] = True
        hit_vox[alive[stop]] = flat[stop]
        alive = alive[~stop]
        if not len(alive):
            break
        tm = t_max[alive]
        ax = tm.argmin(1)
        t_next = tm[np.arange(len(alive)), ax]
        go = t_next < t_out[alive]
        alive, ax = alive[go], ax[go]
        moved = ijk[alive, ax] + step[alive, ax]
        ijk[alive, ax] = moved
        t_max[alive, ax] += t_delta[alive, ax]
        alive = alive[(moved >= 0) & (moved < shape[ax])]      # only the axis stepped can leave the grid
    vis = np.zeros(occ_flat.shape, bool)
    if rays_log:
        rays, vox = np.concatenate(rays_log), np.concatenate(vox_log)
        keep = hit[rays]
        if endpoint_only is not None:
            quiet = np.zeros(len(d), bool)
            quiet[hit] = endpoint_only.ravel()[hit_vox[hit]]
            keep &= ~quiet[rays] | (vox == hit_vox[rays])
        vis[vox[keep]] = True
    return vis.reshape(occupied.shape)


def voxel_visibility(occupied: np.ndarray, grid: OccGrid, origin: np.ndarray, candidates: np.ndarray,
                     step: float | None = None, max_occluders: int = 0) -> np.ndarray:
    """Which candidate voxels a sensor at ``origin`` sees (bool [M]): those behind at most
    ``max_occluders`` occupied voxels (``occluder_counts``). 0 is strict line of sight; the camera
    mask uses ``frame.CAMERA_OCCLUDERS`` (fitted to the real Occ3D frame, data/README.md "Masks")."""
    return occluder_counts(occupied, grid, origin, candidates, step) <= max_occluders


def occluder_counts(occupied: np.ndarray, grid: OccGrid, origin: np.ndarray, candidates: np.ndarray,
                    step: float | None = None) -> np.ndarray:
    """How many occupied voxels lie in front of each candidate voxel, seen from ``origin`` (int [M]).

    Counted along the segment from the origin to the voxel's nearest point (flat indices in
    ``candidates`` [M]), sampled every ``step`` metres (default half a voxel), before its last 1.5
    voxels: at grazing angles the segment runs just over neighbours of the same surface (the road
    in front of a road voxel), which do not hide it. An occluder is a run of samples in one
    occupied voxel.
    """
    shape = np.array(occupied.shape)
    v = grid.voxel_size
    step = step or v / 2
    origin = np.asarray(origin, np.float64)
    ijk = np.stack(np.unravel_index(candidates, occupied.shape), 1)
    vmin = grid.lower + ijk * v
    target = np.clip(origin, vmin + 0.05 * v, vmin + 0.95 * v)         # nearest point of the voxel
    d = target - origin
    dist = np.linalg.norm(d, axis=1)
    dirs = d / np.maximum(dist, 1e-9)[:, None]
    limit = dist - 1.5 * v
    order = np.argsort(limit)
    count = np.zeros(len(candidates), np.int64)
    occ_flat = occupied.ravel()
    for s0 in range(0, len(order), 4096):
        r = order[s0:s0 + 4096]
        m = int(np.ceil(max(limit[r].max(), 0) / step))
        if m <= 0:
            continue
        t = (np.arange(m)[None] + 0.5) * step * np.ones((len(r), 1))
        idx = _flat_index(origin, dirs[r], t, grid.lower, v, shape)
        entered = np.ones(idx.shape, bool)                             # the sample starts a new voxel
        entered[:, 1:] = idx[:, 1:] != idx[:, :-1]
        count[r] = ((t < limit[r, None]) & occ_flat[idx] & entered).sum(1)
    return count


def _flat_index(origin, dirs, t, lo, v, shape):
    """Flat voxel index [A, B] of the points origin + dirs[A] * t[A, B] (clamped to the grid)."""
    flat = np.zeros(t.shape, np.int64)
    for ax in range(3):
        i = np.floor((origin[ax] - lo[ax] + dirs[:, ax, None] * t) / v).astype(np.int64)
        np.clip(i, 0, shape[ax] - 1, out=i)
        flat = flat * shape[ax] + i
    return flat
