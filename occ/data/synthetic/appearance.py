"""Per-class surface appearance: procedural textures, sun shading, distance haze, sky.

Textures are functions of the hit point in the primitive's own frame (so they
move with vehicles) or of the global point for the ground. They are
distinctive per class (windows on facades, leaves on trees, lane paint on
asphalt, tiles on sidewalks) without being a flat colour per class, so a
network has to learn appearance rather than look up a palette.
"""
from __future__ import annotations

import numpy as np

from . import objects as O
from . import town as T
from .primitives import Primitives
from .raycast import GROUND, MISS

SUN = np.array([0.35, 0.25, 0.9]) / np.linalg.norm([0.35, 0.25, 0.9])
SKY_TOP = np.array([0.33, 0.52, 0.82])
SKY_HORIZON = np.array([0.78, 0.82, 0.86])


def hash_noise(p: np.ndarray, freq: float) -> np.ndarray:
    """Blocky value noise in [0, 1) from points [M, 3] (an integer hash of the lattice cell)."""
    c = np.floor(np.asarray(p) * freq).astype(np.int64)
    h = (c[:, 0] * 73856093) ^ (c[:, 1] * 19349663) ^ (c[:, 2] * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h >> 8) & 0xFFFF) / 65536.0


def sky(dirs: np.ndarray) -> np.ndarray:
    e = np.clip(dirs[:, 2] * 3.0, 0, 1)[:, None]
    return SKY_HORIZON + (SKY_TOP - SKY_HORIZON) * e


def ground_colour(codes: np.ndarray, p: np.ndarray) -> np.ndarray:
    fine = hash_noise(p, 5.0)[:, None]
    patch = hash_noise(p, 0.25)[:, None]
    col = np.zeros((len(codes), 3))
    sel = codes == T.G_TERRAIN
    grass, dirt = np.array([0.33, 0.42, 0.2]), np.array([0.47, 0.39, 0.27])
    col[sel] = (grass + (dirt - grass) * patch[sel] * 0.7) * (0.8 + 0.35 * hash_noise(p[sel], 3.0))[:, None]
    sel = (codes == T.G_ROAD)
    col[sel] = np.array([0.27, 0.27, 0.28]) * (0.85 + 0.25 * fine[sel] + 0.1 * patch[sel])
    sel = np.isin(codes, [T.G_PAINT_W, T.G_CROSSWALK, T.G_LOT_PAINT])
    col[sel] = np.array([0.82, 0.82, 0.8]) * (0.92 + 0.1 * fine[sel])
    sel = codes == T.G_PAINT_Y
    col[sel] = np.array([0.8, 0.65, 0.2]) * (0.92 + 0.1 * fine[sel])
    sel = codes == T.G_SIDEWALK
    tiles = ((np.mod(p[:, 0], 0.6) < 0.05) | (np.mod(p[:, 1], 0.6) < 0.05))[:, None]
    col[sel] = np.array([0.63, 0.6, 0.56]) * np.where(tiles[sel], 0.78, 0.95 + 0.08 * fine[sel])
    sel = codes == T.G_LOT
    col[sel] = np.array([0.47, 0.46, 0.44]) * (0.88 + 0.2 * fine[sel])
    sel = codes == T.G_MEDIAN
    col[sel] = np.array([0.52, 0.47, 0.38]) * (0.88 + 0.2 * fine[sel])
    sel = codes == T.G_PLAZA
    pav = ((np.mod(p[:, 0], 0.3) < 0.03) | (np.mod(p[:, 1], 0.9) < 0.03))[:, None]
    col[sel] = np.array([0.6, 0.5, 0.42]) * np.where(pav[sel], 0.75, 0.92 + 0.12 * fine[sel])
    return col


