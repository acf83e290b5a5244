"""Everything one agent senses at one keyframe: 6 camera renders, a LiDAR sweep, Occ3D labels, boxes.

These are the functions tests use to re-render a scene from its seed:
``render_frame(build_world(seed, index, frames, agents), f, agent, ...)``.
"""
from __future__ import annotations

import numpy as np

from occ.constants import FREE
from occ.geometry import OccGrid

from .box_counts import count_points_in_boxes
from .labels import ray_visibility, voxel_visibility, voxelize
from .nuscenes_db import quat, yaw_quat
from .objects import CATEGORY_TO_CLASS
from .primitives import Primitives
from .radar import RADAR_NAMES, radar2ego, radar_scan
from .sensors import camera_rig, lidar2ego, lidar_rays, lidar_scan, pixel_rays, render_camera
from .traffic import KEYFRAME_DT
from .world import SEEN_RES, World

ANNOTATION_RADIUS = 60.0     # objects whose centre is this close (x-y) to the ego are annotated
SWEEP_COLUMN_STRIDE = 2      # LiDAR sweeps between keyframes cast every 2nd column (cheap: ~17k points)
# Visibility rays: about one ray per voxel at 40 m (0.4 m voxels: every 2nd pixel of a 256-wide
# image is ~0.6 deg); coarser grids need proportionally fewer rays.
def _ray_strides(grid: OccGrid, image_size):
    k = max(1, int(round(grid.voxel_size / 0.4)))
    return max(1, int(round(2 * k * image_size[1] / 256))), 2 * k


