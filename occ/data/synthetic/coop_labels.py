"""Cooperative labels of a connected vehicle: what any vehicle of the group observes, in its grid.

For the ego ``agent`` at keyframe ``f`` of a world with several connected vehicles:

- ``semantics_coop``: the Occ3D semantics of ``make_labels`` with every vehicle's sensing pooled:
  the static scene every vehicle observes over its scene, and every object some vehicle's
  keyframe LiDAR returns from, with the points every vehicle observed on it over the scene
  (``World.observed``). Where only the ego observes, it equals ``semantics``.
- ``mask_camera_coop``: ``mask_camera`` united with every other vehicle's camera mask, each cast
  with that vehicle's own LiDAR beams and nominal camera rig placed at its pose in the ego's grid
  (``sensor_masks``: Occ3D's camera-visible-and-LiDAR-observed rule), through the cooperative
  occupancy minus that vehicle's own body (its sensors sit inside it). The ego's own body is not
  in its grid (as in Occ3D) and occludes nobody's rays.

A voxel in ``mask_camera_coop`` but not in ``mask_camera`` is *neighbour-only*: no camera of the
ego sees it, a neighbour's does; that region is where collaboration must show its gain.
"""
from __future__ import annotations

import numpy as np

from occ.constants import FREE
from occ.geometry import OccGrid

from .frame import is_ground, keyframe_lidar, label_semantics, sensor_masks
from .world import World


def cooperative_labels(world: World, f: int, agent: int, grid: OccGrid, image_size, mask_camera: np.ndarray,
                       lidars: dict | None = None) -> dict:
    """``semantics_coop`` and ``mask_camera_coop`` (uint8 [X, Y, Z]) of ``agent`` at keyframe ``f``.

    Args:
        mask_camera: the ego's own camera mask [X, Y, Z] (``make_labels``); it is part of the result.
        lidars: optional cache ``{(f, k): lidar_scan output}`` of keyframe scans (filled here), so a
            group of vehicles casts each scan once.
    """
    n = len(world.agents)
    lidars = {} if lidars is None else lidars
    scans = []
    for k in range(n):
        if (f, k) not in lidars:
            lidars[(f, k)] = keyframe_lidar(world, f, k)
        scans.append(lidars[(f, k)])
    e2g = world.ego2global(f, agent)
    g2e = np.linalg.inv(e2g)
    static = [world.observed(k)['static'] for k in range(n)]
    seen_now = np.unique(np.concatenate([s['instance'][s['instance'] >= 0] for s in scans]))
    parts = [world.observed_objects_at(f, k, seen_now) for k in range(n)]
    pts, cls, inst = (np.concatenate([p[i] for p in parts]) for i in range(3))
    sem = label_semantics(e2g, grid, static, (pts, cls))
    occupancy, placements, ground = [], [], []
    for k in range(n):
        if k == agent:
            continue
        own_body = inst == world.agents[k]
        sem_k = sem
        if own_body.any():
            # the neighbour's cameras sit inside its body: its rays are cast through the rest
            sem_k = label_semantics(e2g, grid, static, (pts[~own_body], cls[~own_body]))
        occupancy.append(sem_k != FREE)
        ground.append(is_ground(sem_k))
        placements.append(g2e @ world.ego2global(f, k))
    coop = cooperative_camera_mask(mask_camera, occupancy, placements, grid, image_size, ground,
                                   upward_endpoint_only=world.upward_endpoint_only)
    return {'semantics_coop': sem, 'mask_camera_coop': coop.astype(np.uint8)}


def cooperative_camera_mask(mask_camera: np.ndarray, occupancy: list, placements: list, grid: OccGrid,
                            image_size, ground: list | None = None, upward_endpoint_only: bool = False) -> np.ndarray:
    """``mask_camera`` united with each neighbour's Occ3D camera mask in the ego's grid.

    Args:
        mask_camera: the ego's own camera mask [X, Y, Z].
        occupancy: per neighbour, bool [X, Y, Z]: what its rays are cast through (the ego grid's
            occupancy without that neighbour's own body).
        placements: per neighbour, [4, 4] its ego frame -> the ego's frame.
        ground: optional, per neighbour, bool [X, Y, Z]: the ground-class voxels of its occupancy
            (``sensor_masks``' ``ground``).
        upward_endpoint_only: ``sensor_masks``' LiDAR rule (the world's).
    Returns:
        bool [X, Y, Z].
    """
    coop = np.asarray(mask_camera, bool).copy()
    ground = [None] * len(occupancy) if ground is None else ground
    for occ_k, k2e, g_k in zip(occupancy, placements, ground):
        coop |= sensor_masks(np.asarray(occ_k, bool), grid, image_size, np.asarray(k2e, np.float64), g_k,
                             upward_endpoint_only=upward_endpoint_only)[1]
    return coop
