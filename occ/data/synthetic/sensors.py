"""The nuScenes-like sensor rig and its renderers (6 pinhole cameras, a 32-beam LiDAR).

Camera frame: x right, y down, z forward (OpenCV / nuScenes). Extrinsics and
intrinsics follow the real nuScenes rig (1600x900, fx ~ 1266; CAM_BACK wider,
fx ~ 800), scaled to the rendered image size. LIDAR_TOP is mounted like in
nuScenes: 1.84 m up, its x axis pointing to the ego's right.
"""
from __future__ import annotations

import functools

import numpy as np

from occ.constants import CAMERA_NAMES

from . import town as T
from .appearance import shade
from .primitives import CYLINDER, Primitives, exit_distance
from .raycast import GROUND, cast, cast_pinhole, grid_tiles

# name -> (translation in ego frame [m], yaw [deg] about ego z, fx at 1600 px width)
RIG = {
    'CAM_FRONT_LEFT': ((1.52, 0.49, 1.51), 55.0, 1266.0),
    'CAM_FRONT': ((1.70, 0.02, 1.51), 0.0, 1266.0),
    'CAM_FRONT_RIGHT': ((1.55, -0.49, 1.50), -55.0, 1266.0),
    'CAM_BACK_LEFT': ((1.04, 0.81, 1.56), 110.0, 1266.0),
    'CAM_BACK': ((0.03, 0.01, 1.57), 180.0, 800.0),
    'CAM_BACK_RIGHT': ((1.05, -0.48, 1.56), -110.0, 1266.0),
}
NATIVE_W, NATIVE_H = 1600, 900
# camera axes (x right, y down, z forward) expressed in a forward-looking ego orientation
_CAM_BASE = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])

LIDAR_TRANSLATION = (0.943713, 0.0, 1.84023)
LIDAR_YAW = -np.pi / 2
LIDAR_BEAMS = np.deg2rad(np.linspace(-30.67, 10.67, 32))
LIDAR_COLUMNS = 1084
LIDAR_RANGE = 70.0
CAMERA_RANGE = 400.0       # the ground is visible to the horizon; objects are culled at OBJECT_RANGE
OBJECT_RANGE = 150.0
SKY = 17                   # semantics2d value of sky pixels (no surface)
VEGETATION = 16
FOLIAGE_DEPTH = 0.8        # metres: mean depth at which a LiDAR beam entering foliage returns (exponential)

# LiDAR reflectivity per Occ3D class (paint on the road is brighter, see lidar_scan).
_REFLECT = np.array([0.3, 0.6, 0.3, 0.45, 0.5, 0.45, 0.35, 0.25, 0.8, 0.45, 0.45,
                     0.12, 0.2, 0.25, 0.3, 0.35, 0.3, 0.0])


def rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def camera_rig(image_size, tilt=None) -> list:
    """Per camera (CAMERA_NAMES order): dict name, intrinsics [3,3], cam2ego [4,4], height, width.

    ``tilt``: optional (pitch, roll) [6, 2] in radians per camera (``World.camera_tilt``): rotations
    about the camera's x axis (positive turns the optical axis up) and its optical axis, applied
    after the nominal mounting. None = the nominal level rig (labels use it, see make_labels).
    """
    h, w = image_size
    sx, sy = w / NATIVE_W, h / NATIVE_H
    out = []
    for name in CAMERA_NAMES:
        t, yaw, fx = RIG[name]
        k = np.array([[fx * sx, 0, NATIVE_W / 2 * sx], [0, fx * sy, NATIVE_H / 2 * sy], [0, 0, 1]])
        m = np.eye(4)
        m[:3, :3] = rot_z(np.deg2rad(yaw)) @ _CAM_BASE
        if tilt is not None:
            pitch, roll = tilt[len(out)]
            m[:3, :3] = m[:3, :3] @ _rot_x(pitch) @ rot_z(roll)
        m[:3, 3] = t
        out.append({'name': name, 'intrinsics': k, 'cam2ego': m, 'height': h, 'width': w})
    return out


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def lidar2ego() -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rot_z(LIDAR_YAW)
    m[:3, 3] = LIDAR_TRANSLATION
    return m


def pixel_rays(intrinsics: np.ndarray, h: int, w: int, stride: int = 1) -> np.ndarray:
    """Unit ray directions [h/stride * w/stride, 3] through pixel centres, camera frame, row-major.

    Cached per intrinsics and size (every keyframe of a rig uses the same rays); read-only.
    """
    return _pixel_rays(np.asarray(intrinsics, np.float64).tobytes(), h, w, stride)


