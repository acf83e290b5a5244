"""Everything one agent senses at one keyframe: 6 camera renders, a LiDAR sweep, Occ3D labels, boxes.

These are the functions tests use to re-render a scene from its seed:
``render_frame(build_world(seed, index, frames, agents), f, agent, ...)``.
"""
from __future__ import annotations

import numpy as np

from occ.constants import FREE
from occ.geometry import OccGrid

from .box_counts import count_points_in_boxes
from .labels import fill_vertical_gaps, occluder_counts, ray_visibility, voxel_codes, voxelize_points
from .nuscenes_db import quat, yaw_quat
from .objects import CATEGORY_TO_CLASS
from .primitives import Primitives
from .radar import RADAR_NAMES, radar2ego, radar_scan
from .sensors import camera_rig, lidar2ego, lidar_rays, lidar_scan, pixel_rays, render_camera, scan_from_returns
from .traffic import KEYFRAME_DT
from .world import World

DENSIFIED_CLASSES = (15, 16)  # manmade, vegetation: vertical gaps between LiDAR rings are closed
VERTICAL_GAP = 0.8           # metres: the largest vertical gap closed (two 0.4 m voxels; ~ the ring spacing at 35 m)
GROUND_CLASSES = (11, 14)     # driveable_surface .. terrain: the classes of the road plane
ANNOTATION_RADIUS = 60.0     # objects whose centre is this close (x-y) to the ego are annotated
# Occupied voxels the camera mask holds behind this many other occupied voxels (seen from the rig
# centre): the value at which this rule best reproduces the real Occ3D frame's own mask_camera on
# its own occupancy (stats.camera_mask_fit; data/README.md "Masks").
CAMERA_OCCLUDERS = 5
SWEEP_COLUMN_STRIDE = 2      # LiDAR sweeps between keyframes cast every 2nd column (cheap: ~17k points)
# Visibility rays: about one ray per voxel at 40 m (0.4 m voxels: every 2nd pixel of a 256-wide
# image is ~0.6 deg); coarser grids need proportionally fewer rays.
def _ray_strides(grid: OccGrid, image_size):
    k = max(1, int(round(grid.voxel_size / 0.4)))
    return max(1, int(round(2 * k * image_size[1] / 256))), 2 * k


