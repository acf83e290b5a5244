"""Vectorised ray casting against primitives and the ground plane.

Two ways to find which primitives a ray may hit, both exact in the end
(every candidate pair gets an exact ray test):

* pinhole cameras: each primitive's bounding box is projected into the
  image; only the pixels inside that rectangle are tested (``cast_pinhole``);
* any ray set with one origin (the LiDAR): rays are grouped in tiles bounded
  by a cone, and a primitive is tested against a tile's rays when its
  bounding sphere meets the cone (``cast``).

Primitives are processed nearest first, in distance bands: a pair is dropped
when the primitive cannot be nearer than what the ray already hit (the ground
is intersected first, analytically), so occluded scenery costs little.
"""
from __future__ import annotations

import numpy as np

from .primitives import BOX, CYLINDER, ELLIPSOID, Primitives, intersect

GROUND = -1       # hit id of the ground (the plane z = 0, and raised sidewalks with kerbs)
MISS = -2         # hit id of rays that hit nothing within range (sky)
_EPS = 1e-4
_BANDS = (0.0, 12.0, 30.0, 60.0, np.inf)     # metres: nearest-first processing bands
_CHUNK = 1 << 20


def grid_tiles(h: int, w: int, th: int, tw: int) -> np.ndarray:
    """Ray indices [T, th*tw] of an h x w ray grid (row-major) split into th x tw tiles.

    Tiles at the border repeat their last row/column so all tiles have the
    same size; duplicated rays are harmless because hits are resolved by a
    per-ray minimum.
    """
    rows = np.minimum(np.arange(0, -(-h // th) * th, th)[:, None] + np.arange(th), h - 1)   # [Ty, th]
    cols = np.minimum(np.arange(0, -(-w // tw) * tw, tw)[:, None] + np.arange(tw), w - 1)   # [Tx, tw]
    idx = rows[:, None, :, None] * w + cols[None, :, None, :]                                # [Ty, Tx, th, tw]
    return idx.reshape(-1, th * tw)


class _Prepared:
    """Per-primitive quantities for rays from one origin (local origin, rotation, extents)."""

    def __init__(self, prims: Primitives, origin: np.ndarray):
        self.c, self.s = np.cos(prims.yaw), np.sin(prims.yaw)
        q = origin - prims.center
        self.lo = np.stack([self.c * q[:, 0] + self.s * q[:, 1], -self.s * q[:, 0] + self.c * q[:, 1], q[:, 2]], 1)
        self.half = prims.size / 2
        self.kind = prims.kind
        self.dmin = np.linalg.norm(q, axis=1) - prims.radius   # no hit can be nearer than this


def _ray_t(pp: _Prepared, pid: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Entry distance [M] of rays d [M, 3] (shared origin) into primitives pid [M]; inf on miss."""
    t = np.full(len(pid), np.inf)
    with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
        for kind in (BOX, CYLINDER, ELLIPSOID):
            sel = np.nonzero(pp.kind[pid] == kind)[0]
            if not len(sel):
                continue
            p, dd = pid[sel], d[sel]
            c, s = pp.c[p], pp.s[p]
            lx = c * dd[:, 0] + s * dd[:, 1]
            ly = c * dd[:, 1] - s * dd[:, 0]
            lz = dd[:, 2]
            o, h = pp.lo[p], pp.half[p]
            if kind == BOX:
                ix, iy, iz = 1 / lx, 1 / ly, 1 / lz
                ax, bx = (-h[:, 0] - o[:, 0]) * ix, (h[:, 0] - o[:, 0]) * ix
                ay, by = (-h[:, 1] - o[:, 1]) * iy, (h[:, 1] - o[:, 1]) * iy
                az, bz = (-h[:, 2] - o[:, 2]) * iz, (h[:, 2] - o[:, 2]) * iz
                tmin = np.maximum(np.maximum(np.minimum(ax, bx), np.minimum(ay, by)), np.minimum(az, bz))
                tmax = np.minimum(np.minimum(np.maximum(ax, bx), np.maximum(ay, by)), np.maximum(az, bz))
            elif kind == CYLINDER:
                a = lx * lx + ly * ly
                b = o[:, 0] * lx + o[:, 1] * ly
                cc = o[:, 0] ** 2 + o[:, 1] ** 2 - h[:, 0] ** 2
                sq = np.sqrt(b * b - a * cc)                       # nan when the line misses the circle
                t0, t1 = (-b - sq) / a, (-b + sq) / a
                iz = 1 / lz
                az, bz = (-h[:, 2] - o[:, 2]) * iz, (h[:, 2] - o[:, 2]) * iz
                tmin = np.maximum(t0, np.minimum(az, bz))
                tmax = np.minimum(t1, np.maximum(az, bz))
            else:
                ox, oy, oz = o[:, 0] / h[:, 0], o[:, 1] / h[:, 1], o[:, 2] / h[:, 2]
                dx, dy, dz = lx / h[:, 0], ly / h[:, 1], lz / h[:, 2]
                a = dx * dx + dy * dy + dz * dz
                b = ox * dx + oy * dy + oz * dz
                cc = ox * ox + oy * oy + oz * oz - 1
                tmin = (-b - np.sqrt(b * b - a * cc)) / a
                tmax = tmin
            ok = (tmax >= tmin) & (tmin > _EPS)                    # nan compares False: a miss
            t[sel] = np.where(ok, tmin, np.inf)
    return t


def _ground(origin, dirs, max_range, ground):
    """Ground hits: the plane z = 0, and with a town that has kerbs (``ground.kerb_height`` > 0)
    the raised sidewalk cells (their tops and the kerb faces). Returns t [R], hit id [R] and the
    surface normal [R, 3]."""
    r = len(dirs)
    best_t = np.full(r, np.inf)
    best_p = np.full(r, MISS, np.int64)
    normal = np.zeros((r, 3))
    normal[:, 2] = 1.0
    if ground:
        with np.errstate(divide='ignore', invalid='ignore'):
            tg = np.where(dirs[:, 2] < -1e-9, -origin[2] / dirs[:, 2], np.inf)
        if getattr(ground, 'kerb_height', 0.0) > 0:
            _kerbs(ground, origin, dirs, tg, normal, max_range)
        tg[tg > max_range] = np.inf
        best_t = tg
        best_p[np.isfinite(tg)] = GROUND
    return best_t, best_p, normal


_KERB_MIN_STEP = 0.03      # metres of horizontal travel per step next to a raised cell
_KERB_TRACE_STEPS = 32     # sphere-tracing steps; the rays still walking then are sampled densely


def _kerbs(town, origin, dirs, tg, normal, max_range):
    """Move ground hits (``tg``, in place) onto raised sidewalk cells a descending ray meets first
    within ``max_range``.

    A ray meets the raised ground either on a cell's top (its point at the kerb height lies over
    a raised cell) or on a kerb face, somewhere along its path between the kerb height and z = 0.
    That stretch is walked by sphere tracing on ``town.kerb_distance`` (a lower bound of the
    distance to the nearest raised cell) in steps of at least ``_KERB_MIN_STEP``; the few rays
    that graze a kerb for longer are then sampled every ``_KERB_MIN_STEP`` at once. A face hit is
    refined by bisection to the cell boundary; its normal is the horizontal axis crossed.
    """
    h = town.kerb_height
    down = np.nonzero(np.isfinite(tg) & (origin[2] > h))[0]
    down = down[(h - origin[2]) / dirs[down, 2] <= max_range]     # the kerb height is reached in range
    if not len(down):
        return
    d = dirs[down]
    t_top = (h - origin[2]) / d[:, 2]
    p_top = origin + t_top[:, None] * d
    top = town.raised(p_top[:, 0], p_top[:, 1])
    tg[down[top]] = t_top[top]
    rest = ~top
    idx, d, t = down[rest], d[rest], t_top[rest]
    speed = np.hypot(d[:, 0], d[:, 1])                   # horizontal metres per unit of t
    ok = speed > 1e-9
    idx, d, t, speed = idx[ok], d[ok], t[ok], speed[ok]
    t_end = np.minimum(tg[idx], max_range)
    lo = np.full(len(idx), np.nan)                       # last t outside, first t inside a raised cell
    hi = np.full(len(idx), np.nan)
    active = np.arange(len(idx))
    for _ in range(_KERB_TRACE_STEPS):
        if not len(active):
            break
        p = origin + t[active, None] * d[active]
        step = np.maximum(town.kerb_distance(p[:, 0], p[:, 1]), _KERB_MIN_STEP) / speed[active]
        t_next = np.minimum(t[active] + step, t_end[active])
        q = origin + t_next[:, None] * d[active]
        hit = town.raised(q[:, 0], q[:, 1])
        lo[active[hit]], hi[active[hit]] = t[active[hit]], t_next[hit]
        t[active] = t_next
        active = active[~hit & (t_next < t_end[active])]
    step_t = _KERB_MIN_STEP / speed
    while len(active):                                   # the rays still grazing a kerb: dense samples,
        k = np.arange(1, 17)                             # 16 at a time, until they hit or end
        ts = np.minimum(t[active, None] + k[None] * step_t[active, None], t_end[active, None])
        q = origin + ts[..., None] * d[active][:, None]
        inside = town.raised(q[..., 0], q[..., 1])
        found = inside.any(1)
        first = inside.argmax(1)
        f = np.nonzero(found)[0]
        hi[active[f]] = ts[f, first[f]]
        lo[active[f]] = np.where(first[f] > 0, ts[f, np.maximum(first[f] - 1, 0)], t[active[f]])
        t[active] = ts[:, -1]
        active = active[~found & (ts[:, -1] < t_end[active])]
    a = np.nonzero(np.isfinite(hi))[0]
    if not len(a):
        return
    lo, hi = lo[a], hi[a]
    for _ in range(12):                                  # bisection to the entry of the raised cell (< 0.1 mm)
        mid = 0.5 * (lo + hi)
        m = origin + mid[:, None] * d[a]
        inside = town.raised(m[:, 0], m[:, 1])
        hi = np.where(inside, mid, hi)
        lo = np.where(inside, lo, mid)
    tg[idx[a]] = hi
    before = origin + lo[:, None] * d[a]
    after = origin + hi[:, None] * d[a]
    crossed_x = np.floor(before[:, 0] / town.res) != np.floor(after[:, 0] / town.res)
    nrm = np.zeros((len(a), 3))
    nrm[crossed_x, 0] = -np.sign(d[a][crossed_x, 0])
    nrm[~crossed_x, 1] = -np.sign(d[a][~crossed_x, 1])
    normal[idx[a]] = nrm


def _update(best_t, best_p, rays, pids, t):
    ok = np.isfinite(t)
    rays, pids, t = rays[ok], pids[ok], t[ok]
    if not len(t):
        return
    cur = np.full(len(best_t), np.inf)
    np.minimum.at(cur, rays, t)
    win = (t == cur[rays]) & (t < best_t[rays])
    # Ties (duplicated tile rays, touching solids) resolve to the largest index: deterministic.
    best_p[rays[win]] = pids[win]
    best_t[rays[win]] = t[win]


def _finish(prims, origin, dirs, best_t, best_p, ground_normal):
    r = len(dirs)
    normal = ground_normal
    local = np.zeros((r, 3))
    sel = np.nonzero(best_p >= 0)[0]
    if len(sel):
        _, n, loc = intersect(prims, best_p[sel], origin, dirs[sel])
        normal[sel] = n
        local[sel] = loc
    pts = origin + np.where(np.isfinite(best_t), best_t, 0)[:, None] * dirs
    g = best_p == GROUND
    local[g] = pts[g]
    return {'t': best_t, 'hit': best_p, 'normal': normal, 'local': local, 'point': pts}


def _test_pairs(pp, dirs, best_t, best_p, rays, pids):
    keep = pp.dmin[pids] < best_t[rays]                        # cannot beat the current hit: skip
    rays, pids = rays[keep], pids[keep]
    for s in range(0, len(rays), _CHUNK):
        rr, ii = rays[s:s + _CHUNK], pids[s:s + _CHUNK]
        _update(best_t, best_p, rr, ii, _ray_t(pp, ii, dirs[rr]))


def _bands(pp: _Prepared, sel: np.ndarray):
    for lo, hi in zip(_BANDS[:-1], _BANDS[1:]):
        b = sel[(pp.dmin[sel] >= lo) & (pp.dmin[sel] < hi)] if lo > 0 else sel[pp.dmin[sel] < hi]
        if len(b):
            yield b


def cast_pinhole(prims: Primitives, cam2global: np.ndarray, intrinsics: np.ndarray, h: int, w: int,
                 dirs: np.ndarray, max_range: float, ground=True) -> dict:
    """Cast one ray per pixel of a pinhole camera (``dirs`` [h*w, 3], row-major, global frame).

    Returns the dict of ``cast``. Candidate pixels of a primitive are the
    image rectangle bounding its projected bounding-box corners (corners
    behind the camera are pushed onto a near plane, which only enlarges it).
    """
    origin = cam2global[:3, 3]
    best_t, best_p, g_normal = _ground(origin, dirs, max_range, ground)
    if len(prims):
        pp = _Prepared(prims, origin)
        sign = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
        loc = sign[None] * pp.half[:, None]                                   # [P, 8, 3]
        cx = pp.c[:, None] * loc[..., 0] - pp.s[:, None] * loc[..., 1] + prims.center[:, None, 0]
        cy = pp.s[:, None] * loc[..., 0] + pp.c[:, None] * loc[..., 1] + prims.center[:, None, 1]
        cz = loc[..., 2] + prims.center[:, None, 2]
        rel = np.stack([cx, cy, cz], -1) - origin
        cam = rel @ cam2global[:3, :3]                                        # [P, 8, 3] camera frame
        near = 0.05
        z = np.maximum(cam[..., 2], near)
        u = intrinsics[0, 0] * cam[..., 0] / z + intrinsics[0, 2]
        v = intrinsics[1, 1] * cam[..., 1] / z + intrinsics[1, 2]
        visible = (cam[..., 2] > near).any(1) & (pp.dmin < max_range)
        u0 = np.clip(np.floor(u.min(1)), 0, w).astype(np.int64)
        u1 = np.clip(np.ceil(u.max(1)), 0, w).astype(np.int64)
        v0 = np.clip(np.floor(v.min(1)), 0, h).astype(np.int64)
        v1 = np.clip(np.ceil(v.max(1)), 0, h).astype(np.int64)
        area = np.where(visible, (u1 - u0) * (v1 - v0), 0)
        sel = np.nonzero(area > 0)[0]
        for band in _bands(pp, sel):
            order = np.argsort(pp.dmin[band], kind='stable')
            band = band[order]
            cum = np.cumsum(area[band])
            start = 0
            while start < len(band):
                # Expand rectangles to (pixel, primitive) pairs in pieces of about _CHUNK pairs.
                stop = int(np.searchsorted(cum, (cum[start - 1] if start else 0) + _CHUNK, 'right'))
                stop = max(stop, start + 1)
                part = band[start:stop]
                cnt = area[part]
                pids = np.repeat(part, cnt)
                k = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
                wid = np.repeat(u1[part] - u0[part], cnt)
                rays = (np.repeat(v0[part], cnt) + k // wid) * w + np.repeat(u0[part], cnt) + k % wid
                _test_pairs(pp, dirs, best_t, best_p, rays, pids)
                start = stop
    return _finish(prims, origin, dirs, best_t, best_p, g_normal)


def cast(prims: Primitives, origin: np.ndarray, dirs: np.ndarray, tiles: np.ndarray,
         max_range: float, ground=True) -> dict:
    """Cast rays from one origin; return the nearest hit of each ray.

    Args:
        prims: primitives in the same frame as ``origin`` / ``dirs`` (ground is z = 0 there).
        origin: float [3]; dirs: float [R, 3] unit directions.
        tiles: int [T, K] ray indices per tile (see grid_tiles); every ray must be in a tile.
        max_range: hits farther than this are misses.
        ground: False (no ground), True (the plane z = 0) or a ``Town``, whose raised sidewalks
            are hit too when it has kerbs (``Town.kerb_height`` > 0).
    Returns:
        dict with ``t`` float [R] (inf on miss), ``hit`` int [R] (primitive index,
        GROUND or MISS), ``normal`` float [R, 3], ``local`` float [R, 3]
        (primitive-frame hit point; global point for ground hits), ``point`` [R, 3].
    """
    origin = np.asarray(origin, np.float64)
    best_t, best_p, g_normal = _ground(origin, dirs, max_range, ground)
    if len(prims):
        pp = _Prepared(prims, origin)
        tdirs = dirs[tiles]                                                   # [T, K, 3]
        axis = tdirs.sum(1)
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)
        half = np.arccos(np.clip(np.einsum('tkc,tc->tk', tdirs, axis), -1, 1)).max(1)   # [T]
        v = prims.center - origin
        dist = np.linalg.norm(v, axis=1)
        rad = prims.radius
        sel = np.nonzero(pp.dmin < max_range)[0]
        for band in _bands(pp, sel):
            vb, db, rb = v[band], dist[band], rad[band]
            inside = db <= rb
            ang_size = np.arcsin(np.clip(rb / np.maximum(db, 1e-9), 0, 1))
            vn = vb / np.maximum(db, 1e-9)[:, None]
            step = max(1, 2_000_000 // len(band))
            for s in range(0, len(axis), step):
                ang = np.arccos(np.clip(axis[s:s + step] @ vn.T, -1, 1))   # [t, P]
                ti, pi = np.nonzero((ang <= half[s:s + step, None] + ang_size[None]) | inside[None])
                rays = tiles[ti + s].reshape(-1)
                pids = np.repeat(band[pi], tiles.shape[1])
                _test_pairs(pp, dirs, best_t, best_p, rays, pids)
    return _finish(prims, origin, dirs, best_t, best_p, g_normal)
