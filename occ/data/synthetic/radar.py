"""The 5 nuScenes radars: simulated returns from vehicles, people and structures, written as
nuScenes radar ``.pcd`` files (the 18-field binary PCD the devkit's ``RadarPointCloud.from_file`` reads).

A radar casts a horizontal fan of rays at its mounting height (``RADAR_RAYS`` over +-``RADAR_FOV``
degrees, ``RADAR_RANGE`` metres). Each ray that hits a solid is a return candidate, kept with a
class-dependent probability; every object (and every scenery primitive) gives at most
``MAX_RETURNS`` returns, like the clustered output of the Continental ARS 408 nuScenes uses.
Returns lie in the radar's x-y plane (z = 0 in the sensor frame, as in nuScenes), carry range and
azimuth noise, a radar cross-section by class and the Doppler velocity: ``vx, vy`` the radial
velocity relative to the moving sensor, ``vx_comp, vy_comp`` the radial part of the object's own
ground velocity (ego motion compensated), both as vectors along the line of sight in the sensor
frame. The ground is never hit (the rays are level), so returns cost little: ~1,200 rays per keyframe.
"""
from __future__ import annotations

import numpy as np

from .primitives import Primitives
from .raycast import cast, grid_tiles

# name -> (translation in the ego frame [m], yaw [deg] about ego z): about the nuScenes rig
# (front bumper, front corners looking sideways, rear corners looking backwards).
RADAR_RIG = {
    'RADAR_FRONT': ((3.41, 0.0, 0.50), 0.0),
    'RADAR_FRONT_LEFT': ((2.42, 0.80, 0.50), 90.0),
    'RADAR_FRONT_RIGHT': ((2.42, -0.80, 0.50), -90.0),
    'RADAR_BACK_LEFT': ((-0.56, 0.62, 0.50), 170.0),
    'RADAR_BACK_RIGHT': ((-0.56, -0.62, 0.50), -170.0),
}
RADAR_NAMES = tuple(RADAR_RIG)
RADAR_FOV = 60.0           # degrees either side of the boresight
RADAR_RAYS = 241           # 0.5 degree spacing
RADAR_RANGE = 100.0
MAX_RETURNS = 3            # per object or scenery primitive
# Per Occ3D class: probability that a ray hitting it yields a return, and radar cross-section (dBsm).
_KEEP = np.array([0.3, 0.4, 0.5, 0.7, 0.7, 0.7, 0.5, 0.5, 0.3, 0.7, 0.7, 0, 0, 0, 0, 0.25, 0.08, 0])
_RCS = np.array([0.0, 2.0, -5.0, 15.0, 8.0, 12.0, 0.0, -5.0, -10.0, 12.0, 15.0, 0, 0, 0, 0, 10.0, -3.0, 0])

PCD_FIELDS = ('x', 'y', 'z', 'dyn_prop', 'id', 'rcs', 'vx', 'vy', 'vx_comp', 'vy_comp', 'is_quality_valid',
              'ambig_state', 'x_rms', 'y_rms', 'invalid_state', 'pdh0', 'vx_rms', 'vy_rms')
PCD_DTYPE = np.dtype([(n, t) for n, t in zip(PCD_FIELDS, ['<f4', '<f4', '<f4', 'i1', '<i2', '<f4', '<f4', '<f4',
                                                          '<f4', '<f4'] + ['i1'] * 8)])