# Random streams of one keyframe: cameras 0-5, LiDAR 10, radars 20-24, LiDAR sweep j 100 + j,
# camera k of camera sweep j 200 + 10 j + k.
def frame_rng(world: World, f: int, agent: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([world.seed, world.index, 1000 + f, agent, stream])


def to_ego(prims: Primitives, ego2global: np.ndarray) -> Primitives:
    """Primitives from the global frame into the (planar) ego frame."""
    yaw = np.arctan2(ego2global[1, 0], ego2global[0, 0])
    x, y = ego2global[0, 3], ego2global[1, 3]
    c, s = np.cos(-yaw), np.sin(-yaw)
    q = prims.center[:, :2] - (x, y)
    cen = prims.center.copy()
    cen[:, 0] = c * q[:, 0] - s * q[:, 1]
    cen[:, 1] = s * q[:, 0] + c * q[:, 1]
    return Primitives(prims.kind, cen, prims.size, prims.yaw - yaw, prims.cls, prims.inst, prims.albedo, prims.tex)


def make_labels(world: World, f: int, agent: int, grid: OccGrid, image_size, prims=None, lidar=None) -> dict:
    """Occ3D labels of agent ``agent`` at keyframe ``f``: ``semantics``, ``mask_lidar``, ``mask_camera``.

    Like Occ3D (which accumulates LiDAR points in annotation boxes), objects are labelled only
    when the LiDAR sweep of this keyframe returns from them, and static stuff (ground, manmade,
    vegetation) only where some keyframe's LiDAR observes it (``World.ground_seen``) or this
    sweep has a point. ``lidar``: this keyframe's ``lidar_scan`` output (computed when not given).
    """
    e2g = world.ego2global(f, agent)
    if prims is None:
        prims = world.prims_at(f, exclude=[world.agents[agent]])
    if lidar is None:
        lidar = lidar_scan(prims, world.town, e2g @ lidar2ego(), frame_rng(world, f, agent, 10))
    observed = np.unique(lidar['instance'][lidar['instance'] >= 0])
    l2e = lidar2ego()
    pts = lidar['points'][:, :3] @ l2e[:3, :3].T + l2e[:3, 3]
    sem = label_semantics(world, e2g, grid, prims, observed, world.ground_seen(agent), pts)
    mask_lidar, mask_cam = sensor_masks(sem != FREE, grid, image_size)
    return {'semantics': sem, 'mask_lidar': mask_lidar.astype(np.uint8), 'mask_camera': mask_cam.astype(np.uint8)}


def label_semantics(world: World, e2g: np.ndarray, grid: OccGrid, prims: Primitives, observed: np.ndarray,
                    seen: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Semantic grid uint8 [X, Y, Z] in the ego frame ``e2g`` (ego -> global [4, 4]).

    ``prims`` (global frame): what may be labelled; objects only when their instance is in
    ``observed`` (returned a LiDAR point). ``seen``: ``World.ground_seen`` raster of the static
    stuff some keyframe's LiDAR observes; ``points`` [P, 3] (ego frame): this keyframe's LiDAR
    points, which also make static stuff in their voxel labelled.
    """
    prims = prims.subset(np.nonzero((prims.inst < 0) | np.isin(prims.inst, observed))[0])
    local = to_ego(prims, e2g)
    reach = np.max(np.abs(grid.pc_range)) * 1.5 + 10
    local = local.subset(np.nonzero(np.abs(local.center[:, :2]).max(1) - local.radius < reach)[0])
    c, s = e2g[0, 0], e2g[1, 0]

    def ground_class(x, y):
        return world.town.ground_class(c * x - s * y + e2g[0, 3], s * x + c * y + e2g[1, 3])

    sem = voxelize(local, ground_class, grid)
    # Static stuff in columns no keyframe's LiDAR observes, and without a point of this sweep, is
    # unlabelled (free), as in Occ3D.
    centers = grid.centers()
    gx = c * centers[..., 0] - s * centers[..., 1] + e2g[0, 3]
    gy = s * centers[..., 0] + c * centers[..., 1] + e2g[1, 3]
    i = np.clip(np.floor(gx / SEEN_RES).astype(np.int64), 0, seen.shape[0] - 1)
    j = np.clip(np.floor(gy / SEEN_RES).astype(np.int64), 0, seen.shape[1] - 1)
    vidx, vin = grid.points_to_index(points)
    has_point = np.zeros(sem.shape, bool)
    has_point[tuple(vidx[vin].T)] = True
    sem[(sem >= 11) & (sem <= 16) & ~seen[i, j] & ~has_point] = FREE
    return sem


def sensor_masks(occ: np.ndarray, grid: OccGrid, image_size, sensors2grid: np.ndarray | None = None) -> tuple:
    """Occ3D visibility of one vehicle's LiDAR and (nominal) camera rig in an occupancy grid.

    Args:
        occ: bool [X, Y, Z] occupied voxels of the grid.
        sensors2grid: [4, 4] the vehicle's ego frame -> the grid's frame (None: the grid is the
            vehicle's own; a neighbour's sensors are placed in the ego's grid with it).
    Returns:
        (mask_lidar, mask_camera) bool [X*Y*Z]: LiDAR: free space along the beams up to their first
        occupied voxel, plus every occupied voxel in the beams' field of view (-30.7..+10.7 deg,
        70 m) with a clear line of sight; camera: the same for the camera rays and the occupied
        voxels inside some image, kept only where the LiDAR mask is (as in Occ3D).
    """
    centers = grid.centers()
    occ_idx = np.flatnonzero(occ)
    occ_pts = centers.reshape(-1, 3)[occ_idx]
    pix_stride, col_stride = _ray_strides(grid, image_size)
    l2e = lidar2ego() if sensors2grid is None else sensors2grid @ lidar2ego()
    d, _ = lidar_rays(column_stride=col_stride)
    mask_lidar = ray_visibility(occ, grid, l2e[:3, 3], d @ l2e[:3, :3].T).ravel()
    rel = occ_pts - l2e[:3, 3]
    rng_xy = np.linalg.norm(rel[:, :2], axis=1)
    elev = np.degrees(np.arctan2(rel[:, 2], rng_xy))
    cand = (elev > -31.5) & (elev < 11.5) & (np.linalg.norm(rel, axis=1) < 70)
    mask_lidar[occ_idx[cand]] |= voxel_visibility(occ, grid, l2e[:3, 3], occ_idx[cand])
    # Occlusion of the in-image occupied voxels is tested from the rig centre.
    rig = camera_rig(image_size)
    if sensors2grid is not None:
        rig = [dict(cam, cam2ego=sensors2grid @ cam['cam2ego']) for cam in rig]
    in_view = np.zeros(len(occ_idx), bool)
    origins, dirs = [], []
    for cam in rig:
        d = pixel_rays(cam['intrinsics'], cam['height'], cam['width'], pix_stride) @ cam['cam2ego'][:3, :3].T
        dirs.append(d)
        origins.append(np.broadcast_to(cam['cam2ego'][:3, 3], d.shape))
        e2c = np.linalg.inv(cam['cam2ego'])
        pc = occ_pts @ e2c[:3, :3].T + e2c[:3, 3]
        uvw = pc @ cam['intrinsics'].T
        z = np.maximum(uvw[:, 2], 1e-6)
        in_view |= (pc[:, 2] > 0.1) & (uvw[:, 0] / z >= 0) & (uvw[:, 0] / z < cam['width']) & \
            (uvw[:, 1] / z >= 0) & (uvw[:, 1] / z < cam['height'])
    mask_cam = ray_visibility(occ, grid, np.concatenate(origins), np.concatenate(dirs)).ravel()
    rig_centre = np.mean([cam['cam2ego'][:3, 3] for cam in rig], 0)
    mask_cam[occ_idx[in_view]] |= voxel_visibility(occ, grid, rig_centre, occ_idx[in_view])
    mask_cam &= mask_lidar
    return mask_lidar.reshape(occ.shape), mask_cam.reshape(occ.shape)


def render_frame(world: World, f: int, agent: int, image_size, grid: OccGrid, radar: bool = True) -> dict:
    """All sensor data of one agent at one keyframe.

    Returns dict: ``ego2global`` [4,4]; ``cams`` list (CAMERA_NAMES order) of dicts from
    ``render_camera`` plus ``intrinsics``, ``cam2ego`` (the agent's tilted rig); ``lidar`` from
    ``lidar_scan``; ``radar`` channel -> PCD_DTYPE returns (empty dict without ``radar``);
    ``labels`` from ``make_labels``; ``boxes`` list of annotation dicts whose ``num_lidar_pts`` /
    ``num_radar_pts`` count the stored points inside each box the devkit's way.
    """
    e2g = world.ego2global(f, agent)
    prims = world.prims_at(f, exclude=[world.agents[agent]])
    cams = []
    for k, cam in enumerate(camera_rig(image_size, world.camera_tilt(agent))):
        r = render_camera(prims, world.town, e2g @ cam['cam2ego'], cam['intrinsics'], cam['height'], cam['width'],
                          frame_rng(world, f, agent, k))
        r.update(cam)
        cams.append(r)
    lidar = lidar_scan(prims, world.town, e2g @ lidar2ego(), frame_rng(world, f, agent, 10))
    labels = make_labels(world, f, agent, grid, image_size, prims, lidar)
    returns = radar_returns(world, f * KEYFRAME_DT, agent, prims, [frame_rng(world, f, agent, 20 + i)
                                                                  for i in range(len(RADAR_NAMES))]) if radar else {}
    boxes = annotations(world, f, agent)
    pose_rec = pose_record(e2g)
    for key, clouds in (('num_lidar_pts', {'LIDAR_TOP': (lidar['points'], lidar2ego())}),
                        ('num_radar_pts', {n: (np.stack([returns[n]['x'], returns[n]['y'], returns[n]['z']], 1),
                                               radar2ego(n)) for n in returns})):
        total = np.zeros(len(boxes), np.int64)
        for pts, s2e in clouds.values():
            total += count_points_in_boxes(pts, boxes, pose_record(s2e), pose_rec)
        for b, n in zip(boxes, total):
            b[key] = int(n)
    return {'ego2global': e2g, 'cams': cams, 'lidar': lidar, 'radar': returns, 'labels': labels, 'boxes': boxes}


def radar_returns(world: World, t: float, agent: int, prims: Primitives, rngs) -> dict:
    """Radar channel -> returns (PCD_DTYPE, sensor frame) of agent ``agent`` at time ``t`` seconds."""
    e2g = world.ego2global_at(t, agent)
    vel = world.velocities_at(t)
    ego_vel = vel[world.agents[agent]]        # the vehicle's turning is neglected in the sensor velocity
    return {name: radar_scan(prims, e2g @ radar2ego(name), vel, ego_vel, rng) for name, rng in zip(RADAR_NAMES, rngs)}


def lidar_sweep(world: World, t: float, agent: int, rng: np.random.Generator,
                column_stride: int = SWEEP_COLUMN_STRIDE) -> dict:
    """A LiDAR sweep at time ``t`` seconds (between keyframes): ``ego2global`` and ``points`` (the
    keyframe format; every ``column_stride``-th column of the 1084, all 32 rings)."""
    poses = world.poses_at(t)
    e2g = world.ego2global_at(t, agent, poses)
    prims = world.prims_at_time(t, [world.agents[agent]], poses)
    return {'ego2global': e2g, 'points': lidar_scan(prims, world.town, e2g @ lidar2ego(), rng, column_stride)['points']}


def camera_sweep(world: World, t: float, agent: int, image_size, rngs) -> dict:
    """The 6 camera images (uint8 RGB, CAMERA_NAMES order) at time ``t`` seconds, with ``ego2global``."""
    poses = world.poses_at(t)
    e2g = world.ego2global_at(t, agent, poses)
    prims = world.prims_at_time(t, [world.agents[agent]], poses)
    rgb = [render_camera(prims, world.town, e2g @ cam['cam2ego'], cam['intrinsics'], cam['height'], cam['width'],
                         rng)['rgb'] for cam, rng in zip(camera_rig(image_size, world.camera_tilt(agent)), rngs)]
    return {'ego2global': e2g, 'rgb': rgb}


def pose_record(m: np.ndarray) -> dict:
    """nuScenes ``translation`` / ``rotation`` of a rigid transform [4, 4] (as the tables store it)."""
    return {'translation': [float(v) for v in m[:3, 3]], 'rotation': quat(m[:3, :3])}


def annotations(world: World, f: int, agent: int) -> list:
    """Annotation boxes (global frame) of objects near the agent at keyframe ``f``, with the
    sample_annotation fields ``translation``, ``size`` (w, l, h) and ``rotation``."""
    ex, ey, _ = world.ego_pose(f, agent)
    out = []
    for n, obj in enumerate(world.objects):
        if n == world.agents[agent]:
            continue
        x, y, yaw = world.pose[f, n]
        if np.hypot(x - ex, y - ey) > ANNOTATION_RADIUS:
            continue
        l, w, h = obj.size
        out.append({'object': n, 'category': obj.category, 'cls': CATEGORY_TO_CLASS[obj.category],
                    'translation': [float(x), float(y), float(h / 2)], 'size': [float(w), float(l), float(h)],
                    'rotation': yaw_quat(yaw), 'yaw': float(yaw), 'attribute': _attribute(world, f, n)})
    return out


def _attribute(world: World, f: int, n: int) -> str | None:
    cat, motion, v = world.objects[n].category, world.motion[n], world.speed[f, n]
    if cat in ('vehicle.bicycle', 'vehicle.motorcycle'):
        return 'cycle.with_rider' if motion in ('vehicle', 'agent') else 'cycle.without_rider'
    if cat.startswith('vehicle'):
        if motion == 'parked':
            return 'vehicle.parked'
        return 'vehicle.moving' if v > 0.3 else 'vehicle.stopped'
    if cat.startswith('human'):
        return 'pedestrian.moving' if v > 0.1 else 'pedestrian.standing'
    return None
