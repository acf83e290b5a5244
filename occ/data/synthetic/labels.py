"""Occ3D-style labels: semantic voxels of the world around the ego, and visibility masks.

Semantics mimic how Occ3D labels arise from accumulated LiDAR: a voxel is
occupied when a surface passes through it, i.e. it intersects a solid without
lying wholly inside one. Solid interiors (the inside of a building, the soil
under the road) are never sensed, so they are free (17), except foliage,
which LiDAR penetrates. The ground is the plane z = 0 of the ego frame,
labelled in the voxel layer that contains it.

Visibility follows Occ3D: a ray marks every voxel it traverses up to and
including the first occupied voxel; rays that leave the grid without a hit
mark nothing. ``mask_camera`` uses camera pixel rays, ``mask_lidar`` the
LiDAR beams.
"""
from __future__ import annotations

import numpy as np

from occ.constants import FREE
from occ.geometry import OccGrid

from .primitives import BOX, CYLINDER, Primitives, contains

VEGETATION = 16
# Which class wins a voxel several solids share: objects over stuff (higher wins).
_PRIORITY = np.array([5, 6, 7, 7, 7, 7, 7, 7, 6, 7, 7, 0, 0, 0, 0, 3, 2, 0], np.int64)


def voxelize(prims: Primitives, ground_class, grid: OccGrid) -> np.ndarray:
    """Semantic grid uint8 [X, Y, Z] (FREE = 17) of primitives given in the ego frame.

    Args:
        prims: primitives in the ego frame.
        ground_class: callable (x [M], y [M]) in the ego frame -> uint8 [M] class of the ground
            (FREE where the ground is not labelled).
        grid: the occupancy grid.
    A voxel belongs to a primitive when the two intersect (exactly for boxes
    and cylinders; for ellipsoids, when the voxel centre lies in the ellipsoid grown by half a
    voxel diagonal, a slight over-estimate).
    """
    shape = grid.shape
    v = grid.voxel_size
    lo = grid.lower
    code = np.zeros(int(np.prod(shape)), np.int64)
    interior = np.zeros(int(np.prod(shape)), bool)
    # Ground layer: the voxels whose z range contains the plane z = 0.
    kg = int(np.floor((0.0 - lo[2]) / v))
    if 0 <= kg < shape[2]:
        xs = lo[0] + (np.arange(shape[0]) + 0.5) * v
        ys = lo[1] + (np.arange(shape[1]) + 0.5) * v
        gx, gy = np.meshgrid(xs, ys, indexing='ij')
        gcls = np.asarray(ground_class(gx.ravel(), gy.ravel()), np.int64)
        flat = ((np.arange(shape[0])[:, None] * shape[1] + np.arange(shape[1])[None]) * shape[2] + kg).ravel()
        known = gcls != FREE
        code[flat[known]] = gcls[known] + 1
    if len(prims):
        _splat(prims, grid, code, interior)
    cls = np.where(code > 0, code % 1024 - 1, FREE).astype(np.uint8)
    # Solid interiors hold no surface a sensor could return from: free, except porous foliage.
    cls[interior & (cls != VEGETATION)] = FREE
    return cls.reshape(shape)


