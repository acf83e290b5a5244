"""One synthetic world: a town plus every object's pose at every keyframe.

``build_world(seed, index, frames, agents)`` is a pure function of its
arguments, so any process (a generator worker, a test) can rebuild the exact
world a scene was rendered from.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .objects import ObjectTemplate, make_object
from .primitives import Primitives
from .town import Town, build_town
from .traffic import (KEYFRAME_DT, obb_overlap, pedestrian_state, random_route, route_state, simulate_pedestrians,
                      simulate_vehicles)

SEEN_RES = 0.4                       # metres per cell of the observed-ground raster
SEEN_RANGE = 40.0                    # metres: ground farther than this from every keyframe is unobserved
EGO_SIZE = (4.2, 1.8, 1.6)           # l, w, h of every connected (sensor) vehicle
EGO_REAR_AXLE = 0.9                  # metres from the rear bumper to the rear axle (ego frame origin)
TOWN_SIZE = 300.0
CAMERA_TILT_DEG = 0.6                # per-camera pitch and roll are uniform in +-this (real rigs are not level)


@dataclass
class World:
    """Town + objects. Object n has template ``objects[n]`` and pose ``pose[f, n]`` = (x, y, yaw)
    of its box bottom centre at keyframe f; ``motion[n]`` is 'parked', 'static', 'vehicle',
    'pedestrian' or 'agent'; ``agents[k]`` is the object index of connected vehicle k (0 = ego)."""

    seed: int
    index: int
    frames: int
    town: Town
    objects: list
    pose: np.ndarray          # float [F, N, 3]
    speed: np.ndarray         # float [F, N]
    motion: list
    agents: list
    parts: Primitives         # all object parts in their object frames, inst = object index
    # Motion between keyframes (sweeps, CAN bus, radar Doppler): route-following vehicles
    # (agents first) with their simulation history, pedestrians with their walk parameters.
    vehicles: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))    # object indices [V]
    routes: list = field(default_factory=list)                                     # Route per vehicle
    sim_s: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))            # [S, V] see route_state
    sim_v: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    pedestrians: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # object indices [P]
    walk: tuple = ()                                                               # pedestrian_state args
    _cache: dict = field(default_factory=dict, repr=False)

    def prims_at(self, f: int, exclude=()) -> Primitives:
        """All primitives (scenery + posed objects) in the global frame at keyframe ``f``."""
        return self._posed(self.pose[f], exclude)

    def prims_at_time(self, t: float, exclude=(), poses: np.ndarray | None = None) -> Primitives:
        """``prims_at`` at any time ``t`` seconds after the first keyframe (sweeps between keyframes);
        ``poses``: ``poses_at(t)`` when already computed."""
        return self._posed(self.poses_at(t) if poses is None else poses, exclude)

    def poses_at(self, t: float) -> np.ndarray:
        """(x, y, yaw) [N, 3] of every object at time ``t`` seconds after the first keyframe.

        At keyframe times this is exactly ``pose[f]``; in between, vehicles are where the traffic
        simulation put them (constant speed along the route within a simulation step) and
        pedestrians where their walk puts them.
        """
        f = t / KEYFRAME_DT
        if abs(f - round(f)) < 1e-9 and 0 <= round(f) < self.frames:
            return self.pose[int(round(f))]
        pose = self.pose[0].copy()
        if len(self.vehicles):
            s, _ = route_state(self.sim_s, self.sim_v, t)
            for i, (n, r) in enumerate(zip(self.vehicles, self.routes)):
                p, yaw = r.pose(s[i])
                pose[n] = (p[0], p[1], yaw)
        if len(self.pedestrians):
            p, yaw, _ = pedestrian_state(*self.walk, np.array([[t]]))
            pose[self.pedestrians, :2], pose[self.pedestrians, 2] = p[0], yaw[0]
        return pose

    def velocities_at(self, t: float) -> np.ndarray:
        """Ground velocity (vx, vy) [N, 2] in m/s, global frame, of every object at time ``t`` seconds."""
        vel = np.zeros((len(self.objects), 2))
        if len(self.vehicles):
            _, v = route_state(self.sim_s, self.sim_v, t)
            yaw = self.poses_at(t)[self.vehicles, 2]
            vel[self.vehicles] = v[:, None] * np.stack([np.cos(yaw), np.sin(yaw)], 1)
        if len(self.pedestrians):
            vel[self.pedestrians] = pedestrian_state(*self.walk, np.array([[t]]))[2][0]
        return vel

    def camera_tilt(self, agent: int = 0) -> np.ndarray:
        """Per-camera (pitch, roll) [6, 2] of agent ``agent``'s rig, see ``camera_tilt``."""
        return camera_tilt(self.seed, self.index, agent)

    def _posed(self, pose: np.ndarray, exclude=()) -> Primitives:
        p = self.parts
        keep = ~np.isin(p.inst, np.asarray(list(exclude), np.int32))
        obj = p.inst[keep]
        x, y, yaw = pose[obj, 0], pose[obj, 1], pose[obj, 2]
        c, s = np.cos(yaw), np.sin(yaw)
        lc = p.center[keep]
        cen = np.stack([c * lc[:, 0] - s * lc[:, 1] + x, s * lc[:, 0] + c * lc[:, 1] + y, lc[:, 2]], 1)
        posed = Primitives(p.kind[keep], cen, p.size[keep], p.yaw[keep] + yaw, p.cls[keep], obj,
                           p.albedo[keep], p.tex[keep])
        return Primitives.concat([self.town.scenery, posed])

    def ego_pose(self, f: int, agent: int = 0):
        """(x, y, yaw) of agent ``agent``'s ego frame (rear axle on the ground) at keyframe ``f``."""
        return rear_axle(*self.pose[f, self.agents[agent]])

    def ego_pose_at(self, t: float, agent: int = 0):
        """``ego_pose`` at any time ``t`` seconds after the first keyframe."""
        return rear_axle(*self.poses_at(t)[self.agents[agent]])

    def ground_seen(self, agent: int = 0) -> np.ndarray:
        """bool [n, n] raster (cells of SEEN_RES m) of what the agent's LiDAR observes from some
        keyframe of its scene: within SEEN_RANGE and not behind a building, wall or tall parked
        vehicle (their near face is seen). Occ3D labels static stuff only where accumulated LiDAR
        points exist; labels use this for the ground, manmade and vegetation classes."""
        key = ('seen', agent)
        if key not in self._cache:
            pos = np.array([self.ego_pose(f, agent)[:2] for f in range(self.frames)])
            self._cache[key] = observed_ground(occluder_raster(self.town.size, self.static_occluders()), pos)
        return self._cache[key]

    def static_occluders(self, min_height: float = 1.5) -> np.ndarray:
        """Footprints [M, 5] (cx, cy, l, w, yaw) of static things at least ``min_height`` tall that
        stand on the ground (buildings, walls, tree trunks, tall parked vehicles): a roof LiDAR at
        1.84 m sees the ground over lower ones such as barriers, hedges and most cars."""
        sc = self.town.scenery
        sel = (sc.size[:, 2] >= min_height) & (sc.center[:, 2] - sc.size[:, 2] / 2 < 0.5) & (sc.kind != 2)
        rects = [np.stack([sc.center[sel, 0], sc.center[sel, 1], sc.size[sel, 0], sc.size[sel, 1], sc.yaw[sel]], 1)]
        for n, (obj, motion) in enumerate(zip(self.objects, self.motion)):
            if motion in ('parked', 'static') and obj.size[2] >= min_height:
                rects.append(np.array([[*self.pose[0, n, :2], obj.size[0], obj.size[1], self.pose[0, n, 2]]]))
        return np.concatenate(rects, 0)

    def ego2global(self, f: int, agent: int = 0) -> np.ndarray:
        return _planar(*self.ego_pose(f, agent))

    def ego2global_at(self, t: float, agent: int = 0, poses: np.ndarray | None = None) -> np.ndarray:
        """Ego -> global [4, 4] at time ``t``; ``poses``: ``poses_at(t)`` when already computed."""
        if poses is None:
            return _planar(*self.ego_pose_at(t, agent))
        return _planar(*rear_axle(*poses[self.agents[agent]]))


