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
        self.slab_lo, self.slab_hi = -self.half - self.lo, self.half - self.lo    # box faces - local origin
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
            if kind == BOX:
                a_, b_ = pp.slab_lo[p], pp.slab_hi[p]
                ix, iy, iz = 1 / lx, 1 / ly, 1 / lz
                ax, bx = a_[:, 0] * ix, b_[:, 0] * ix
                ay, by = a_[:, 1] * iy, b_[:, 1] * iy
                az, bz = a_[:, 2] * iz, b_[:, 2] * iz
                tmin = np.maximum(np.maximum(np.minimum(ax, bx), np.minimum(ay, by)), np.minimum(az, bz))
                tmax = np.minimum(np.minimum(np.maximum(ax, bx), np.maximum(ay, by)), np.maximum(az, bz))
            elif kind == CYLINDER:
                o, h = pp.lo[p], pp.half[p]
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
                o, h = pp.lo[p], pp.half[p]
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
    """Ground plane z = 0 hits (when ``ground``): t [R], hit id [R] and the surface normal [R, 3]."""
    r = len(dirs)
    best_t = np.full(r, np.inf)
    best_p = np.full(r, MISS, np.int64)
    normal = np.zeros((r, 3))
    normal[:, 2] = 1.0
    if ground:
        with np.errstate(divide='ignore', invalid='ignore'):
            tg = np.where(dirs[:, 2] < -1e-9, -origin[2] / dirs[:, 2], np.inf)
        tg[tg > max_range] = np.inf
        best_t = tg
        best_p[np.isfinite(tg)] = GROUND
    return best_t, best_p, normal


def _raised_ground(ground, origin, dirs, best_t, best_p, normal, max_range):
    """With a town that has kerbs (``ground.kerb_height`` > 0): rays that meet a raised sidewalk
    cell (its top or a kerb face) before their current hit (``best_t`` / ``best_p``, from the plane
    and the primitives) hit the ground there (in place, normals too). Run after the primitives, so
    rays that a primitive stops above the kerb height are never walked."""
    if not ground or getattr(ground, 'kerb_height', 0.0) <= 0:
        return
    t = best_t.copy()
    _kerbs(ground, origin, dirs, t, normal, max_range)
    moved = t < best_t
    best_t[moved] = t[moved]
    best_p[moved] = GROUND


def _kerbs(town, origin, dirs, tg, normal, max_range):
    """Move hits (``tg``, in place; inf: none in range) onto raised sidewalk cells a descending ray
    meets first within ``max_range``; set their normals.

    A ray meets the raised ground either on a cell's top (its point at the kerb height lies over
    a raised cell) or on a kerb face, somewhere along its path between the kerb height and z = 0.
    That stretch is skipped when the box of raster cells it spans holds no raised cell
    (``RaisedCells.count``); otherwise it is traversed exactly, cell row by cell row (``_traverse``).
    """
    h = town.kerb_height
    if origin[2] <= h:
        return
    down = np.nonzero(dirs[:, 2] < -1e-9)[0]
    t0 = (h - origin[2]) / dirs[down, 2]                           # where the ray is at the kerb height
    t1 = np.minimum(tg[down], max_range)                           # a miss ends at the range
    reach = t0 < t1                                                # not stopped above the kerb height
    down, t0, t1 = down[reach], t0[reach], t1[reach]
    d = dirs[down]
    cells, res = town.raised_cells, town.res
    c0 = np.floor((origin[:2] + t0[:, None] * d[:, :2]) / res).astype(np.int64)
    c1 = np.floor((origin[:2] + t1[:, None] * d[:, :2]) / res).astype(np.int64)
    near = _box_count(cells, c0, c1) > 0                           # the box holds the top cell too
    idx, d, t0, t1, c0, c1 = down[near], d[near], t0[near], t1[near], c0[near], c1[near]
    n = cells.n
    top = np.all((c0 >= 0) & (c0 < n), 1)
    top[top] = cells.raised[c0[top, 0], c0[top, 1]]
    tg[idx[top]] = t0[top]
    idx, d, t0, t1, c0, c1 = idx[~top], d[~top], t0[~top], t1[~top], c0[~top], c1[~top]
    major_x = np.abs(d[:, 0]) >= np.abs(d[:, 1])
    for axis, sel in ((0, major_x), (1, ~major_x)):
        t_hit, face = _traverse(cells, res, origin, d[sel], t0[sel], t1[sel], c0[sel], c1[sel], axis)
        ok = np.isfinite(t_hit)
        rays, t_hit, face, dd = idx[sel][ok], t_hit[ok], face[ok], d[sel][ok]
        tg[rays] = t_hit
        nrm = np.zeros((len(rays), 3))
        nrm[np.arange(len(rays)), face] = -np.sign(dd[np.arange(len(rays)), face])
        normal[rays] = nrm


def _box_count(cells, a, b):
    """Raised cells in the index boxes spanned by cells a [R, 2] and b [R, 2]."""
    return cells.count(np.minimum(a[:, 0], b[:, 0]), np.maximum(a[:, 0], b[:, 0]),
                       np.minimum(a[:, 1], b[:, 1]), np.maximum(a[:, 1], b[:, 1]))