@functools.lru_cache(maxsize=64)
def _pixel_rays(intrinsics: bytes, h: int, w: int, stride: int) -> np.ndarray:
    k = np.frombuffer(intrinsics, np.float64).reshape(3, 3)
    v, u = np.meshgrid(np.arange(0, h, stride) + 0.5, np.arange(0, w, stride) + 0.5, indexing='ij')
    d = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], 1) @ np.linalg.inv(k).T
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    d.setflags(write=False)
    return d


@functools.lru_cache(maxsize=4)
def lidar_rays(column_stride: int = 1):
    """Unit directions [32 * C, 3] in the LiDAR frame (row = beam, lowest first) and ring ids.

    Cached (every sweep uses the same rays); the arrays are read-only.
    """
    az = np.linspace(-np.pi, np.pi, LIDAR_COLUMNS, endpoint=False)[::column_stride]
    el, a = np.meshgrid(LIDAR_BEAMS, az, indexing='ij')
    d = np.stack([np.cos(el) * np.cos(a), np.cos(el) * np.sin(a), np.sin(el)], -1).reshape(-1, 3)
    ring = np.repeat(np.arange(len(LIDAR_BEAMS)), len(az))
    d.setflags(write=False)
    ring.setflags(write=False)
    return d, ring


@functools.lru_cache(maxsize=4)
def _lidar_tiles(column_stride: int = 1) -> np.ndarray:
    # Tiles of 4 beams x ~6 degrees of azimuth (16 columns at full resolution).
    cols = len(range(0, LIDAR_COLUMNS, column_stride))
    tiles = grid_tiles(len(LIDAR_BEAMS), cols, 4, max(4, 16 // column_stride))
    tiles.setflags(write=False)
    return tiles


def _near(prims: Primitives, origin, radius) -> Primitives:
    d = np.linalg.norm(prims.center[:, :2] - origin[:2], axis=1) - prims.radius
    return prims.subset(np.nonzero(d < radius)[0])


def render_camera(prims: Primitives, town: T.Town, cam2global: np.ndarray, intrinsics: np.ndarray,
                  h: int, w: int, rng: np.random.Generator | None = None) -> dict:
    """Ray-cast one camera image.

    Args:
        prims: world primitives, global frame. cam2global: [4, 4]. intrinsics: [3, 3].
        rng: adds sensor noise when given (deterministic for a seeded generator).
    Returns:
        dict ``rgb`` uint8 [h, w, 3], ``depth`` float32 [h, w] (z-depth in metres, 0 = sky),
        ``semantics`` uint8 [h, w] (Occ3D class, SKY = 17 for no surface), ``instance``
        int32 [h, w] (object index, -1 = scenery, ground or sky).
    """
    origin = cam2global[:3, 3]
    near = _near(prims, origin, OBJECT_RANGE)
    d_cam = pixel_rays(intrinsics, h, w)
    dirs = d_cam @ cam2global[:3, :3].T
    hits = cast_pinhole(near, cam2global, intrinsics, h, w, dirs, CAMERA_RANGE, ground=town)
    rgb = shade(hits, near, town, dirs)
    if rng is not None:
        rgb = rgb * rng.uniform(0.93, 1.07) + rng.normal(0, 0.018, rgb.shape)
    rgb = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(h, w, 3)
    sem = _hit_classes(hits, near, town)
    depth = np.where(np.isfinite(hits['t']), hits['t'] * d_cam[:, 2], 0).astype(np.float32)
    inst = np.where(hits['hit'] >= 0, near.inst[np.maximum(hits['hit'], 0)], -1).astype(np.int32)
    return {'rgb': rgb, 'depth': depth.reshape(h, w), 'semantics': sem.reshape(h, w),
            'instance': inst.reshape(h, w)}


def _hit_classes(hits, prims, town):
    hit = hits['hit']
    sem = np.full(len(hit), SKY, np.uint8)
    o = hit >= 0
    sem[o] = prims.cls[hit[o]]
    g = hit == GROUND
    sem[g] = town.ground_class(hits['point'][g, 0], hits['point'][g, 1])
    return sem


def lidar_returns(prims: Primitives, town: T.Town, lidar2global: np.ndarray, column_stride: int = 1) -> dict:
    """The noise-free returns of one LiDAR sweep's rays (``column_stride`` > 1: every n-th column).

    Returns dict, per ray of ``lidar_rays(column_stride)``: ``t`` float [R] (metres, inf: no
    return), ``semantics`` uint8 [R], ``instance`` int32 [R] (object index, -1 = scenery/ground),
    ``cos_incidence`` float [R], ``paint`` bool [R] (road paint: bright); and, for this cast
    only, ``hit`` [R] (index into ``near``, GROUND or MISS), ``near`` (the primitives in range)
    and ``dirs`` [R, 3] (global directions).
    """
    origin = lidar2global[:3, 3]
    near = _near(prims, origin, LIDAR_RANGE + 10)
    d_l, _ = lidar_rays(column_stride)
    dirs = d_l @ lidar2global[:3, :3].T
    hits = cast(near, origin, dirs, _lidar_tiles(column_stride), LIDAR_RANGE, ground=town)
    hit = hits['hit']
    paint = np.zeros(len(hit), bool)
    g = np.nonzero(hit == GROUND)[0]
    paint[g] = np.isin(town.ground_codes(hits['point'][g, 0], hits['point'][g, 1]),
                       [T.G_PAINT_W, T.G_PAINT_Y, T.G_CROSSWALK, T.G_LOT_PAINT])
    return {'t': hits['t'], 'semantics': _hit_classes(hits, near, town),
            'instance': np.where(hit >= 0, near.inst[np.maximum(hit, 0)], -1).astype(np.int32),
            'cos_incidence': np.abs((hits['normal'] * dirs).sum(1)), 'paint': paint,
            'hit': hit, 'near': near, 'dirs': dirs}


def lidar_scan(prims: Primitives, town: T.Town, lidar2global: np.ndarray,
               rng: np.random.Generator | None = None, column_stride: int = 1) -> dict:
    """Ray-cast one LiDAR sweep (``column_stride`` > 1: every n-th column only, a cheaper sweep).

    Returns dict ``points`` float32 [P, 5] (x, y, z, intensity 0..255, ring) in the
    LiDAR frame, ``instance`` int32 [P] (object index, -1 = scenery/ground) and
    ``semantics`` uint8 [P] (Occ3D class of the surface hit).
    """
    return scan_from_returns(lidar_returns(prims, town, lidar2global, column_stride), rng, column_stride)


def scan_from_returns(returns: dict, rng: np.random.Generator | None = None, column_stride: int = 1) -> dict:
    """``lidar_scan``'s output from already cast ``lidar_returns`` (e.g. ``World.keyframe_returns``):
    the sensor's dropout, range and intensity noise drawn from ``rng`` (none when None)."""
    d_l, ring = lidar_rays(column_stride)
    ok = np.isfinite(returns['t'])
    if rng is not None:
        ok &= rng.random(len(ok)) > 0.03                       # dropped returns
    t = returns['t'][ok]
    if rng is not None:
        t = t + rng.normal(0, 0.015, len(t))
    sem = returns['semantics'][ok]
    refl = np.where(returns['paint'][ok], 0.85, _REFLECT[sem])
    inten = refl * (0.3 + 0.7 * returns['cos_incidence'][ok]) * 255
    if rng is not None:
        inten = inten + rng.normal(0, 3, len(inten))
    pts = d_l[ok] * t[:, None]
    out = np.concatenate([pts, np.clip(inten, 0, 255)[:, None], ring[ok][:, None]], 1).astype(np.float32)
    return {'points': out, 'instance': returns['instance'][ok], 'semantics': sem}


def observation_scan(returns: dict, lidar2global: np.ndarray, rng: np.random.Generator) -> dict:
    """The surface points one keyframe's LiDAR observes, for Occ3D-style label accumulation.

    The keyframe beams without noise or dropout, except that foliage is porous: a beam entering
    a tree crown or hedge (vegetation boxes and ellipsoids; trunks are solid) returns at an
    exponentially distributed depth (mean FOLIAGE_DEPTH) inside it, at most at its far side, so
    crowns are observed in depth as real LiDAR observes them (the stored sweeps keep crowns solid).
    ``returns``: the keyframe's full ``lidar_returns`` (``near`` and ``dirs`` included).

    Returns dict ``points`` float64 [P, 3] global, ``semantics`` uint8 [P], ``instance`` int32 [P]
    (object index, -1 = scenery/ground).
    """
    origin = lidar2global[:3, 3]
    near = returns['near']
    ok = np.isfinite(returns['t'])
    hit, t, dirs = returns['hit'][ok], returns['t'][ok], returns['dirs'][ok]
    sem = returns['semantics'][ok]
    foliage = np.nonzero((hit >= 0) & (sem == VEGETATION))[0]
    foliage = foliage[near.kind[hit[foliage]] != CYLINDER]
    if len(foliage):
        far = exit_distance(near, hit[foliage], origin, dirs[foliage])
        depth = rng.exponential(FOLIAGE_DEPTH, len(foliage))
        t = t.copy()
        t[foliage] = np.minimum(t[foliage] + depth, np.maximum(far - 1e-3, t[foliage]))
    return {'points': origin + t[:, None] * dirs, 'semantics': sem, 'instance': returns['instance'][ok]}


__all__ = ['RIG', 'SKY', 'camera_rig', 'lidar2ego', 'render_camera', 'lidar_returns', 'lidar_scan', 'scan_from_returns',
           'observation_scan', 'pixel_rays', 'lidar_rays']
