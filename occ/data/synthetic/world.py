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
from .sensors import lidar2ego, lidar_returns, observation_scan
from .town import Town, build_town
from .traffic import (KEYFRAME_DT, obb_overlap, pedestrian_state, random_route, route_state, simulate_pedestrians,
                      simulate_vehicles)

EGO_SIZE = (4.2, 1.8, 1.6)           # l, w, h of every connected (sensor) vehicle
EGO_REAR_AXLE = 0.9                  # metres from the rear bumper to the rear axle (ego frame origin)
# Height of the ego frame's origin above the road (data/README.md, "Height convention"): the real
# Occ3D frame has its road in z level 0 ([-1.0, -0.6) m) and nuScenes mounts CAM_FRONT at z = 1.51 m,
# LIDAR_TOP at 1.84 m in the ego frame; the road plane sits at z = -EGO_HEIGHT in the ego frame.
EGO_HEIGHT = 0.8
# Keyframes (before and after) whose points on an object label it: +-1 s, the span over which a
# moving object keeps showing the ego about the same sides (data/README.md, "Labels").
OBJECT_WINDOW = 2
_KEYFRAME_RETURN_KEYS = ('t', 'semantics', 'instance', 'cos_incidence', 'paint')
OBSERVATION_STREAM = 30              # random stream (per keyframe and agent) of observation_scan's foliage depths
TOWN_SIZE = 300.0
# Sidewalks stand this far above the road (data/README.md, "Kerbs"): a common kerb height, and what
# brings the real frame's sidewalk voxels into z level 1.
KERB_HEIGHT = 0.2
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
    # Label rule (frame.sensor_masks): LiDAR beams above the horizontal observe no free space.
    upward_endpoint_only: bool = True
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

    def base_height(self, x, y) -> np.ndarray:
        """Height of an object's box bottom standing at global (x, y): the ground's (kerbs raise it)."""
        return self.town.ground_height(x, y)

    def _posed(self, pose: np.ndarray, exclude=()) -> Primitives:
        p = self.parts
        keep = ~np.isin(p.inst, np.asarray(list(exclude), np.int32))
        obj = p.inst[keep]
        base = self.base_height(pose[:, 0], pose[:, 1])                  # one height per object
        cen = object_to_world(p.center[keep], pose[obj], base[obj])
        posed = Primitives(p.kind[keep], cen, p.size[keep], p.yaw[keep] + pose[obj, 2], p.cls[keep], obj,
                           p.albedo[keep], p.tex[keep])
        return Primitives.concat([self.town.scenery, posed])

    def ego_pose(self, f: int, agent: int = 0):
        """(x, y, yaw) of agent ``agent``'s ego frame (rear axle, EGO_HEIGHT above the road) at keyframe ``f``."""
        return rear_axle(*self.pose[f, self.agents[agent]])

    def ego_pose_at(self, t: float, agent: int = 0):
        """``ego_pose`` at any time ``t`` seconds after the first keyframe."""
        return rear_axle(*self.poses_at(t)[self.agents[agent]])

    def observed(self, agent: int = 0) -> dict:
        """What agent ``agent``'s LiDAR observes over its whole scene, accumulated like Occ3D does:
        ``observation_scan`` at every keyframe (all objects at their poses occlude), static hits
        in the global frame, object hits in their object's frame (box bottom centre, heading x).

        Returns dict (cached): ``static`` (points [P, 3] global, float64 holding float32 values,
        sorted by x so a keyframe can slice the ones near it; cls uint8 [P]) and ``objects``
        (points float32 [Q, 3] object frame, cls uint8 [Q], instance int32 [Q]).
        """
        key = ('observed', agent)
        if key not in self._cache:
            sp, sc, op, oc, oi, of = [], [], [], [], [], []
            for f in range(self.frames):
                l2g = self.ego2global(f, agent) @ lidar2ego()
                rng = np.random.default_rng([self.seed, self.index, 1000 + f, agent, OBSERVATION_STREAM])
                returns = lidar_returns(self.prims_at(f, exclude=[self.agents[agent]]), self.town, l2g)
                scan = observation_scan(returns, l2g, rng)
                self._cache[('keyframe_returns', agent, f)] = {k: returns[k] for k in _KEYFRAME_RETURN_KEYS}
                st = scan['instance'] < 0
                sp.append(scan['points'][st].astype(np.float32))
                sc.append(scan['semantics'][st])
                inst = scan['instance'][~st]
                pose = self.pose[f, inst]
                base = self.base_height(pose[:, 0], pose[:, 1])
                op.append(world_to_object(scan['points'][~st], pose, base).astype(np.float32))
                oc.append(scan['semantics'][~st])
                oi.append(inst)
                of.append(np.full(len(inst), f, np.int32))
            sp, sc = np.concatenate(sp), np.concatenate(sc)
            order = np.argsort(sp[:, 0], kind='stable')
            self._cache[key] = {'static': (sp[order].astype(np.float64), sc[order]),
                                'objects': (np.concatenate(op), np.concatenate(oc), np.concatenate(oi)),
                                'object_frame': np.concatenate(of)}
        return self._cache[key]

    def keyframe_returns(self, f: int, agent: int = 0) -> dict:
        """The noise-free ``lidar_returns`` of agent ``agent``'s keyframe-``f`` LiDAR (the per-ray
        arrays only), cast once with ``observed``, whose observation scan uses the same beams."""
        self.observed(agent)
        return self._cache[('keyframe_returns', agent, f)]

    def observed_objects_at(self, f: int, agent: int, instances) -> tuple:
        """The object points (``observed(agent)``) of objects ``instances`` observed within
        OBJECT_WINDOW keyframes of ``f``, placed at their keyframe-``f`` poses:
        (points float64 [Q, 3] global, cls uint8 [Q], instance int32 [Q])."""
        obs = self.observed(agent)
        pts, cls, inst = obs['objects']
        keep = np.isin(inst, np.asarray(instances, np.int64)) & (np.abs(obs['object_frame'] - f) <= OBJECT_WINDOW)
        pts, cls, inst = pts[keep].astype(np.float64), cls[keep], inst[keep]
        pose = self.pose[f, inst]
        return object_to_world(pts, pose, self.base_height(pose[:, 0], pose[:, 1])), cls, inst

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