def object_colour(prims: Primitives, pid: np.ndarray, local: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Surface colour [M, 3] of primitive hits (pid [M], local hit points, world normals)."""
    alb = prims.albedo[pid].astype(np.float64)
    tex = prims.tex[pid]
    size = prims.size[pid]
    col = alb * (0.9 + 0.2 * hash_noise(local, 4.0))[:, None]
    for tid in np.unique(tex):
        sel = np.nonzero(tex == tid)[0]
        if tid in (O.TEX_PLAIN, O.TEX_PAINT, O.TEX_DARK):
            continue
        a, lp, sz, nrm = alb[sel], local[sel], size[sel], normal[sel]
        yaw = prims.yaw[pid[sel]]
        nlx = np.cos(yaw) * nrm[:, 0] + np.sin(yaw) * nrm[:, 1]
        z_rel = lp[:, 2] + sz[:, 2] / 2                        # height above the primitive bottom
        side = np.abs(nrm[:, 2]) < 0.5
        u = np.where(np.abs(nlx) > 0.7, lp[:, 1], lp[:, 0])     # horizontal coordinate along the face
        if tid == O.TEX_FACADE:
            mu, mz = np.mod(u, 3.0), np.mod(z_rel, 3.2)
            win = (mu > 0.7) & (mu < 2.3) & (mz > 1.0) & (mz < 2.4) & side & (z_rel > 0.9)
            glass = np.array([0.12, 0.15, 0.2]) * (0.8 + 0.6 * hash_noise(np.stack([u, z_rel, u], 1), 0.33))[:, None]
            c = np.where(win[:, None], glass, np.where(side[:, None], col[sel], a * 0.55))
        elif tid == O.TEX_GLASS:
            tall = sz[:, 2] > 1.2
            r = z_rel / sz[:, 2]
            win = side & (r > np.where(tall, 0.45, 0.08)) & (r < np.where(tall, 0.88, 0.85)) & (np.mod(u, 1.5) > 0.15)
            c = np.where(win[:, None], np.array([0.07, 0.09, 0.12]), col[sel])
        elif tid == O.TEX_FOLIAGE:
            c = a * (0.55 + 0.6 * hash_noise(lp, 7.0) + 0.25 * hash_noise(lp, 1.5))[:, None]
        elif tid == O.TEX_STRIPES:
            c = np.where((np.mod(u + z_rel, 0.8) < 0.4)[:, None], np.array([0.9, 0.9, 0.88]), a)
        elif tid == O.TEX_CONE:
            r = z_rel / sz[:, 2]
            c = np.where(((r > 0.45) & (r < 0.65))[:, None], np.array([0.92, 0.92, 0.9]), a)
        elif tid == O.TEX_BARK:
            c = a * (0.7 + 0.5 * hash_noise(lp * np.array([8, 8, 1.5]), 1.0))[:, None]
        elif tid == O.TEX_CONCRETE:
            joint = (np.mod(u, 2.5) < 0.06) | (np.mod(z_rel, 1.25) < 0.05)
            c = a * np.where(joint, 0.7, 0.92 + 0.12 * hash_noise(lp, 2.0))[:, None]
        elif tid == O.TEX_CLOTH:
            c = a * (0.8 + 0.35 * hash_noise(lp, 10.0))[:, None]
        else:
            continue
        col[sel] = c
    return col


def shade(hits: dict, prims: Primitives, town: T.Town, dirs: np.ndarray) -> np.ndarray:
    """Linear RGB in [0, 1] for cast results ``hits`` (see raycast.cast), rays in the global frame."""
    hit, t = hits['hit'], hits['t']
    col = np.zeros((len(hit), 3))
    g = hit == GROUND
    if g.any():
        p = hits['point'][g]
        col[g] = ground_colour(town.ground_codes(p[:, 0], p[:, 1]), p)
    o = hit >= 0
    if o.any():
        col[o] = object_colour(prims, hit[o], hits['local'][o], hits['normal'][o])
    lam = 0.5 + 0.55 * np.clip(hits['normal'] @ SUN, 0, 1)
    col *= lam[:, None]
    haze = 1 - np.exp(-np.where(np.isfinite(t), t, 0) / 160.0)
    col = col * (1 - haze[:, None]) + SKY_HORIZON * haze[:, None]
    m = hit == MISS
    col[m] = sky(dirs[m])
    return col