_ROWS_PER_STEP = 16     # cell rows a ray is followed through per vectorised step of ``_traverse``


def _traverse(cells, res, origin, d, t, t_end, cell, end_cell, u):
    """Exact first entry into a raised cell of rays d [R, 3] between t [R] and t_end [R], whose
    horizontal direction is mostly along axis ``u`` (0: x, 1: y); ``cell`` [R, 2] is the cell at t.

    A row is the cells of one index on the other axis ``v``. In each row the ray passes through,
    it meets a raised cell either where it enters the row or further along it: the row's first
    raised cell ahead (``RaisedCells.next_along``), if the ray reaches it before leaving the row.
    Each step follows ``_ROWS_PER_STEP`` rows at once; a ray stops at its first entry, at t_end, or
    when the box of cells it has left holds no raised cell. Returns t [R] (inf: no raised cell met)
    and the axis of the face entered [R].
    """
    v = 1 - u
    n = cells.n
    cell, t = cell.copy(), t.copy()
    hit_t = np.full(len(d), np.inf)
    face = np.zeros(len(d), np.int64)
    su = np.where(d[:, u] > 0, 1, -1)
    sv = np.where(d[:, v] > 0, 1, -1)
    ahead_pos, ahead_neg = cells.next_along(u, 1), cells.next_along(u, -1)
    m = np.arange(_ROWS_PER_STEP)
    active = np.arange(len(d))
    with np.errstate(divide='ignore', invalid='ignore'):
        while len(active):
            a = active
            du, dv = d[a, u, None], d[a, v, None]
            pos = su[a, None] > 0
            row = cell[a, v, None] + m * sv[a, None]                                   # [A, M]
            t_out = np.where(dv != 0, ((row + (sv[a, None] > 0)) * res - origin[v]) / dv, np.inf)
            t_in = np.concatenate([t[a, None], t_out[:, :-1]], 1)
            col = np.floor((origin[u] + t_in * du) / res).astype(np.int64)
            col[:, 0] = cell[a, u]
            reached = t_in < t_end[a, None]
            row_in = (row >= 0) & (row < n)
            ij = (np.clip(col, 0, n - 1), np.clip(row, 0, n - 1))
            ij = ij if u == 0 else ij[::-1]
            entry = reached & row_in & (col >= 0) & (col < n) & cells.raised[ij]
            k = np.where(pos, ahead_pos[ij], ahead_neg[ij])
            has = reached & row_in & np.where(pos, col < n, col >= 0) & (k >= 0) & (k < n)
            t_u = ((k + ~pos) * res - origin[u]) / du                                  # its near face
            run = has & (t_u <= np.minimum(t_out, t_end[a, None]))
            event = entry | run
            found = event.any(1)
            r = np.nonzero(found)[0]
            f = event[r].argmax(1)
            at_entry = entry[r, f]
            hit_t[a[r]] = np.where(at_entry, t_in[r, f], t_u[r, f])
            face[a[r]] = np.where(at_entry, v, u)
            go = ~found & (t_out[:, -1] < t_end[a])
            a = a[go]
            t[a] = t_out[go, -1]
            cell[a, v] = row[go, -1] + sv[a]
            cell[a, u] = np.floor((origin[u] + t[a] * d[a, u]) / res).astype(np.int64)
            active = a[_box_count(cells, cell[a], end_cell[a]) > 0]
    return hit_t, face


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
    _raised_ground(ground, origin, dirs, best_t, best_p, g_normal, max_range)
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
        # A tile's rays lie within angle ``half`` of its axis; a primitive's bounding sphere within
        # angle ``size`` of its centre's direction. They can meet when the angle between the axis
        # and that direction is at most half + size (< pi here), i.e. when its cosine is at least
        # cos(half + size) = cos(half) cos(size) - sin(half) sin(size): no arccos per pair.
        cos_half = np.clip(np.einsum('tkc,tc->tk', tdirs, axis), -1, 1).min(1)           # [T]
        sin_half = np.sqrt(1 - cos_half ** 2)
        v = prims.center - origin
        dist = np.linalg.norm(v, axis=1)
        rad = prims.radius
        sel = np.nonzero(pp.dmin < max_range)[0]
        for band in _bands(pp, sel):
            vb, db, rb = v[band], dist[band], rad[band]
            inside = db <= rb
            sin_size = np.clip(rb / np.maximum(db, 1e-9), 0, 1)
            cos_size = np.sqrt(1 - sin_size ** 2)
            vn = vb / np.maximum(db, 1e-9)[:, None]
            step = max(1, 2_000_000 // len(band))
            for s in range(0, len(axis), step):
                ch, sh = cos_half[s:s + step, None], sin_half[s:s + step, None]
                near = axis[s:s + step] @ vn.T >= ch * cos_size[None] - sh * sin_size[None]    # [t, P]
                ti, pi = np.nonzero(near | inside[None])
                rays = tiles[ti + s].reshape(-1)
                pids = np.repeat(band[pi], tiles.shape[1])
                _test_pairs(pp, dirs, best_t, best_p, rays, pids)
    _raised_ground(ground, origin, dirs, best_t, best_p, g_normal, max_range)
    return _finish(prims, origin, dirs, best_t, best_p, g_normal)
