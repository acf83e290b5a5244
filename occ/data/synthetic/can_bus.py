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
from .traffic import SIM_DT, route_state
from .world import World

POSE_HZ = 50
GRAVITY = 9.81


def can_bus_messages(world: World, agent: int, t0_us: int) -> dict:
    """message name -> messages of agent ``agent``'s scene whose first keyframe is at ``t0_us``."""
    n = world.agents[agent]
    v_idx = int(np.nonzero(world.vehicles == n)[0][0])
    route = world.routes[v_idx]
    duration = (world.frames - 1) * 0.5
    times = np.arange(0, int(round(duration * POSE_HZ)) + 1) / POSE_HZ
    pose = []
    for t in times:
        x, y, yaw = world.ego_pose_at(float(t), agent)
        s, v = route_state(world.sim_s[:, v_idx:v_idx + 1], world.sim_v[:, v_idx:v_idx + 1], float(t))
        s, v = float(s[0]), float(v[0])
        v_next = float(route_state(world.sim_s[:, v_idx:v_idx + 1], world.sim_v[:, v_idx:v_idx + 1],
                                   float(t) + SIM_DT)[1][0])
        yaw_rate = v * _curvature(route, s)
        pose.append({'utime': int(t0_us + round(t * 1e6)), 'pos': [x, y, 0.0],
                     'orientation': quat(rot_z(yaw)),
                     'vel': [v, 0.0, 0.0], 'accel': [(v_next - v) / SIM_DT, v * yaw_rate, GRAVITY],
                     'rotation_rate': [0.0, 0.0, yaw_rate]})
    monitor = [{'utime': m['utime'], 'vehicle_speed': m['vel'][0] * 3.6,
                'yaw_rate': float(np.degrees(m['rotation_rate'][2]))} for m in pose[::POSE_HZ // 2]]
    s_all = world.sim_s[:, v_idx]
    s_lo, s_hi = max(0.0, float(s_all.min()) - 20), min(route.length, float(s_all.max()) + 20)
    pts, _ = route.pose(np.arange(s_lo, s_hi + 1e-9, 5.0))
    return {'pose': pose, 'vehicle_monitor': monitor, 'route': [[float(a), float(b)] for a, b in pts]}


def _curvature(route, s: float, ds: float = 1.0) -> float:
    """Heading change per metre of the route around arc length ``s`` (rad/m, left turns positive)."""
    _, y0 = route.pose(s - ds)
    _, y1 = route.pose(s + ds)
    return float(np.angle(np.exp(1j * (y1 - y0)))) / (2 * ds)


__all__ = ['can_bus_messages', 'POSE_HZ']