def object_to_world(local: np.ndarray, pose: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Points [N, 3] in their objects' frames (box bottom centre, heading x) -> global, for
    per-point object poses ``pose`` [N, 3] = (x, y, yaw) standing at heights ``base`` [N]."""
    c, s = np.cos(pose[:, 2]), np.sin(pose[:, 2])
    return np.stack([c * local[:, 0] - s * local[:, 1] + pose[:, 0], s * local[:, 0] + c * local[:, 1] + pose[:, 1],
                     local[:, 2] + base], 1)


def world_to_object(pts: np.ndarray, pose: np.ndarray, base: np.ndarray) -> np.ndarray:
    """The inverse of ``object_to_world``: global points [N, 3] -> their objects' frames."""
    c, s = np.cos(pose[:, 2]), np.sin(pose[:, 2])
    dx, dy = pts[:, 0] - pose[:, 0], pts[:, 1] - pose[:, 1]
    return np.stack([c * dx + s * dy, -s * dx + c * dy, pts[:, 2] - base], 1)


def rear_axle(x, y, yaw):
    """(x, y, yaw) of the ego frame (rear axle; its origin is EGO_HEIGHT above the road) of a
    connected vehicle whose box bottom centre is at (x, y) with heading yaw."""
    back = EGO_SIZE[0] / 2 - EGO_REAR_AXLE
    return float(x - back * np.cos(yaw)), float(y - back * np.sin(yaw)), float(yaw)


def _planar(x, y, yaw) -> np.ndarray:
    """Ego -> global [4, 4] of an ego frame at (x, y) with heading yaw, its origin EGO_HEIGHT above the road."""
    m = np.eye(4)
    m[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    m[:3, 3] = x, y, EGO_HEIGHT
    return m


_MOVING = [('vehicle.car', 0.7, (6.0, 11.0)), ('vehicle.truck', 0.08, (5.0, 9.0)),
           ('vehicle.bus.rigid', 0.06, (5.0, 8.0)), ('vehicle.motorcycle', 0.06, (7.0, 12.0)),
           ('vehicle.bicycle', 0.08, (3.0, 5.5)), ('vehicle.construction', 0.02, (3.0, 5.0))]


def build_world(seed: int, index: int, frames: int, agents: int = 1, n_vehicles: int = 36,
                n_pedestrians: int = 140, kerb_height: float = KERB_HEIGHT, upward_endpoint_only: bool = True) -> World:
    """Build world ``index`` of the generator seeded with ``seed`` (deterministic).

    ``kerb_height``: the sidewalks stand that much above the road (data/README.md, "Kerbs"; 0: one
    ground plane); objects standing on them are placed on the raised surface. Every random draw
    is the same for any ``kerb_height``. ``upward_endpoint_only``: the labels' LiDAR visibility
    rule (``World`` field; data/README.md, "Statistics").
    """
    if frames < 1 or agents < 1:
        raise ValueError(f'frames ({frames}) and agents ({agents}) must be >= 1')
    if kerb_height < 0:
        raise ValueError(f'kerb_height must be >= 0, got {kerb_height}')
    town = build_town(np.random.default_rng([seed, index, 0]), TOWN_SIZE, kerb_height=kerb_height)
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
                 walk=(walk, choice, phase, speed, lateral), upward_endpoint_only=bool(upward_endpoint_only))


def _scale_parts(t: ObjectTemplate, size) -> Primitives:
    """Resize a template's parts to a given box size (connected vehicles all share one size)."""
    s = np.asarray(size) / np.asarray(t.size)
    q = t.parts
    return Primitives(q.kind, q.center * s, q.size * s, q.yaw, q.cls, q.inst, q.albedo, q.tex)