def radar2ego(name: str) -> np.ndarray:
    """Sensor -> ego [4, 4] of radar ``name`` (x forward along the boresight, y left, z up)."""
    (x, y, z), yaw = RADAR_RIG[name]
    c, s = np.cos(np.deg2rad(yaw)), np.sin(np.deg2rad(yaw))
    m = np.eye(4)
    m[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    m[:3, 3] = x, y, z
    return m


def radar_scan(prims: Primitives, radar2global: np.ndarray, object_velocity: np.ndarray,
               sensor_velocity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One radar measurement.

    Args:
        prims: world primitives, global frame. radar2global: [4, 4] (level sensor).
        object_velocity: ground velocity [N_objects, 2] (global) indexed by ``prims.inst``.
        sensor_velocity: [2] ground velocity of the radar (global).
    Returns:
        structured array [M] of PCD_DTYPE (sensor frame), M >= 0.
    """
    origin = radar2global[:3, 3]
    az = np.deg2rad(np.linspace(-RADAR_FOV, RADAR_FOV, RADAR_RAYS))
    d_s = np.stack([np.cos(az), np.sin(az), np.zeros_like(az)], 1)
    dirs = d_s @ radar2global[:3, :3].T
    near = prims.subset(np.nonzero(np.linalg.norm(prims.center[:, :2] - origin[:2], axis=1) - prims.radius
                                   < RADAR_RANGE)[0])
    hits = cast(near, origin, dirs, grid_tiles(1, RADAR_RAYS, 1, 16), RADAR_RANGE, ground=False)
    ray = np.nonzero(hits['hit'] >= 0)[0]
    pid = hits['hit'][ray]
    cls = near.cls[pid]
    inst = near.inst[pid]
    keep = rng.random(len(ray)) < _KEEP[cls]
    # At most MAX_RETURNS per object (or scenery primitive), chosen at random among its kept hits.
    group = np.where(inst >= 0, inst, -2 - pid)
    order = np.lexsort((rng.random(len(ray)), ~keep, group))
    g = group[order]
    first = np.concatenate([[0], np.nonzero(np.diff(g))[0] + 1]) if len(g) else np.zeros(0, np.int64)
    rank = np.arange(len(g)) - np.repeat(first, np.diff(np.concatenate([first, [len(g)]])))
    sel = np.sort(order[(rank < MAX_RETURNS) & keep[order]])
    ray, cls, inst = ray[sel], cls[sel], inst[sel]
    rng_m = hits['t'][ray] + rng.normal(0, 0.1, len(ray))
    azn = az[ray] + np.deg2rad(rng.normal(0, 0.1, len(ray)))
    out = np.zeros(len(ray), PCD_DTYPE)
    out['x'], out['y'] = rng_m * np.cos(azn), rng_m * np.sin(azn)
    # Doppler: radial velocity along the line of sight u (sensor frame), relative and compensated.
    u_s = np.stack([np.cos(azn), np.sin(azn)], 1)
    g2s = radar2global[:2, :2].T
    v_obj = np.where(inst[:, None] >= 0, object_velocity[np.maximum(inst, 0)], 0.0) @ g2s.T
    v_sen = np.asarray(sensor_velocity, np.float64) @ g2s.T
    v_comp = (v_obj * u_s).sum(1) + rng.normal(0, 0.05, len(ray))
    v_rel = v_comp - (u_s @ v_sen)
    out['vx'], out['vy'] = v_rel * u_s[:, 0], v_rel * u_s[:, 1]
    out['vx_comp'], out['vy_comp'] = v_comp * u_s[:, 0], v_comp * u_s[:, 1]
    moving = np.linalg.norm(v_obj, axis=1) > 0.5
    out['dyn_prop'] = np.where(moving, 0, 1)                     # 0 moving, 1 stationary
    out['id'] = np.arange(len(ray))
    out['rcs'] = _RCS[cls] + rng.normal(0, 2.0, len(ray))
    out['is_quality_valid'] = 1
    out['ambig_state'] = 3                                      # unambiguous
    out['x_rms'] = out['y_rms'] = 3
    out['invalid_state'] = 0                                    # valid
    out['pdh0'] = 1                                             # false alarm probability < 25 %
    out['vx_rms'] = out['vy_rms'] = 3
    return out


def radar_pcd_bytes(points: np.ndarray) -> bytes:
    """A nuScenes radar ``.pcd`` file (PCD v0.7, binary) of ``points`` [M] of PCD_DTYPE.

    As in nuScenes, an empty measurement is stored as one point whose x is NaN, and the binary
    block ends with a newline (``RadarPointCloud.from_file`` expects bytes after the last point).
    """
    points = np.asarray(points, PCD_DTYPE)
    if not len(points):
        points = np.zeros(1, PCD_DTYPE)
        points['x'] = points['y'] = points['z'] = np.nan
    n = len(points)
    header = '\n'.join([
        '# .PCD v0.7 - Point Cloud Data file format', 'VERSION 0.7', 'FIELDS ' + ' '.join(PCD_FIELDS),
        'SIZE ' + ' '.join(str(PCD_DTYPE[f].itemsize) for f in PCD_FIELDS),
        'TYPE ' + ' '.join('F' if PCD_DTYPE[f].kind == 'f' else 'I' for f in PCD_FIELDS),
        'COUNT ' + ' '.join(['1'] * len(PCD_FIELDS)), f'WIDTH {n}', 'HEIGHT 1', 'VIEWPOINT 0 0 0 1 0 0 0',
        f'POINTS {n}', 'DATA binary']) + '\n'
    return header.encode() + points.tobytes() + b'\n'


__all__ = ['RADAR_RIG', 'RADAR_NAMES', 'PCD_DTYPE', 'radar2ego', 'radar_scan', 'radar_pcd_bytes']
