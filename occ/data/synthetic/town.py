"""A procedural town: a grid of roads, a ground raster and static scenery.

Global frame: metres, x east, y north, z up, ground at z = 0; the town covers
[0, size] x [0, size] so the nuScenes map mask (0.1 m/px, origin at its
bottom-left corner) is the ground raster itself.

Road cross-section (from the centre line outwards, per side): optional
median, ``lanes`` lanes of 3.5 m, a 2.5 m parking strip (driveable),
then a sidewalk. Blocks between roads are buildings, parks, parking lots or
construction sites. Annotated static things (parked vehicles, barriers,
cones, bins, parked bicycles) are returned as placements; unannotated
scenery (buildings, trees, poles, walls, benches) as primitives.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from .objects import TEX_BARK, TEX_CONCRETE, TEX_DARK, TEX_FACADE, TEX_FOLIAGE, TEX_PAINT, TEX_PLAIN
from .primitives import PrimitiveBuilder, Primitives

LANE_W = 3.5
PARK_W = 2.5
MAP_RES = 0.1          # metres per raster cell (nuScenes map masks are 0.1 m/px)

# Ground codes -> Occ3D class. Codes keep appearance detail (paint, tiles) the class map drops.
G_TERRAIN, G_ROAD, G_PAINT_W, G_PAINT_Y, G_SIDEWALK, G_LOT, G_MEDIAN, G_LOT_PAINT, G_CROSSWALK, G_PLAZA = range(10)
GROUND_CODE_CLASS = np.array([14, 11, 11, 11, 13, 12, 12, 12, 11, 12], np.uint8)

MANMADE, VEGETATION, OTHERS = 15, 16, 0


@dataclass
class Road:
    """A straight road across the whole town: vertical (along y at x = pos) or horizontal."""

    vertical: bool
    pos: float
    lanes: int
    median: float
    sidewalk: float

    @property
    def half_drive(self) -> float:
        return self.median / 2 + self.lanes * LANE_W + PARK_W

    @property
    def half_total(self) -> float:
        return self.half_drive + self.sidewalk


@dataclass
class Placement:
    """An annotated static object: category, bottom-centre position, yaw, and options."""

    category: str
    x: float
    y: float
    yaw: float
    rider: bool = False


@dataclass
class Town:
    size: float
    ground: np.ndarray                      # uint8 [nx, ny] ground codes, cell (i, j) covers x in [i*res, (i+1)*res)
    vroads: list
    hroads: list
    scenery: Primitives                     # unannotated static primitives (global frame)
    placements: list = field(default_factory=list)
    walkways: list = field(default_factory=list)   # pedestrian lines (x0, y0, x1, y1)
    kerb_height: float = 0.0                # metres the sidewalk cells stand above the road (0: one plane)

    @property
    def res(self) -> float:
        return MAP_RES

    def raised(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """bool: the ground at global points is a raised sidewalk cell (always False without kerbs)."""
        if self.kerb_height <= 0:
            return np.zeros(np.shape(x), bool)
        return self.ground_codes(x, y) == G_SIDEWALK

    def ground_height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height (metres) of the ground surface at global points: ``kerb_height`` on sidewalks, else 0."""
        return np.where(self.raised(x, y), self.kerb_height, 0.0)

    @functools.cached_property
    def raised_cells(self) -> 'RaisedCells':
        """Lookup tables of the raised sidewalk cells for ray traversal (built once per town)."""
        return RaisedCells(self.ground == G_SIDEWALK)

    def ground_codes(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Ground code at global points; outside the town is terrain."""
        n = self.ground.shape[0]
        i = np.floor(np.asarray(x) / MAP_RES).astype(np.int64)
        j = np.floor(np.asarray(y) / MAP_RES).astype(np.int64)
        inside = (i >= 0) & (i < n) & (j >= 0) & (j < n)
        out = np.full(i.shape, G_TERRAIN, np.uint8)
        out[inside] = self.ground[i[inside], j[inside]]
        return out

    def ground_class(self, x, y) -> np.ndarray:
        return GROUND_CODE_CLASS[self.ground_codes(x, y)]

    def drivable_mask_png(self) -> np.ndarray:
        """uint8 [rows, cols] image for the nuScenes map table: 255 on driveable surface, row 0 = north."""
        drive = GROUND_CODE_CLASS[self.ground] == 11
        return (drive.T[::-1] * 255).astype(np.uint8)


class RaisedCells:
    """Tables over a bool raster [n, n] of raised cells (cell (i, j) covers x in [i*res, (i+1)*res)),
    for exact ray traversal (``raycast._kerbs``):

    * ``count(i0, i1, j0, j1)``: raised cells in the index box [i0, i1] x [j0, j1] (summed-area table);
    * ``next_along(axis, sign)``: int16 [n, n], for each cell the index along ``axis`` of the nearest
      raised cell at or after it in direction ``sign`` on its row / column (-1 or n when none).
    """

    def __init__(self, raised: np.ndarray):
        self.raised = raised
        self.n = raised.shape[0]
        sat = np.zeros((self.n + 1, self.n + 1), np.int32)
        np.cumsum(np.cumsum(raised, 0, dtype=np.int32), 1, out=sat[1:, 1:])
        self._sat = sat.ravel()
        self._next = {}

    def count(self, i0, i1, j0, j1) -> np.ndarray:
        """Raised cells in the inclusive index boxes (indices are clipped to the raster)."""
        n = self.n
        r0, r1 = np.clip(i0, 0, n) * (n + 1), np.clip(i1 + 1, 0, n) * (n + 1)
        j0, j1 = np.clip(j0, 0, n), np.clip(j1 + 1, 0, n)
        s = self._sat
        return s[r1 + j1] - s[r0 + j1] - s[r1 + j0] + s[r0 + j0]

    def next_along(self, axis: int, sign: int) -> np.ndarray:
        if (axis, sign) not in self._next:
            r = self.raised if axis == 0 else self.raised.T
            k = np.arange(self.n, dtype=np.int16)[:, None]
            if sign > 0:
                idx = np.where(r, k, np.int16(self.n))
                nxt = np.minimum.accumulate(idx[::-1], 0)[::-1]
            else:
                idx = np.where(r, k, np.int16(-1))
                nxt = np.maximum.accumulate(idx, 0)
            self._next[axis, sign] = np.ascontiguousarray(nxt if axis == 0 else nxt.T)
        return self._next[axis, sign]


def _road_positions(rng, size):
    pos, p = [], rng.uniform(35, 55)
    while p < size - 35:
        pos.append(p)
        p += rng.uniform(60, 90)
    return pos


def build_town(rng: np.random.Generator, size: float = 300.0, kerb_height: float = 0.0) -> Town:
    """Generate a town; deterministic given the generator state.

    ``kerb_height`` > 0 raises the sidewalks by that much (``Town.raised``); the street furniture
    on them stands on the raised surface. The random draws do not depend on it.
    """
    n = int(round(size / MAP_RES))
    ground = np.full((n, n), G_TERRAIN, np.uint8)
    roads = []
    for vertical in (True, False):
        for p in _road_positions(rng, size):
            lanes = int(rng.choice([1, 2], p=[0.55, 0.45]))
            median = float(rng.choice([0.0, 2.5])) if lanes == 2 else 0.0
            roads.append(Road(vertical, p, lanes, median, float(rng.uniform(3.0, 4.5))))
    vroads = [r for r in roads if r.vertical]
    hroads = [r for r in roads if not r.vertical]
    b = PrimitiveBuilder()
    placements: list[Placement] = []
    walkways = []

    def rect(x0, x1, y0, y1, code):
        i0, i1 = np.clip([int(np.floor(x0 / MAP_RES)), int(np.ceil(x1 / MAP_RES))], 0, n)
        j0, j1 = np.clip([int(np.floor(y0 / MAP_RES)), int(np.ceil(y1 / MAP_RES))], 0, n)
        ground[i0:i1, j0:j1] = code

    def road_rect(r: Road, a0, a1, c0, c1, code):
        """Rectangle in road coordinates: a along the road, c across it (offset from the centre line)."""
        if r.vertical:
            rect(r.pos + c0, r.pos + c1, a0, a1, code)
        else:
            rect(a0, a1, r.pos + c0, r.pos + c1, code)

    def road_point(r: Road, a, c):
        return (r.pos + c, a) if r.vertical else (a, r.pos - c)

    # Blocks: rectangles between sidewalks (and the town edge).
    def spans(rs):
        edges = [0.0]
        for r in rs:
            edges += [r.pos - r.half_total, r.pos + r.half_total]
        edges.append(size)
        return [(edges[k], edges[k + 1]) for k in range(0, len(edges), 2)]

    xs, ys = spans(vroads), spans(hroads)
    for bx0, bx1 in xs:
        for by0, by1 in ys:
            kind = rng.choice(['buildings', 'park', 'parking', 'construction'], p=[0.75, 0.1, 0.07, 0.08])
            _fill_block(rng, b, placements, walkways, rect, kind, bx0 + 0.5, bx1 - 0.5, by0 + 0.5, by1 - 0.5)

    # Sidewalks, drive area, medians and paint along each road.
    crossings = {}
    for r in roads:
        others = hroads if r.vertical else vroads
        crossings[id(r)] = [(o.pos, o.half_total) for o in others]
        road_rect(r, 0, size, -r.half_total, r.half_total, G_SIDEWALK)
    for r in roads:
        road_rect(r, 0, size, -r.half_drive, r.half_drive, G_ROAD)
    for r in roads:
        if r.median > 0:
            road_rect(r, 0, size, -r.median / 2, r.median / 2, G_MEDIAN)
        else:
            for c in (-0.25, 0.1):  # double yellow centre line
                road_rect(r, 0, size, c, c + 0.15, G_PAINT_Y)
        for side in (-1, 1):
            edge = side * (r.median / 2 + r.lanes * LANE_W)
            road_rect(r, 0, size, edge - 0.08, edge + 0.08, G_PAINT_W)
            for k in range(1, r.lanes):
                c = side * (r.median / 2 + k * LANE_W)
                for a in np.arange(0, size, 9.0):
                    road_rect(r, a, a + 3.0, c - 0.08, c + 0.08, G_PAINT_W)
    # Intersections: plain asphalt with crosswalk stripes on each approach.
    for v in vroads:
        for h in hroads:
            rect(v.pos - v.half_drive, v.pos + v.half_drive, h.pos - h.half_drive, h.pos + h.half_drive, G_ROAD)
            for r, o in ((v, h), (h, v)):
                for side in (-1, 1):
                    a0 = o.pos + side * (o.half_drive + 0.3)
                    a1 = a0 + side * 3.0
                    for c in np.arange(-r.half_drive + 0.5, r.half_drive - 0.5, 1.0):
                        road_rect(r, min(a0, a1), max(a0, a1), c, c + 0.5, G_CROSSWALK)
    # Medians: hedges, trees and barriers, away from intersections.
    for r in roads:
        if r.median <= 0:
            continue
        for a0, a1 in _free_intervals(r, roads, size, margin=4.0):
            style = rng.choice(['hedge', 'trees', 'barriers', 'bare'], p=[0.3, 0.3, 0.25, 0.15])
            if style == 'hedge':
                x, y = road_point(r, (a0 + a1) / 2, 0)
                b.box(x, y, 0, a1 - a0, 1.0, rng.uniform(0.8, 1.4), yaw=0 if not r.vertical else np.pi / 2,
                      cls=VEGETATION, albedo=(0.13, 0.3, 0.1), tex=TEX_FOLIAGE)
            elif style == 'trees':
                for a in np.arange(a0 + 3, a1 - 3, rng.uniform(8, 14)):
                    _tree(rng, b, *road_point(r, a, 0), small=True)
            elif style == 'barriers':
                yaw = np.pi / 2 if r.vertical else 0.0
                for a in np.arange(a0 + 1.5, a1 - 1.5, 2.7):
                    placements.append(Placement('movable_object.barrier', *road_point(r, a, 0), yaw))
    # Street furniture, trees and parked vehicles along every road segment.
    for r in roads:
        along_yaw = np.pi / 2 if r.vertical else 0.0
        for a0, a1 in _free_intervals(r, roads, size, margin=2.0):
            for side in (-1, 1):
                c_curb = side * (r.half_drive + 0.9)
                c_walk = side * (r.half_drive + 0.65 * r.sidewalk + 0.5)
                walkways.append((*road_point(r, a0 + 1, c_walk), *road_point(r, a1 - 1, c_walk)))
                a = a0 + rng.uniform(2, 6)
                while a < a1 - 2:
                    x, y = road_point(r, a, c_curb)
                    roll = rng.random()
                    if roll < 0.62:
                        _tree(rng, b, x, y, small=False, z0=kerb_height)
                    elif roll < 0.67:
                        _lamp(rng, b, x, y, z0=kerb_height)
                    elif roll < 0.73:
                        _bench_or_box(rng, b, x, y, along_yaw, z0=kerb_height)
                    elif roll < 0.79:
                        placements.append(Placement('movable_object.pushable_pullable', x, y,
                                                    along_yaw + rng.normal(0, 0.2)))
                    elif roll < 0.84:
                        placements.append(Placement('vehicle.bicycle', x, y, along_yaw + np.pi / 2 + rng.normal(0, 0.2)))
                    elif roll < 0.92:
                        b.box(x, y, kerb_height, 0.8, 0.8, rng.uniform(0.9, 1.3), cls=VEGETATION,
                              albedo=(0.15, 0.32, 0.1), tex=TEX_FOLIAGE)
                    a += rng.uniform(4, 8)
                _parking_strip(rng, r, side, a0, a1, placements, road_point, along_yaw)
        # Traffic light / sign poles near intersection corners.
        for o in (hroads if r.vertical else vroads):
            for side in (-1, 1):
                a = o.pos - side * (o.half_total + 1.0)
                x, y = road_point(r, a, side * (r.half_drive + 0.6))
                if 0 < x < size and 0 < y < size:
                    _pole_with_head(rng, b, x, y, z0=kerb_height)
    return Town(size, ground, vroads, hroads, b.build(), placements, walkways, kerb_height=float(kerb_height))


def _free_intervals(r: Road, roads, size, margin):
    """Intervals along road ``r`` between the crossing roads' sidewalks."""
    cuts = sorted((o.pos - o.half_total - margin, o.pos + o.half_total + margin)
                  for o in roads if o.vertical != r.vertical)
    out, a = [], margin
    for c0, c1 in cuts:
        if c0 - a > 6:
            out.append((a, c0))
        a = c1
    if size - margin - a > 6:
        out.append((a, size - margin))
    return out


def _parking_strip(rng, r, side, a0, a1, placements, road_point, along_yaw):
    """Parked vehicles (or a construction zone) in the parking strip on one side of a road."""
    c = side * (r.median / 2 + r.lanes * LANE_W + PARK_W / 2)
    yaw = along_yaw if side > 0 else along_yaw + np.pi   # parked facing the traffic direction of that side
    if rng.random() < 0.15:
        # Construction zone: a line of barriers, cones along the lane edge, sometimes a digger.
        z0 = rng.uniform(a0, max(a0, a1 - 25))
        z1 = min(a1, z0 + rng.uniform(12, 25))
        for a in np.arange(z0, z1, 2.6):
            placements.append(Placement('movable_object.barrier', *road_point(r, a, c + side * 0.6), along_yaw))
        for a in np.arange(z0 - 6, z1 + 6, 3.0):
            if a0 < a < a1:
                placements.append(Placement('movable_object.trafficcone',
                                            *road_point(r, a, c - side * 1.1), rng.uniform(0, np.pi)))
        if rng.random() < 0.5 and z1 - z0 > 10:
            placements.append(Placement('vehicle.construction', *road_point(r, (z0 + z1) / 2, c - side * 0.1), yaw))
        return
    a = a0 + rng.uniform(0.5, 5)
    while a < a1 - 3:
        roll = rng.random()
        cat = ('vehicle.car' if roll < 0.72 else 'vehicle.truck' if roll < 0.8 else 'vehicle.trailer'
               if roll < 0.84 else 'vehicle.bus.rigid' if roll < 0.87 else 'vehicle.motorcycle'
               if roll < 0.93 else None)
        length = {'vehicle.car': 5.0, 'vehicle.truck': 9.5, 'vehicle.trailer': 12.0,
                  'vehicle.bus.rigid': 12.5, 'vehicle.motorcycle': 2.3, None: 6.0}[cat]
        if a + length > a1:
            break
        if cat is not None and rng.random() < 0.55:
            placements.append(Placement(cat, *road_point(r, a + length / 2, c), yaw + rng.normal(0, 0.03)))
        a += length + rng.uniform(0.8, 4.0)


def _tree(rng, b: PrimitiveBuilder, x, y, small=False, z0=0.0):
    h = rng.uniform(4, 6.5) if small else rng.uniform(5, 9.5)
    trunk_h = h * rng.uniform(0.15, 0.3)           # crowns from ~0.8-2.9 m up, as street trees in nuScenes
    b.cylinder(x, y, z0, rng.uniform(0.12, 0.25), trunk_h + 0.5, cls=VEGETATION, albedo=(0.3, 0.2, 0.12),
               tex=TEX_BARK)
    rxy = rng.uniform(1.4, 2.2) if small else rng.uniform(1.8, 3.2)
    rz = (h - trunk_h) / 2
    col = tuple(np.clip(np.array([0.12, 0.3, 0.1]) + rng.uniform(-0.04, 0.04, 3), 0, 1))
    b.ellipsoid(x, y, z0 + trunk_h + rz, rxy, rxy * rng.uniform(0.85, 1.15), rz, yaw=rng.uniform(0, np.pi),
                cls=VEGETATION, albedo=col, tex=TEX_FOLIAGE)


def _lamp(rng, b, x, y, z0=0.0):
    h = rng.uniform(6, 8.5)
    b.cylinder(x, y, z0, 0.12, h, cls=MANMADE, albedo=(0.3, 0.3, 0.32), tex=TEX_PAINT)
    b.box(x, y, z0 + h, 0.9, 0.35, 0.25, cls=MANMADE, albedo=(0.25, 0.25, 0.27), tex=TEX_PAINT)


def _pole_with_head(rng, b, x, y, z0=0.0):
    b.cylinder(x, y, z0, 0.1, 3.0, cls=MANMADE, albedo=(0.25, 0.25, 0.27), tex=TEX_PAINT)
    if rng.random() < 0.6:
        b.box(x, y, z0 + 3.0, 0.4, 0.4, 1.0, cls=MANMADE, albedo=(0.1, 0.1, 0.1), tex=TEX_DARK)
    else:
        b.box(x, y, z0 + 2.2, 0.08, 0.7, 0.7, cls=MANMADE, albedo=(0.1, 0.3, 0.7), tex=TEX_PLAIN)


def _bench_or_box(rng, b, x, y, yaw, z0=0.0):
    """Small unannotated 'others': benches, mailboxes, hydrants."""
    k = rng.integers(3)
    if k == 0:
        b.box(x, y, z0, 1.8, 0.6, 0.85, yaw=yaw, cls=OTHERS, albedo=(0.45, 0.3, 0.18), tex=TEX_PLAIN)
    elif k == 1:
        b.box(x, y, z0, 0.5, 0.45, 1.25, yaw=yaw, cls=OTHERS, albedo=(0.1, 0.2, 0.55), tex=TEX_PLAIN)
    else:
        b.cylinder(x, y, z0, 0.18, 0.75, cls=OTHERS, albedo=(0.75, 0.1, 0.08), tex=TEX_PLAIN)


def _garden_edge(rng, b, x, y, length, along_x):
    """The street edge of a front garden, centred at (x, y), ``length`` m along x (``along_x``) or y:
    a hedge (0.8-2.2 m), a wall or fence (1.0-2.0 m, manmade), or nothing."""
    roll = rng.random()
    if roll < 0.55:
        w, h, kw = 0.9, rng.uniform(0.8, 2.2), dict(cls=VEGETATION, albedo=(0.14, 0.31, 0.1), tex=TEX_FOLIAGE)
    elif roll < 0.85:
        w, h, kw = 0.25, rng.uniform(1.0, 2.0), dict(cls=MANMADE, albedo=(0.6, 0.57, 0.52), tex=TEX_CONCRETE)
    else:
        return
    b.box(x, y, 0, length if along_x else w, w if along_x else length, h, **kw)


def _park_fence(rng, b, x0, x1, y0, y1, gaps):
    """Railings (manmade, 1.2-1.8 m) along the four sides of a park, open 4 m wide at ``gaps``
    ((x, y) where a path leaves the park)."""
    h = rng.uniform(1.2, 1.8)
    for along_x, c, a0, a1 in ((True, y0 + 0.3, x0, x1), (True, y1 - 0.3, x0, x1),
                               (False, x0 + 0.3, y0, y1), (False, x1 - 0.3, y0, y1)):
        cuts = sorted(g[0] if along_x else g[1] for g in gaps)
        edges = [a0] + [e for g in cuts for e in (g - 2.0, g + 2.0)] + [a1]
        for s0, s1 in zip(edges[::2], edges[1::2]):
            if s1 - s0 > 1.0:
                m = (s0 + s1) / 2
                b.box(m if along_x else c, c if along_x else m, 0, s1 - s0 if along_x else 0.1,
                      0.1 if along_x else s1 - s0, h, cls=MANMADE, albedo=(0.2, 0.22, 0.2), tex=TEX_PAINT)


def _fill_block(rng, b, placements, walkways, rect, kind, x0, x1, y0, y1):
    """Fill the block rectangle [x0, x1] x [y0, y1] (global metres) with content of ``kind``."""
    wx, wy = x1 - x0, y1 - y0
    if wx < 4 or wy < 4:
        return
    if kind == 'buildings':
        # Perimeter buildings facing every side, with setbacks (front gardens with hedges).
        for side in range(4):
            horizontal = side in (0, 1)                         # along x (south/north sides)
            length = wx if horizontal else wy
            a = rng.uniform(0, 4)
            while a < length - 6:
                fw = min(rng.uniform(10, 26), length - a)
                depth = min(rng.uniform(9, 18), (wy if horizontal else wx) / 2 - 1)
                if depth < 4:
                    break
                setback = rng.choice([0.0, rng.uniform(2, 5)], p=[0.5, 0.5])
                h = rng.uniform(5, 26)
                col = tuple(np.clip([rng.uniform(0.45, 0.8), rng.uniform(0.38, 0.7), rng.uniform(0.3, 0.65)], 0, 1))
                if horizontal:
                    cx = x0 + a + fw / 2
                    cy = y0 + setback + depth / 2 if side == 0 else y1 - setback - depth / 2
                    b.box(cx, cy, 0, fw, depth, h, cls=MANMADE, albedo=col, tex=TEX_FACADE)
                    if setback > 0:
                        _garden_edge(rng, b, cx, y0 + 0.6 if side == 0 else y1 - 0.6, fw, along_x=True)
                else:
                    cy = y0 + a + fw / 2
                    cx = x0 + setback + depth / 2 if side == 2 else x1 - setback - depth / 2
                    b.box(cx, cy, 0, depth, fw, h, cls=MANMADE, albedo=col, tex=TEX_FACADE)
                    if setback > 0:
                        _garden_edge(rng, b, x0 + 0.6 if side == 2 else x1 - 0.6, cy, fw, along_x=False)
                a += fw + rng.choice([0.0, rng.uniform(2, 6)], p=[0.6, 0.4])
        # Courtyard trees.
        for _ in range(int(wx * wy / 450)):
            _tree(rng, b, rng.uniform(x0 + 15, max(x0 + 15.1, x1 - 15)), rng.uniform(y0 + 15, max(y0 + 15.1, y1 - 15)))
    elif kind == 'park':
        if rng.random() < 0.7:   # paved cross paths
            cx, cy = rng.uniform(x0 + 5, x1 - 5), rng.uniform(y0 + 5, y1 - 5)
            rect(x0, x1, cy - 1.5, cy + 1.5, G_PLAZA)
            rect(cx - 1.5, cx + 1.5, y0, y1, G_PLAZA)
            walkways.append((x0 + 1, cy, x1 - 1, cy))
            walkways.append((cx, y0 + 1, cx, y1 - 1))
            keep_out = lambda x, y: abs(x - cx) < 3.5 or abs(y - cy) < 3.5   # noqa: E731
            gaps = [(cx, cy)]
        else:
            keep_out = lambda x, y: False   # noqa: E731
            gaps = []
        if rng.random() < 0.6:
            _park_fence(rng, b, x0, x1, y0, y1, gaps)
        for _ in range(int(wx * wy / 40)):
            x, y = rng.uniform(x0 + 2, x1 - 2), rng.uniform(y0 + 2, y1 - 2)
            if keep_out(x, y):
                continue
            roll = rng.random()
            if roll < 0.55:
                _tree(rng, b, x, y)
            elif roll < 0.8:
                rz = rng.uniform(0.5, 0.9)
                b.ellipsoid(x, y, rz, rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4), rz,
                            cls=VEGETATION, albedo=(0.16, 0.34, 0.12), tex=TEX_FOLIAGE)
            elif roll < 0.9:
                _bench_or_box(rng, b, x, y, rng.uniform(0, np.pi))
            else:
                _lamp(rng, b, x, y)
    elif kind == 'parking':
        rect(x0, x1, y0, y1, G_LOT)
        along_x = wx >= wy
        # Rows of 2.5 m stalls, 5 m deep, separated by 6 m aisles.
        rows = np.arange((y0 if along_x else x0) + 3, (y1 if along_x else x1) - 5, 11.0)
        for r0 in rows:
            for k, a in enumerate(np.arange((x0 if along_x else y0) + 2, (x1 if along_x else y1) - 2.5, 2.6)):
                line = (a, a + 0.12, r0, r0 + 5) if along_x else (r0, r0 + 5, a, a + 0.12)
                rect(*line, G_LOT_PAINT)
                if rng.random() < 0.65 and a + 2.6 < (x1 if along_x else y1) - 2:
                    c_a, c_r = a + 1.3, r0 + 2.5
                    x, y = (c_a, c_r) if along_x else (c_r, c_a)
                    yaw = (np.pi / 2 if along_x else 0.0) + rng.choice([0, np.pi]) + rng.normal(0, 0.04)
                    cat = 'vehicle.car' if rng.random() < 0.93 else 'vehicle.motorcycle'
                    placements.append(Placement(cat, x, y, yaw))
        for _ in range(int(wx * wy / 900)):
            _lamp(rng, b, rng.uniform(x0 + 1, x1 - 1), rng.uniform(y0 + 1, y1 - 1) if not along_x else y0 + 1)
        # Low wall or hedge around the lot.
        if rng.random() < 0.5:
            b.box((x0 + x1) / 2, y1 - 0.3, 0, wx, 0.3, 1.2, cls=MANMADE, albedo=(0.6, 0.58, 0.55), tex=TEX_CONCRETE)
    elif kind == 'construction':
        rect(x0 + 3, x1 - 3, y0 + 3, y1 - 3, G_PLAZA)
        # Fence wall, barriers and cones around; diggers and trailers inside; a half-built structure.
        b.box((x0 + x1) / 2, y0 + 1.0, 0, wx - 2, 0.15, 2.0, cls=MANMADE, albedo=(0.7, 0.7, 0.7), tex=TEX_CONCRETE)
        for a in np.arange(x0 + 3, x1 - 3, 2.7):
            placements.append(Placement('movable_object.barrier', a, y1 - 1.5, 0.0))
        for a in np.arange(y0 + 4, y1 - 4, 3.5):
            placements.append(Placement('movable_object.trafficcone', x0 + 2, a, 0.0))
        for _ in range(rng.integers(1, 4)):
            placements.append(Placement('vehicle.construction', rng.uniform(x0 + 8, max(x0 + 8.1, x1 - 8)),
                                        rng.uniform(y0 + 8, max(y0 + 8.1, y1 - 8)), rng.uniform(-np.pi, np.pi)))
        if rng.random() < 0.6:
            placements.append(Placement('vehicle.trailer', x1 - 8, (y0 + y1) / 2, np.pi / 2))
        sx, sy = rng.uniform(x0 + 10, max(x0 + 10.1, x1 - 25)), rng.uniform(y0 + 10, max(y0 + 10.1, y1 - 25))
        for px in (0, 12):
            for py in (0, 12):
                b.box(sx + px, sy + py, 0, 0.5, 0.5, 9.0, cls=MANMADE, albedo=(0.55, 0.55, 0.55), tex=TEX_CONCRETE)
        b.box(sx + 6, sy + 6, 4.0, 12.5, 12.5, 0.3, cls=MANMADE, albedo=(0.55, 0.55, 0.55), tex=TEX_CONCRETE)
        rect(x0 + 4, x0 + 12, y0 + 4, y0 + 10, G_TERRAIN)   # a patch of bare earth