def camera_tilt(seed: int, index: int, agent: int) -> np.ndarray:
    """Per-camera (pitch, roll) [6, 2] in radians (CAMERA_NAMES order) of connected vehicle ``agent``
    of world ``index``: uniform in +-CAMERA_TILT_DEG, fixed per vehicle like a real calibration, from
    its own random stream (the town, traffic and sensor noise do not change with it)."""
    rng = np.random.default_rng([seed, index, 3, agent])
    return np.deg2rad(rng.uniform(-CAMERA_TILT_DEG, CAMERA_TILT_DEG, (6, 2)))


def rear_axle(x, y, yaw):
    """(x, y, yaw) of the ego frame (rear axle on the ground) of a connected vehicle whose box
    bottom centre is at (x, y) with heading yaw."""
    back = EGO_SIZE[0] / 2 - EGO_REAR_AXLE
    return float(x - back * np.cos(yaw)), float(y - back * np.sin(yaw)), float(yaw)


def _planar(x, y, yaw) -> np.ndarray:
    m = np.eye(4)
    m[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    m[:2, 3] = x, y
    return m


_MOVING = [('vehicle.car', 0.7, (6.0, 11.0)), ('vehicle.truck', 0.08, (5.0, 9.0)),
           ('vehicle.bus.rigid', 0.06, (5.0, 8.0)), ('vehicle.motorcycle', 0.06, (7.0, 12.0)),
           ('vehicle.bicycle', 0.08, (3.0, 5.5)), ('vehicle.construction', 0.02, (3.0, 5.0))]


def build_world(seed: int, index: int, frames: int, agents: int = 1, n_vehicles: int = 36,
                n_pedestrians: int = 140) -> World:
    """Build world ``index`` of the generator seeded with ``seed`` (deterministic)."""
    if frames < 1 or agents < 1:
        raise ValueError(f'frames ({frames}) and agents ({agents}) must be >= 1')
    town = build_town(np.random.default_rng([seed, index, 0]), TOWN_SIZE)
    rng = np.random.default_rng([seed, index, 1])
    orng = np.random.default_rng([seed, index, 2])
    objects: list[ObjectTemplate] = []
    motion: list[str] = []
    static_pose = []
    for pl in town.placements:
        objects.append(make_object(pl.category, orng, rider=pl.rider))
        motion.append('parked' if pl.category.startswith('vehicle') else 'static')
        static_pose.append((pl.x, pl.y, pl.yaw))
    n_static = len(objects)
    # Connected vehicles (ego first) share one route, spaced along it, so they see the same places.
    duration = frames * 0.5
    centre_i, centre_j = len(town.vroads) // 2, len(town.hroads) // 2
    start_dir = [(1, 0), (-1, 0), (0, 1), (0, -1)][rng.integers(4)]
    ego_route = random_route(town, rng, min_length=12 * duration + 40 * agents + 60, lane='outer',
                             start=(centre_i, centre_j, *start_dir))
    routes, s0, v_des, sizes, tmpls = [], [], [], [], []
    s_ego = rng.uniform(20, 35)
    for k in range(agents):
        routes.append(ego_route)
        s0.append(s_ego + k * rng.uniform(14, 20) if k else s_ego)
        v_des.append(rng.uniform(7.0, 9.5))
        t = make_object('vehicle.car', orng)
        t = ObjectTemplate('vehicle.car', EGO_SIZE, _scale_parts(t, EGO_SIZE))
        tmpls.append(t)
        sizes.append(EGO_SIZE)
    # Other traffic, spawned near the ego's route so it is seen; rejected if it would overlap.
    ego_pts = ego_route.points[:: max(1, int(20 / ego_route.step))]
    cats = [c for c, _, _ in _MOVING]
    probs = np.array([p for _, p, _ in _MOVING])
    tries = 0
    while len(routes) < agents + n_vehicles and tries < n_vehicles * 20:
        tries += 1
        cat = cats[rng.choice(len(cats), p=probs / probs.sum())]
        lo, hi = dict((c, v) for c, _, v in _MOVING)[cat]
        lane = 'outer' if cat in ('vehicle.bicycle', 'vehicle.bus.rigid') else 'random'
        route = random_route(town, rng, min_length=hi * duration + 20, lane=lane)
        s = rng.uniform(0, min(150.0, route.length - hi * duration - 5))
        p, _ = route.pose(s)
        if np.min(np.linalg.norm(ego_pts - p, axis=1)) > 110:
            continue
        t = make_object(cat, orng, rider=cat in ('vehicle.bicycle', 'vehicle.motorcycle'))
        l, w, _ = t.size
        clash = False
        for r2, s2, (l2, w2, _) in zip(routes, s0, sizes):
            p2, y2 = r2.pose(s2)
            _, y1 = route.pose(s)
            if obb_overlap(p, np.array([l / 2 + 3, w / 2 + 0.5]), y1, p2, np.array([l2 / 2 + 3, w2 / 2 + 0.5]), y2):
                clash = True
                break
        if clash:
            continue
        routes.append(route)
        s0.append(s)
        v_des.append(rng.uniform(lo, hi))
        sizes.append(t.size)
        tmpls.append(t)
    vp, vy, vv, sim_s, sim_v = simulate_vehicles(routes, s0, v_des, [q[0] for q in sizes], [q[1] for q in sizes],
                                                 frames, history=True)
    # Pedestrians: walkways near the ego's route are much more likely.
    walk = town.walkways
    mids = np.array([((a + c) / 2, (b + d) / 2) for a, b, c, d in walk])
    near = np.array([np.min(np.linalg.norm(ego_pts - m, axis=1)) < 60 for m in mids])
    lengths = np.array([np.hypot(c - a, d - b) for a, b, c, d in walk])
    wts = lengths * np.where(near, 1.0, 0.15)
    choice = rng.choice(len(walk), size=n_pedestrians, p=wts / wts.sum())
    phase = rng.uniform(0, 2 * lengths[choice])
    speed = np.where(rng.random(n_pedestrians) < 0.2, 0.0, rng.uniform(0.9, 1.7, n_pedestrians))
    lateral = rng.uniform(-0.9, 0.9, n_pedestrians)
    pp, py, pv = simulate_pedestrians(walk, choice, phase, speed, lateral, frames)
    ped_tmpls = [make_object('human.pedestrian.child' if orng.random() < 0.1 else 'human.pedestrian.adult', orng)
                 for _ in range(n_pedestrians)]
    objects += tmpls + ped_tmpls
    motion += ['agent'] * agents + ['vehicle'] * (len(tmpls) - agents) + ['pedestrian'] * n_pedestrians
    n = len(objects)
    pose = np.zeros((frames, n, 3))
    spd = np.zeros((frames, n))
    if n_static:
        pose[:, :n_static] = np.array(static_pose)[None]
    a, b = n_static, n_static + len(tmpls)
    pose[:, a:b, :2], pose[:, a:b, 2], spd[:, a:b] = vp, vy, vv
    pose[:, b:, :2], pose[:, b:, 2], spd[:, b:] = pp, py, pv
    parts = []
    for i, t in enumerate(objects):
        q = t.parts
        parts.append(Primitives(q.kind, q.center, q.size, q.yaw, q.cls, np.full(len(q), i, np.int32),
                                q.albedo, q.tex))
    return World(seed, index, frames, town, objects, pose, spd, motion,
                 list(range(n_static, n_static + agents)), Primitives.concat(parts),
                 vehicles=np.arange(a, b), routes=routes, sim_s=sim_s, sim_v=sim_v, pedestrians=np.arange(b, n),
                 walk=(walk, choice, phase, speed, lateral))


def _scale_parts(t: ObjectTemplate, size) -> Primitives:
    """Resize a template's parts to a given box size (connected vehicles all share one size)."""
    s = np.asarray(size) / np.asarray(t.size)
    q = t.parts
    return Primitives(q.kind, q.center * s, q.size * s, q.yaw, q.cls, q.inst, q.albedo, q.tex)


def occluder_raster(size: float, rects: np.ndarray, res: float = SEEN_RES) -> np.ndarray:
    """bool [n, n] raster of rectangles [M, 5] = (cx, cy, l, w, yaw) that hide the ground behind them."""
    n = int(round(size / res))
    occ = np.zeros((n, n), bool)
    for cx, cy, l, w, yaw in rects:
        a = np.arange(-l / 2, l / 2 + 1e-9, res / 2)
        b = np.arange(-w / 2, w / 2 + 1e-9, res / 2)
        aa, bb = np.meshgrid(a, b, indexing='ij')
        c, s = np.cos(yaw), np.sin(yaw)
        ix = np.floor((cx + c * aa - s * bb) / res).astype(int)
        iy = np.floor((cy + s * aa + c * bb) / res).astype(int)
        ok = (ix >= 0) & (ix < n) & (iy >= 0) & (iy < n)
        occ[ix[ok], iy[ok]] = True
    return occ


def observed_ground(occ: np.ndarray, positions: np.ndarray, res: float = SEEN_RES, max_range: float = SEEN_RANGE,
                    n_rays: int = 1440) -> np.ndarray:
    """Union over sensor positions [F, 2] of the ground cells visible in 2-D from them: rays
    over the occluder raster ``occ`` stop at the first occluded cell."""
    n = occ.shape[0]
    seen = np.zeros((n, n), bool)
    az = np.linspace(-np.pi, np.pi, n_rays, endpoint=False)
    t = np.arange(0.5, max_range / (res / 2)) * (res / 2)
    d = np.stack([np.cos(az), np.sin(az)], 1)
    for p in positions:
        pts = p[None, None] + d[:, None] * t[None, :, None]                  # [R, T, 2]
        ix, iy = np.floor(pts[..., 0] / res).astype(int), np.floor(pts[..., 1] / res).astype(int)
        ok = (ix >= 0) & (ix < n) & (iy >= 0) & (iy < n)
        ixc, iyc = np.clip(ix, 0, n - 1), np.clip(iy, 0, n - 1)
        blocked = np.maximum.accumulate(occ[ixc, iyc] & ok, axis=1)
        blocked[:, 1:] = blocked[:, :-1].copy()          # the occluder's own front cell is seen
        blocked[:, 0] = False
        vis = ok & ~blocked
        seen[ixc[vis], iyc[vis]] = True
    return seen