def _splat(prims: Primitives, grid: OccGrid, code: np.ndarray, interior: np.ndarray):
    """Mark voxels intersecting primitives in ``code`` (class with priority) and voxels lying wholly
    inside one primitive (their part above the ground, the soil below being solid too) in ``interior``."""
    shape = np.array(grid.shape)
    v = grid.voxel_size
    lo = grid.lower
    c, s = np.cos(prims.yaw), np.sin(prims.yaw)
    half = prims.size / 2
    ext_x = np.abs(c) * half[:, 0] + np.abs(s) * half[:, 1]        # world-axis half extents
    ext_y = np.abs(s) * half[:, 0] + np.abs(c) * half[:, 1]
    ext = np.stack([ext_x, ext_y, half[:, 2]], 1)
    i0 = np.clip(np.floor((prims.center - ext - lo) / v), 0, shape).astype(np.int64)
    i1 = np.clip(np.floor((prims.center + ext - lo) / v) + 1, 0, shape).astype(np.int64)
    n = np.prod(i1 - i0, axis=1)
    sel = np.nonzero(n > 0)[0]
    if not len(sel):
        return
    cnt = n[sel]
    pid = np.repeat(sel, cnt)
    k = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    d = (i1 - i0)[pid]
    iz = k % d[:, 2]
    iy = (k // d[:, 2]) % d[:, 1]
    ix = k // (d[:, 2] * d[:, 1])
    idx = i0[pid] + np.stack([ix, iy, iz], 1)
    ctr = lo + (idx + 0.5) * v
    q = ctr - prims.center[pid]
    cp, sp = c[pid], s[pid]
    h = half[pid]
    hv = v / 2
    z_ok = (np.abs(q[:, 2]) <= h[:, 2] + hv) & (ctr[:, 2] + hv > 0)   # solids stand on the ground
    kind = prims.kind[pid]
    # Boxes: separating axes of two rectangles in x-y (voxel axes and box axes) plus z.
    lx = cp * q[:, 0] + sp * q[:, 1]
    ly = -sp * q[:, 0] + cp * q[:, 1]
    rv = hv * (np.abs(cp) + np.abs(sp))
    box = (np.abs(lx) <= h[:, 0] + rv) & (np.abs(ly) <= h[:, 1] + rv) & \
          (np.abs(q[:, 0]) <= ext[pid, 0] + hv) & (np.abs(q[:, 1]) <= ext[pid, 1] + hv)
    # Cylinders: distance from the axis to the voxel square.
    dx = np.maximum(np.abs(q[:, 0]) - hv, 0)
    dy = np.maximum(np.abs(q[:, 1]) - hv, 0)
    cyl = dx * dx + dy * dy <= h[:, 0] ** 2
    # Ellipsoids: centre inside the ellipsoid grown by half a voxel diagonal (conservative).
    lz = q[:, 2]
    g = h + hv * np.sqrt(3)
    ell = (lx / g[:, 0]) ** 2 + (ly / g[:, 1]) ** 2 + (lz / g[:, 2]) ** 2 <= 1
    inside = z_ok & np.where(kind == BOX, box, np.where(kind == CYLINDER, cyl, ell))
    cls = prims.cls[pid[inside]].astype(np.int64)
    flat = np.ravel_multi_index(idx[inside].T, tuple(shape))
    # Wholly inside: all 8 corners of the voxel's above-ground part are inside the primitive (convex).
    sel_in = np.nonzero(inside)[0]
    c_lo = ctr[sel_in] - hv
    z0 = np.maximum(c_lo[:, 2], 0.0)
    z1 = c_lo[:, 2] + v
    whole = z1 > z0
    for cx in (0.0, v):
        for cy in (0.0, v):
            for zz in (z0, z1):
                corner = np.stack([c_lo[:, 0] + cx, c_lo[:, 1] + cy, zz], 1)
                whole &= contains(prims, pid[sel_in], corner, pad=1e-6)
    interior[flat[whole]] = True
    # code = priority * 1024 + cls + 1; ground codes (cls + 1 < 32) lose to every solid.
    np.maximum.at(code, flat, _PRIORITY[cls] * 1024 + cls + 1)


def ray_visibility(occupied: np.ndarray, grid: OccGrid, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Voxels (bool [X, Y, Z]) traversed by rays up to and including their first occupied voxel.

    Args:
        occupied: bool [X, Y, Z]; origin: [3] or per-ray [R, 3] origins (ego frame);
        dirs: [R, 3] unit directions.
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
    rays_log, vox_log = [], []
    while len(alive):
        flat = (ijk[alive, 0] * shape[1] + ijk[alive, 1]) * shape[2] + ijk[alive, 2]
        rays_log.append(alive)
        vox_log.append(flat)
        stop = occ_flat[flat]
        hit[alive[stop]] = True
        alive = alive[~stop]
        if not len(alive):
            break
        tm = t_max[alive]
        ax = tm.argmin(1)
        t_next = tm[np.arange(len(alive)), ax]
        go = t_next < t_out[alive]
        alive, ax = alive[go], ax[go]
        ijk[alive, ax] += step[alive, ax]
        t_max[alive, ax] += t_delta[alive, ax]
        inside = np.all((ijk[alive] >= 0) & (ijk[alive] < shape), axis=1)
        alive = alive[inside]
    vis = np.zeros(occ_flat.shape, bool)
    if rays_log:
        rays, vox = np.concatenate(rays_log), np.concatenate(vox_log)
        vis[vox[hit[rays]]] = True
    return vis.reshape(occupied.shape)


def voxel_visibility(occupied: np.ndarray, grid: OccGrid, origin: np.ndarray, candidates: np.ndarray,
                     step: float | None = None) -> np.ndarray:
    """Which candidate voxels a sensor at ``origin`` sees (bool [M]).

    A voxel (flat index in ``candidates`` [M]) is seen when the segment from the
    origin to the voxel's nearest point crosses no occupied voxel before the
    last 1.5 voxels: at grazing angles the segment runs just over neighbours of
    the same surface (the road in front of a road voxel), which do not hide it.
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
    seen = np.ones(len(candidates), bool)
    occ_flat = occupied.ravel()
    for s0 in range(0, len(order), 4096):
        r = order[s0:s0 + 4096]
        m = int(np.ceil(max(limit[r].max(), 0) / step))
        if m <= 0:
            continue
        t = (np.arange(m)[None] + 0.5) * step * np.ones((len(r), 1))
        before = t < limit[r, None]
        idx = _flat_index(origin, dirs[r], t, grid.lower, v, shape)
        seen[r] = ~(before & occ_flat[idx]).any(1)
    return seen


def _flat_index(origin, dirs, t, lo, v, shape):
    """Flat voxel index [A, B] of the points origin + dirs[A] * t[A, B] (clamped to the grid)."""
    flat = np.zeros(t.shape, np.int64)
    for ax in range(3):
        i = np.floor((origin[ax] - lo[ax] + dirs[:, ax, None] * t) / v).astype(np.int64)
        np.clip(i, 0, shape[ax] - 1, out=i)
        flat = flat * shape[ax] + i
    return flat