# Random streams of one keyframe: cameras 0-5, LiDAR 10, radars 20-24, label observation scan 30
# (World.observed), LiDAR sweep j 100 + j, camera k of camera sweep j 200 + 10 j + k.
def frame_rng(world: World, f: int, agent: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([world.seed, world.index, 1000 + f, agent, stream])


def keyframe_lidar(world: World, f: int, agent: int) -> dict:
    """The keyframe LiDAR scan (``lidar_scan`` output) of ``agent`` at ``f``: the beams of
    ``World.keyframe_returns`` with the keyframe's sensor noise."""
    return scan_from_returns(world.keyframe_returns(f, agent), frame_rng(world, f, agent, 10))


def make_labels(world: World, f: int, agent: int, grid: OccGrid, image_size, lidar=None) -> dict:
    """Occ3D labels of agent ``agent`` at keyframe ``f``: ``semantics``, ``mask_lidar``, ``mask_camera``.

    Like Occ3D, the semantics are voxelised accumulated LiDAR points (``World.observed``): the static
    scene as the agent's LiDAR observes it over the whole scene, and every object this keyframe's
    sweep returns from with the points observed on it over the scene (in its own frame, placed at
    its pose now). ``lidar``: this keyframe's ``lidar_scan`` output (computed when not given).
    """
    e2g = world.ego2global(f, agent)
    if lidar is None:
        lidar = keyframe_lidar(world, f, agent)
    seen_now = np.unique(lidar['instance'][lidar['instance'] >= 0])
    pts, cls, _ = world.observed_objects_at(f, agent, seen_now)
    sem = label_semantics(e2g, grid, [world.observed(agent)['static']], (pts, cls))
    mask_lidar, mask_cam = sensor_masks(sem != FREE, grid, image_size, ground=is_ground(sem),
                                        upward_endpoint_only=world.upward_endpoint_only)
    return {'semantics': sem, 'mask_lidar': mask_lidar.astype(np.uint8), 'mask_camera': mask_cam.astype(np.uint8)}


def label_semantics(e2g: np.ndarray, grid: OccGrid, static: list, objects: tuple) -> np.ndarray:
    """Semantic grid uint8 [X, Y, Z] in the ego frame ``e2g`` (ego -> global [4, 4]) of sensed points.

    Args:
        static: list of (points [P, 3] global, sorted by x; cls [P]): the static scene accumulated
            over the scene (``World.observed``'s ``static``, one per vehicle).
        objects: (points [Q, 3] global, cls [Q]): the accumulated points of the labelled objects at
            their poses of this keyframe.
    """
    g2e = np.linalg.inv(e2g)
    # Only the x-slab of points that can land in the grid is transformed (the scene's points
    # spread over its whole drive).
    reach = float(np.linalg.norm(np.maximum(np.abs(grid.lower[:2]), np.abs(grid.upper[:2])))) + 1.0
    code = np.zeros(int(np.prod(grid.shape)), np.int64)
    for pts, cls in static:
        lo, hi = np.searchsorted(pts[:, 0], [e2g[0, 3] - reach, e2g[0, 3] + reach])
        voxel_codes(pts[lo:hi], cls[lo:hi], grid, g2e, out=code)
    sem = voxelize_points(objects[0], objects[1], grid, g2e, out=code)
    return fill_vertical_gaps(sem, DENSIFIED_CLASSES, max(1, int(np.floor(VERTICAL_GAP / grid.voxel_size + 1e-9))))


def in_camera_view(points: np.ndarray, rig: list) -> np.ndarray:
    """bool [P]: which points [P, 3] (ego frame) project inside some image of ``rig`` (``camera_rig``)."""
    inside = np.zeros(len(points), bool)
    for cam in rig:
        e2c = np.linalg.inv(cam['cam2ego'])
        pc = points @ e2c[:3, :3].T + e2c[:3, 3]
        uvw = pc @ cam['intrinsics'].T
        z = np.maximum(uvw[:, 2], 1e-6)
        inside |= (pc[:, 2] > 0.1) & (uvw[:, 0] / z >= 0) & (uvw[:, 0] / z < cam['width']) & \
            (uvw[:, 1] / z >= 0) & (uvw[:, 1] / z < cam['height'])
    return inside


def camera_occluders(occ: np.ndarray, grid: OccGrid, rig: list, candidates: np.ndarray) -> np.ndarray:
    """Occupied voxels in front of each candidate voxel (flat indices [M]) seen from the rig centre
    (int [M], ``labels.occluder_counts``): the camera mask holds an in-image occupied voxel when
    this is at most ``CAMERA_OCCLUDERS`` (Occ3D's released camera masks are porous; data/README.md
    "Masks")."""
    centre = np.mean([cam['cam2ego'][:3, 3] for cam in rig], 0)
    return occluder_counts(occ, grid, centre, candidates)


def is_ground(sem: np.ndarray) -> np.ndarray:
    """bool mask of the ground classes (driveable_surface, other_flat, sidewalk, terrain) of semantics."""
    return (sem >= GROUND_CLASSES[0]) & (sem <= GROUND_CLASSES[1])


def sensor_masks(occ: np.ndarray, grid: OccGrid, image_size, sensors2grid: np.ndarray | None = None,
                 ground: np.ndarray | None = None, upward_endpoint_only: bool = False) -> tuple:
    """Occ3D visibility of one vehicle's LiDAR and (nominal) camera rig in an occupancy grid.

    Args:
        occ: bool [X, Y, Z] occupied voxels of the grid (each holds an accumulated LiDAR return).
        sensors2grid: [4, 4] the vehicle's ego frame -> the grid's frame (None: the grid is the
            vehicle's own; a neighbour's sensors are placed in the ego's grid with it).
        ground: optional bool [X, Y, Z], the occupied voxels of the ground classes (``is_ground``).
        upward_endpoint_only: beams above the LiDAR's horizontal observe only the voxel they end in,
            no free space (data/README.md, "Statistics": what brings ``mask_camera`` to the real
            frame's fraction).
    Returns:
        (mask_lidar, mask_camera) bool [X, Y, Z]. LiDAR: every occupied voxel (a return of the
        scene's LiDAR lies in it) and the free voxels this keyframe's beams traverse before their
        first occupied voxel, except beams that end on the ground, which observe only that voxel
        (the real Occ3D frame has no observed free voxel in its two lowest levels). Camera: the
        free voxels the camera pixel rays traverse up to their first occupied voxel, the occupied
        voxels inside some image seen from the rig centre through at most ``CAMERA_OCCLUDERS`` other
        occupied voxels (``camera_occluders``), and the ground
        voxels inside some image (the real frame's camera mask holds all of its LiDAR-observed
        ground voxels), kept only where the LiDAR mask is (as in Occ3D).
    """
    centers = grid.centers()
    occ_idx = np.flatnonzero(occ)
    occ_pts = centers.reshape(-1, 3)[occ_idx]
    pix_stride, col_stride = _ray_strides(grid, image_size)
    l2e = lidar2ego() if sensors2grid is None else sensors2grid @ lidar2ego()
    d, _ = lidar_rays(column_stride=col_stride)
    if upward_endpoint_only:
        up = d[:, 2] > 0                         # above the LiDAR's own horizontal (its beams' elevation)
        mask_lidar = ray_visibility(occ, grid, l2e[:3, 3], d[~up] @ l2e[:3, :3].T, ground).ravel()
        mask_lidar |= ray_visibility(occ, grid, l2e[:3, 3], d[up] @ l2e[:3, :3].T, occ).ravel()
    else:
        mask_lidar = ray_visibility(occ, grid, l2e[:3, 3], d @ l2e[:3, :3].T, ground).ravel()
    mask_lidar[occ_idx] = True
    rig = camera_rig(image_size)
    if sensors2grid is not None:
        rig = [dict(cam, cam2ego=sensors2grid @ cam['cam2ego']) for cam in rig]
    origins, dirs = [], []
    for cam in rig:
        d = pixel_rays(cam['intrinsics'], cam['height'], cam['width'], pix_stride) @ cam['cam2ego'][:3, :3].T
        dirs.append(d)
        origins.append(np.broadcast_to(cam['cam2ego'][:3, 3], d.shape))
    in_view = in_camera_view(occ_pts, rig)
    mask_cam = ray_visibility(occ, grid, np.concatenate(origins), np.concatenate(dirs)).ravel()
    mask_cam[occ_idx[in_view]] |= camera_occluders(occ, grid, rig, occ_idx[in_view]) <= CAMERA_OCCLUDERS
    if ground is not None:
        mask_cam[occ_idx[in_view]] |= ground.ravel()[occ_idx[in_view]]
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
    lidar = keyframe_lidar(world, f, agent)
    labels = make_labels(world, f, agent, grid, image_size, lidar=lidar)
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
                    'translation': [float(x), float(y), float(world.base_height(x, y) + h / 2)],
                    'size': [float(w), float(l), float(h)],
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
