"""Analytic primitives of the synthetic world and exact ray intersection with them.

Every solid in the world (buildings, vehicle bodies, tree crowns, poles,
pedestrians, cones) is one of three shapes, each with a yaw about +z:

* BOX        centre, extents (l, w, h) along its local x, y, z
* CYLINDER   vertical; extents (2r, 2r, h)
* ELLIPSOID  extents (2rx, 2ry, 2rz)

Rays are intersected in the primitive's local frame, so the local hit point
(used for textures that move with the object) comes for free. The ground is
not a primitive: it is the plane z = 0 with a semantic raster (see town.py).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

BOX, CYLINDER, ELLIPSOID = 0, 1, 2
_EPS = 1e-4


@dataclass
class Primitives:
    """A set of N primitives stored as parallel arrays (global or ego frame).

    kind uint8 [N]; center float64 [N, 3]; size float64 [N, 3] (full extents);
    yaw float64 [N]; cls uint8 [N] (Occ3D class); inst int32 [N] (object id,
    -1 for static scenery); albedo float32 [N, 3] in 0..1; tex uint8 [N]
    (texture pattern id, see appearance.py).
    """

    kind: np.ndarray
    center: np.ndarray
    size: np.ndarray
    yaw: np.ndarray
    cls: np.ndarray
    inst: np.ndarray
    albedo: np.ndarray
    tex: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    @staticmethod
    def empty() -> 'Primitives':
        return Primitives(np.zeros(0, np.uint8), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0),
                          np.zeros(0, np.uint8), np.zeros(0, np.int32), np.zeros((0, 3), np.float32),
                          np.zeros(0, np.uint8))

    @staticmethod
    def concat(parts) -> 'Primitives':
        parts = [p for p in parts if len(p)]
        if not parts:
            return Primitives.empty()
        return Primitives(*[np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Primitives)])

    def subset(self, idx) -> 'Primitives':
        return Primitives(*[getattr(self, f.name)[idx] for f in fields(Primitives)])

    @property
    def radius(self) -> np.ndarray:
        """Bounding-sphere radius [N] (half the extent diagonal)."""
        return 0.5 * np.linalg.norm(self.size, axis=1)

    def transformed(self, x: float, y: float, yaw: float) -> 'Primitives':
        """Apply a planar rigid motion (rotate by ``yaw`` about z, then translate by (x, y))."""
        c, s = np.cos(yaw), np.sin(yaw)
        cen = self.center.copy()
        cen[:, 0] = c * self.center[:, 0] - s * self.center[:, 1] + x
        cen[:, 1] = s * self.center[:, 0] + c * self.center[:, 1] + y
        return Primitives(self.kind, cen, self.size, self.yaw + yaw, self.cls, self.inst,
                          self.albedo, self.tex)


class PrimitiveBuilder:
    """Collects primitives one by one (town and object generation) and freezes them into arrays."""

    def __init__(self):
        self.rows = []

    def add(self, kind, center, size, yaw=0.0, cls=15, inst=-1, albedo=(0.5, 0.5, 0.5), tex=0):
        self.rows.append((kind, tuple(center), tuple(size), float(yaw), cls, inst, tuple(albedo), tex))

    def box(self, x, y, z0, l, w, h, yaw=0.0, **kw):
        """A box standing on height ``z0`` (bottom face) with centre (x, y)."""
        self.add(BOX, (x, y, z0 + h / 2), (l, w, h), yaw, **kw)

    def cylinder(self, x, y, z0, r, h, **kw):
        self.add(CYLINDER, (x, y, z0 + h / 2), (2 * r, 2 * r, h), 0.0, **kw)

    def ellipsoid(self, x, y, zc, rx, ry, rz, yaw=0.0, **kw):
        self.add(ELLIPSOID, (x, y, zc), (2 * rx, 2 * ry, 2 * rz), yaw, **kw)

    def build(self) -> Primitives:
        if not self.rows:
            return Primitives.empty()
        kind, cen, size, yaw, cls, inst, alb, tex = zip(*self.rows)
        return Primitives(np.array(kind, np.uint8), np.array(cen, np.float64), np.array(size, np.float64),
                          np.array(yaw, np.float64), np.array(cls, np.uint8), np.array(inst, np.int32),
                          np.array(alb, np.float32), np.array(tex, np.uint8))


def _rotate_in(c, s, v):
    """Vectors [M, 3] into frames yawed by (cos, sin) [M]."""
    return np.stack([c * v[:, 0] + s * v[:, 1], -s * v[:, 0] + c * v[:, 1], v[:, 2]], 1)


def _sum3(v):
    """v[:, 0] + v[:, 1] + v[:, 2] (the order of ``v.sum(1)``, faster for width 3)."""
    return v[:, 0] + v[:, 1] + v[:, 2]


def to_local(prims: Primitives, pidx: np.ndarray, pts: np.ndarray, dirs: np.ndarray | None = None):
    """Points (and directions) [M, 3] into the local frames of primitives ``pidx`` [M]."""
    c, s = np.cos(prims.yaw[pidx]), np.sin(prims.yaw[pidx])
    lp = _rotate_in(c, s, pts - prims.center[pidx])
    return lp if dirs is None else (lp, _rotate_in(c, s, dirs))


def intersect(prims: Primitives, pidx: np.ndarray, origin: np.ndarray, dirs: np.ndarray):
    """Nearest entry of rays into primitives.

    Args:
        pidx: int [M] primitive of each ray-primitive pair.
        origin: float [3] or [M, 3] ray origins; dirs: float [M, 3] unit directions.
    Returns:
        t [M] distance along the ray (inf where missed; origins inside a solid
        count as a miss, cameras are never inside one), normal [M, 3] unit
        surface normal in the input frame, local [M, 3] hit point in the
        primitive frame.
    """
    m = len(pidx)
    o = np.broadcast_to(np.asarray(origin, np.float64), (m, 3))
    c, s = np.cos(prims.yaw[pidx]), np.sin(prims.yaw[pidx])
    lo, ld = _rotate_in(c, s, o - prims.center[pidx]), _rotate_in(c, s, dirs)   # to_local; c, s turn the normal back
    half = prims.size[pidx] / 2
    kind = prims.kind[pidx]
    t = np.full(m, np.inf)
    nl = np.zeros((m, 3))
    with np.errstate(divide='ignore', invalid='ignore'):
        sel = np.nonzero(kind == BOX)[0]
        if len(sel):
            o_, d_, h_ = lo[sel], ld[sel], half[sel]
            dd = np.where(np.abs(d_) < 1e-12, 1e-12, d_)
            t1, t2 = (-h_ - o_) / dd, (h_ - o_) / dd
            tn, tf = np.minimum(t1, t2), np.maximum(t1, t2)
            # column-wise max / min / first argmax of 3 (axis-1 reductions of width 3 are slow)
            tmin = np.maximum(np.maximum(tn[:, 0], tn[:, 1]), tn[:, 2])
            tmax = np.minimum(np.minimum(tf[:, 0], tf[:, 1]), tf[:, 2])
            hit = (tmax >= tmin) & (tmin > _EPS)
            ax = np.where((tn[:, 0] >= tn[:, 1]) & (tn[:, 0] >= tn[:, 2]), 0, np.where(tn[:, 1] >= tn[:, 2], 1, 2))
            n_ = np.zeros_like(o_)
            n_[np.arange(len(sel)), ax] = -np.sign(dd[np.arange(len(sel)), ax])
            t[sel] = np.where(hit, tmin, np.inf)
            nl[sel] = n_
        sel = np.nonzero(kind == CYLINDER)[0]
        if len(sel):
            o_, d_, h_ = lo[sel], ld[sel], half[sel]
            r = h_[:, 0]
            a = d_[:, 0] ** 2 + d_[:, 1] ** 2
            b = 2 * (o_[:, 0] * d_[:, 0] + o_[:, 1] * d_[:, 1])
            cc = o_[:, 0] ** 2 + o_[:, 1] ** 2 - r ** 2
            disc = b * b - 4 * a * cc
            sq = np.sqrt(np.maximum(disc, 0))
            vertical = a < 1e-12
            tc0 = np.where(vertical, np.where(cc <= 0, -np.inf, np.inf), (-b - sq) / (2 * a))
            tc1 = np.where(vertical, np.where(cc <= 0, np.inf, -np.inf), (-b + sq) / (2 * a))
            ok_c = vertical | (disc >= 0)
            dz = np.where(np.abs(d_[:, 2]) < 1e-12, 1e-12, d_[:, 2])
            tz0, tz1 = (-h_[:, 2] - o_[:, 2]) / dz, (h_[:, 2] - o_[:, 2]) / dz
            tzn, tzf = np.minimum(tz0, tz1), np.maximum(tz0, tz1)
            tmin, tmax = np.maximum(tc0, tzn), np.minimum(tc1, tzf)
            hit = ok_c & (tmax >= tmin) & (tmin > _EPS)
            t[sel] = np.where(hit, tmin, np.inf)
            cap = tzn >= tc0
            p = o_ + np.where(np.isfinite(tmin), tmin, 0)[:, None] * d_
            n_ = np.zeros_like(o_)
            n_[:, 0] = np.where(cap, 0, p[:, 0] / r)
            n_[:, 1] = np.where(cap, 0, p[:, 1] / r)
            n_[:, 2] = np.where(cap, -np.sign(dz), 0)
            nl[sel] = n_
        sel = np.nonzero(kind == ELLIPSOID)[0]
        if len(sel):
            o_, d_, h_ = lo[sel], ld[sel], half[sel]
            os_, ds_ = o_ / h_, d_ / h_
            a = _sum3(ds_ ** 2)
            b = 2 * _sum3(os_ * ds_)
            cc = _sum3(os_ ** 2) - 1
            disc = b * b - 4 * a * cc
            tmin = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
            hit = (disc >= 0) & (tmin > _EPS)
            t[sel] = np.where(hit, tmin, np.inf)
            p = o_ + np.where(hit, tmin, 0)[:, None] * d_
            nl[sel] = p / h_ ** 2
    nl /= np.maximum(np.sqrt(_sum3(nl * nl)), 1e-12)[:, None]
    normal = np.stack([c * nl[:, 0] - s * nl[:, 1], s * nl[:, 0] + c * nl[:, 1], nl[:, 2]], 1)
    local = lo + np.where(np.isfinite(t), t, 0)[:, None] * ld
    return t, normal, local


def contains(prims: Primitives, pidx: np.ndarray, pts: np.ndarray, pad: float = 0.0) -> np.ndarray:
    """Whether points [M, 3] lie inside primitives ``pidx`` [M], grown by ``pad`` metres (bool [M])."""
    lp = to_local(prims, pidx, pts)
    half = prims.size[pidx] / 2 + pad
    kind = prims.kind[pidx]
    inside_box = np.all(np.abs(lp) <= half, axis=1)
    inside_cyl = (lp[:, 0] ** 2 + lp[:, 1] ** 2 <= half[:, 0] ** 2) & (np.abs(lp[:, 2]) <= half[:, 2])
    inside_ell = ((lp / half) ** 2).sum(1) <= 1
    return np.where(kind == BOX, inside_box, np.where(kind == CYLINDER, inside_cyl, inside_ell))


def exit_distance(prims: Primitives, pidx: np.ndarray, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Distance [M] along rays (origin [3] or [M, 3], unit dirs [M, 3]) at which they leave primitives
    ``pidx`` [M] (the far root of the ray-solid intersection; -inf where the ray's line misses)."""
    m = len(pidx)
    o = np.broadcast_to(np.asarray(origin, np.float64), (m, 3))
    lo, ld = to_local(prims, pidx, o, dirs)
    half = prims.size[pidx] / 2
    kind = prims.kind[pidx]
    out = np.full(m, -np.inf)
    with np.errstate(divide='ignore', invalid='ignore'):
        dd = np.where(np.abs(ld) < 1e-12, 1e-12, ld)
        t1, t2 = (-half - lo) / dd, (half - lo) / dd
        box_far = np.maximum(t1, t2).min(1)
        box_ok = np.minimum(t1, t2).max(1) <= box_far
        a = (ld[:, :2] ** 2).sum(1)
        b = 2 * (lo[:, :2] * ld[:, :2]).sum(1)
        c = (lo[:, :2] ** 2).sum(1) - half[:, 0] ** 2
        disc = b * b - 4 * a * c
        side_far = np.where(a < 1e-12, np.inf, (-b + np.sqrt(np.maximum(disc, 0))) / (2 * a))
        cyl_far = np.minimum(side_far, np.maximum(t1[:, 2], t2[:, 2]))
        cyl_ok = (a < 1e-12) & (c <= 0) | (disc >= 0)
        os_, ds_ = lo / half, ld / half
        ea = (ds_ ** 2).sum(1)
        eb = 2 * (os_ * ds_).sum(1)
        ec = (os_ ** 2).sum(1) - 1
        edisc = eb * eb - 4 * ea * ec
        ell_far = (-eb + np.sqrt(np.maximum(edisc, 0))) / (2 * ea)
        far = np.where(kind == BOX, box_far, np.where(kind == CYLINDER, cyl_far, ell_far))
        ok = np.where(kind == BOX, box_ok, np.where(kind == CYLINDER, cyl_ok, edisc >= 0))
    out[ok] = far[ok]
    return out
