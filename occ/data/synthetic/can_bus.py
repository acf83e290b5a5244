"""The nuScenes CAN bus expansion of a generated scene: ``can_bus/<scene>_<message>.json``.

``nuscenes.can_bus.can_bus_api.NuScenesCanBus(dataroot=root).get_messages(scene, message)`` reads
these files. Written messages:

* ``pose`` (50 Hz, from the first to the last keyframe): ``utime`` (microseconds), ``pos`` [3]
  and ``orientation`` [4] (w, x, y, z) in the global frame (equal to the ego_pose at keyframes),
  ``vel`` [3] (m/s, ego frame), ``accel`` [3] (m/s^2, ego frame, with gravity on z as an IMU
  measures it) and ``rotation_rate`` [3] (rad/s, ego frame), the fields BEVFormer-style
  converters turn into their 18-value ``can_bus`` vector;
* ``vehicle_monitor`` (2 Hz, at the keyframes): ``utime``, ``vehicle_speed`` (km/h) and
  ``yaw_rate`` (deg/s);
* ``route``: the ego's planned lane-centre route, [[x, y], ...] every 5 m (global frame).

Poses between keyframes come from the traffic simulation (``World.ego_pose_at``); velocity and
acceleration along the heading from its speed; the yaw rate from the route's heading change.
"""
from __future__ import annotations

import numpy as np

from .nuscenes_db import quat
from .sensors import rot_z
from .traffic import KEYFRAME_DT, SIM_DT
from .world import EGO_HEIGHT, World, rear_axle

POSE_HZ = 50
GRAVITY = 9.81


def can_bus_messages(world: World, agent: int, t0_us: int) -> dict:
    """message name -> messages of agent ``agent``'s scene whose first keyframe is at ``t0_us``."""
    v_idx = int(np.nonzero(world.vehicles == world.agents[agent])[0][0])
    route = world.routes[v_idx]
    sim_s, sim_v = world.sim_s[:, v_idx], world.sim_v[:, v_idx]
    n = int(round((world.frames - 1) * KEYFRAME_DT * POSE_HZ)) + 1
    t = np.arange(n) / POSE_HZ
    # The traffic simulation's state at every message time (see traffic.route_state), vectorised.
    k = np.clip(np.floor(t / SIM_DT + 1e-9).astype(np.int64), 0, len(sim_s) - 1)
    s = sim_s[k] + sim_v[k] * (t - k * SIM_DT)
    v = sim_v[k]
    v_next = sim_v[np.minimum(k + 1, len(sim_s) - 1)]
    poses = [world.ego_pose_at(float(ti), agent) if abs(ti / KEYFRAME_DT - round(ti / KEYFRAME_DT)) < 1e-9
             else None for ti in t]
    centre, heading = route.pose(s)
    yaw_rate = v * _curvature(route, s)
    pose = []
    for i in range(n):
        # keyframes: exactly the ego_pose; in between: the rear axle of the simulated vehicle
        x, y, yaw = poses[i] if poses[i] is not None else rear_axle(centre[i, 0], centre[i, 1], heading[i])
        pose.append({'utime': int(t0_us + round(t[i] * 1e6)), 'pos': [x, y, EGO_HEIGHT],
                     'orientation': quat(rot_z(yaw)),
                     'vel': [float(v[i]), 0.0, 0.0],
                     'accel': [float(v_next[i] - v[i]) / SIM_DT, float(v[i] * yaw_rate[i]), GRAVITY],
                     'rotation_rate': [0.0, 0.0, float(yaw_rate[i])]})
    monitor = [{'utime': m['utime'], 'vehicle_speed': m['vel'][0] * 3.6,
                'yaw_rate': float(np.degrees(m['rotation_rate'][2]))} for m in pose[::int(KEYFRAME_DT * POSE_HZ)]]
    s_lo, s_hi = max(0.0, float(sim_s.min()) - 20), min(route.length, float(sim_s.max()) + 20)
    pts, _ = route.pose(np.arange(s_lo, s_hi + 1e-9, 5.0))
    return {'pose': pose, 'vehicle_monitor': monitor, 'route': [[float(a), float(b)] for a, b in pts]}


def _curvature(route, s: np.ndarray, ds: float = 1.0) -> np.ndarray:
    """Heading change per metre of the route around arc lengths ``s`` [N] (rad/m, left turns positive)."""
    _, y0 = route.pose(s - ds)
    _, y1 = route.pose(s + ds)
    return np.angle(np.exp(1j * (y1 - y0))) / (2 * ds)


__all__ = ['can_bus_messages', 'POSE_HZ']
