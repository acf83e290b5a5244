"""Moving agents: lane-following vehicles on random routes, and pedestrians on walkways.

Vehicles follow lane centre lines of the town's road grid (driving on the
right, smooth corners at turns) and stop when the road ahead is occupied, so
queues form and boxes never run into each other. The simulation runs at
``dt`` and is sampled at the 2 Hz keyframes; everything is deterministic
given the random generator.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .town import LANE_W, Town

KEYFRAME_DT = 0.5        # seconds between keyframes (2 Hz)
SIM_DT = 0.25


@dataclass
class Route:
    """A lane-centre polyline sampled every ``step`` metres: points [M, 2] and headings [M]."""

    points: np.ndarray
    yaw: np.ndarray
    step: float

    @property
    def length(self) -> float:
        return (len(self.points) - 1) * self.step

    def pose(self, s):
        """Position [..., 2] and yaw [...] at arc length ``s`` (clamped to the route)."""
        s = np.clip(np.asarray(s, np.float64), 0, self.length)
        f = s / self.step
        i = np.minimum(np.floor(f).astype(np.int64), len(self.points) - 2)
        a = (f - i)[..., None]
        p = self.points[i] * (1 - a) + self.points[i + 1] * a
        return p, self.yaw[i]


def _lane_offset(road, lane):
    return road.median / 2 + (lane + 0.5) * LANE_W


def random_route(town: Town, rng: np.random.Generator, min_length: float, lane: str = 'random',
                 start=None) -> Route:
    """A random walk over intersections (no U-turns) turned into a lane-centre polyline.

    ``lane``: 'inner', 'outer' or 'random' lane of each road. ``start``:
    optional (i, j, di, dj) node and direction to begin from.
    """
    nv, nh = len(town.vroads), len(town.hroads)
    if nv < 2 or nh < 2:
        raise ValueError(f'town has {nv}x{nh} roads; routes need at least 2 in each direction')
    dirs = [(1, 0), (-1, 0), (0, 1), (0, -1)]
    if start is None:
        i, j = int(rng.integers(nv)), int(rng.integers(nh))
        opts = [d for d in dirs if 0 <= i + d[0] < nv and 0 <= j + d[1] < nh]
        di, dj = opts[rng.integers(len(opts))]
    else:
        i, j, di, dj = start
    nodes, moves = [(i, j)], []
    total = 0.0
    while total < min_length + 200:
        ni, nj = i + di, j + dj
        moves.append((di, dj))
        total += abs(town.vroads[ni].pos - town.vroads[i].pos) + abs(town.hroads[nj].pos - town.hroads[j].pos)
        i, j = ni, nj
        nodes.append((i, j))
        opts = [d for d in dirs if 0 <= i + d[0] < nv and 0 <= j + d[1] < nh and d != (-di, -dj)]
        if not opts:
            opts = [(-di, -dj)]
        weights = np.array([3.0 if d == (di, dj) else 1.0 for d in opts])
        di, dj = opts[rng.choice(len(opts), p=weights / weights.sum())]
    # Lane lines of each move: road, unit direction u, right normal, offset.
    segs = []
    for (a, bnode), (di, dj) in zip(zip(nodes[:-1], nodes[1:]), moves):
        road = town.hroads[a[1]] if di != 0 else town.vroads[a[0]]
        ln = {'inner': 0, 'outer': road.lanes - 1}.get(lane, int(rng.integers(road.lanes)) if lane == 'random' else 0)
        u = np.array([di, dj], np.float64)
        nrm = np.array([u[1], -u[0]])
        pa = np.array([town.vroads[a[0]].pos, town.hroads[a[1]].pos])
        pb = np.array([town.vroads[bnode[0]].pos, town.hroads[bnode[1]].pos])
        off = _lane_offset(road, ln)
        segs.append((pa + nrm * off, pb + nrm * off, u, bnode))
    pts = [segs[0][0]]
    for k in range(len(segs)):
        p0, p1, u, node = segs[k]
        if k + 1 == len(segs):
            pts.append(p1)
            break
        q0, q1, u2, _ = segs[k + 1]
        if np.allclose(u, u2):
            pts.append(p1)
            continue
        # Corner: intersect the two lane lines, round the corner with a quadratic Bezier.
        a_mat = np.stack([u, -u2], 1)
        tt = np.linalg.solve(a_mat, q0 - p0)
        x = p0 + tt[0] * u
        cross_road = town.vroads[node[0]] if u2[0] == 0 else town.hroads[node[1]]
        bdist = max(4.0, cross_road.half_drive * 0.9)
        c0, c2 = x - u * bdist, x + u2 * bdist
        s = np.linspace(0, 1, 24)[:, None]
        pts.extend(list((1 - s) ** 2 * c0 + 2 * s * (1 - s) * x + s ** 2 * c2))
    pts = np.array(pts)
    seg_len = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    keep = np.concatenate([[True], seg_len > 1e-6])
    pts = pts[keep]
    cum = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    step = 0.25
    s = np.arange(0, cum[-1], step)
    res = np.stack([np.interp(s, cum, pts[:, 0]), np.interp(s, cum, pts[:, 1])], 1)
    d = np.gradient(res, axis=0)
    yaw = np.arctan2(d[:, 1], d[:, 0])
    return Route(res, yaw, step)


def obb_overlap(c1, h1, y1, c2, h2, y2):
    """2-D oriented boxes overlap test (separating axes), broadcasting over leading dims.

    c: centres [..., 2]; h: half extents (along-heading, across) [..., 2]; y: yaw [...].
    """
    def axes(y):
        c, s = np.cos(y), np.sin(y)
        return np.stack([c, s], -1), np.stack([-s, c], -1)
    a1, b1 = axes(y1)
    a2, b2 = axes(y2)
    d = c2 - c1
    sep = np.zeros(np.broadcast_shapes(d.shape[:-1], np.shape(y1), np.shape(y2)), bool)
    for ax in (a1, b1, a2, b2):
        r1 = h1[..., 0] * np.abs((a1 * ax).sum(-1)) + h1[..., 1] * np.abs((b1 * ax).sum(-1))
        r2 = h2[..., 0] * np.abs((a2 * ax).sum(-1)) + h2[..., 1] * np.abs((b2 * ax).sum(-1))
        sep |= np.abs((d * ax).sum(-1)) > r1 + r2
    return ~sep


def simulate_vehicles(routes, s0, v_des, lengths, widths, frames: int, obstacles=None, history: bool = False):
    """Drive vehicles along their routes with car-following; return keyframe states.

    Args:
        routes: list of Route (N); s0 [N] start arc lengths; v_des [N] desired speeds (m/s);
        lengths, widths [N] box sizes; obstacles: optional (centres [M,2], half [M,2], yaw [M])
        static boxes that block lanes (e.g. parked vehicles that stick out).
        history: also return the simulation state of every step.
    Returns:
        pos [F, N, 2], yaw [F, N], speed [F, N] at keyframes 0..F-1; with ``history`` also
        arc length s [S, N] at the start of each SIM_DT step (S = F * KEYFRAME_DT / SIM_DT) and the
        speed v [S, N] driven during it: at time t in step k the vehicle is at
        ``s[k] + v[k] * (t - k * SIM_DT)`` along its route (see ``route_state``).
    """
    n = len(routes)
    s = np.asarray(s0, np.float64).copy()
    v = np.asarray(v_des, np.float64) * 0.8
    half = np.stack([np.asarray(lengths) / 2, np.asarray(widths) / 2], 1)
    sub = int(round(KEYFRAME_DT / SIM_DT))
    out_p, out_y, out_v = np.zeros((frames, n, 2)), np.zeros((frames, n)), np.zeros((frames, n))
    s_hist, v_hist = np.zeros((frames * sub, n)), np.zeros((frames * sub, n))
    for step in range(frames * sub):
        s_hist[step] = s
        poses = [r.pose(si) for r, si in zip(routes, s)]
        p = np.array([q[0] for q in poses])
        y = np.array([q[1] for q in poses])
        if step % sub == 0:
            f = step // sub
            out_p[f], out_y[f], out_v[f] = p, y, v
        look = 2.0 + v * 1.2
        u = np.stack([np.cos(y), np.sin(y)], 1)
        probe_c = p + u * (half[:, :1] + look[:, None] / 2)
        probe_h = np.stack([look / 2, half[:, 1] * 0.8], 1)
        blocked = obb_overlap(probe_c[:, None], probe_h[:, None], y[:, None], p[None], half[None] + 0.3, y[None])
        np.fill_diagonal(blocked, False)
        # Two vehicles blocking each other (crossing at an intersection): the lower index goes first.
        mutual = blocked & blocked.T
        blocked &= ~(mutual & (np.arange(n)[:, None] < np.arange(n)[None]))
        stop = blocked.any(1)
        if obstacles is not None and len(obstacles[0]):
            stop |= obb_overlap(probe_c[:, None], probe_h[:, None], y[:, None], obstacles[0][None],
                                obstacles[1][None], obstacles[2][None]).any(1)
        stop |= s >= np.array([r.length for r in routes]) - 1
        v = np.where(stop, 0.0, np.minimum(v_des, v + 2.0 * SIM_DT))
        v_hist[step] = v
        s = s + v * SIM_DT
    if history:
        return out_p, out_y, out_v, s_hist, v_hist
    return out_p, out_y, out_v


def route_state(s_hist: np.ndarray, v_hist: np.ndarray, t: float):
    """Arc length [N] and speed [N] of simulated vehicles at time ``t`` seconds (any time, not only
    keyframes): the simulation moves each vehicle at constant speed within a SIM_DT step."""
    k = int(np.clip(np.floor(t / SIM_DT + 1e-9), 0, len(s_hist) - 1))
    return s_hist[k] + v_hist[k] * (t - k * SIM_DT), v_hist[k]


def simulate_pedestrians(walkways, choice, phase, speed, lateral, frames: int):
    """Pedestrians pacing back and forth along walkway lines.

    walkways: list of (x0, y0, x1, y1); choice [N] walkway index; phase [N] start
    position in metres along the walkway; speed [N] m/s (0 = standing);
    lateral [N] sideways offset. Returns pos [F, N, 2], yaw [F, N], speed [F, N].
    """
    pos, yaw, _ = pedestrian_state(walkways, choice, phase, speed, lateral, np.arange(frames)[:, None] * KEYFRAME_DT)
    return pos, yaw, np.broadcast_to(speed[None], (frames, len(speed))).copy()


def pedestrian_state(walkways, choice, phase, speed, lateral, t):
    """Pedestrians of ``simulate_pedestrians`` at times ``t`` [T, 1] seconds: pos [T, N, 2],
    yaw [T, N] and velocity [T, N, 2] (global frame)."""
    w = np.asarray(walkways, np.float64)[choice]
    a, b = w[:, :2], w[:, 2:]
    length = np.linalg.norm(b - a, axis=1)
    u = (b - a) / length[:, None]
    nrm = np.stack([-u[:, 1], u[:, 0]], 1)
    d = phase[None] + speed[None] * t                         # distance walked
    period = 2 * length[None]
    m = np.mod(d, period)
    forward = m < length[None]
    along = np.where(forward, m, period - m)
    pos = a[None] + u[None] * along[..., None] + nrm[None] * lateral[None, :, None]
    base = np.arctan2(u[:, 1], u[:, 0])[None]
    yaw = np.where(forward, base, base + np.pi)
    vel = np.where(forward[..., None], 1.0, -1.0) * u[None] * speed[None, :, None]
    return pos, yaw, vel
