"""Evaluation regions beyond the visibility masks: occluded voxels and moving objects.

Temporal memory should help where the current frame cannot see (occluded) and
where things move; these masks select those voxels so the usual Occ3D
histogram (``occ.evaluation.confusion``) can be restricted to them.

- ``occluded_mask``: occupied in GT but outside the current ``mask_camera``;
- ``history_only_mask``: seen in an aligned past frame, not in the current one;
- ``neighbour_only_mask``: seen by a connected vehicle's cameras, not by the ego's
  (cooperative worlds, ``mask_camera_coop``);
- ``moving_instances`` + ``box_mask``: voxel centres inside the (grown) boxes of
  instances whose *global* centre moves faster than a threshold between
  neighbouring keyframes (ego motion does not count).
"""
from __future__ import annotations

import numpy as np

from occ.constants import FREE


def occluded_mask(semantics: np.ndarray, mask_camera: np.ndarray) -> np.ndarray:
    """bool [X, Y, Z]: GT-occupied voxels (class < free) the camera does not see this frame.

    Args:
        semantics: uint8 [X, Y, Z] GT classes (17 = free, 255 = ignored).
        mask_camera: [X, Y, Z] camera visibility (any dtype; non-zero = visible).
    """
    if semantics.shape != mask_camera.shape:
        raise ValueError(f'occluded_mask: semantics {semantics.shape} vs mask_camera {mask_camera.shape}')
    return (semantics < FREE) & ~mask_camera.astype(bool)


def moving_instances(infos: list, min_speed: float) -> dict:
    """sample token -> set of instance tokens moving faster than ``min_speed`` m/s.

    Speed from the global box centre at this keyframe and the previous /
    next keyframe of the same scene (whichever exist; the larger counts).
    Boxes are in the ego frame of their sample (``info['boxes']['center']``, [N, 3])
    and are moved to the world with ``info['ego2global']`` (4x4).
    """
    by_token = {i['token']: i for i in infos}

    def centres(info):
        b = info['boxes']
        e = np.asarray(info['ego2global'], np.float64)
        c = np.asarray(b['center'], np.float64).reshape(-1, 3) @ e[:3, :3].T + e[:3, 3]
        return dict(zip(list(b['instance_token']), c))

    out = {}
    for info in infos:
        cur = centres(info)
        speed = {k: 0.0 for k in cur}
        for nb in (info.get('prev'), info.get('next')):
            other = by_token.get(nb) if nb else None
            if other is None:
                continue
            dt = abs(other['timestamp'] - info['timestamp']) * 1e-6
            if dt <= 0:
                continue
            oc = centres(other)
            for k, c in cur.items():
                if k in oc:
                    speed[k] = max(speed[k], float(np.linalg.norm(oc[k] - c)) / dt)
        out[info['token']] = {k for k, v in speed.items() if v > min_speed}
    return out


def box_mask(info: dict, keep: set, centers: np.ndarray, margin: float) -> np.ndarray:
    """bool [X, Y, Z]: voxel centres inside any kept box of ``info`` (grown by ``margin`` m).

    Args:
        info: sample info with ``boxes`` (``center`` [N, 3], ``size`` [N, 3] as (w, l, h),
            ``yaw`` [N], ``instance_token`` [N]) in the ego frame.
        keep: instance tokens whose boxes count.
        centers: float [X, Y, Z, 3] voxel centres in the same ego frame.
    """
    mask = np.zeros(centers.shape[:3], bool)
    b = info['boxes']
    for n, tok in enumerate(b['instance_token']):
        if tok not in keep:
            continue
        c = np.asarray(b['center'][n], np.float64)
        w, length, h = (float(v) for v in b['size'][n])
        yaw = float(b['yaw'][n])
        d = centers - c
        cy, sy = np.cos(yaw), np.sin(yaw)
        lx = d[..., 0] * cy + d[..., 1] * sy        # along the box heading
        ly = -d[..., 0] * sy + d[..., 1] * cy
        mask |= ((np.abs(lx) <= length / 2 + margin) & (np.abs(ly) <= w / 2 + margin)
                 & (np.abs(d[..., 2]) <= h / 2 + margin))
    return mask


def history_only_mask(mask_camera_history: np.ndarray, mask_camera: np.ndarray) -> np.ndarray:
    """bool [X, Y, Z]: voxels a camera saw in an aligned past frame but does not see now.

    Args:
        mask_camera_history: [X, Y, Z] visible now or in any past input frame warped into
            the current ego frame (``occ.data`` builds it when ``num_history > 0``).
        mask_camera: [X, Y, Z] current camera visibility (non-zero = visible).
    """
    if mask_camera_history.shape != mask_camera.shape:
        raise ValueError(f'history_only_mask: mask_camera_history {mask_camera_history.shape} vs '
                         f'mask_camera {mask_camera.shape}')
    return mask_camera_history.astype(bool) & ~mask_camera.astype(bool)


def neighbour_only_mask(mask_camera_coop: np.ndarray, mask_camera: np.ndarray) -> np.ndarray:
    """bool [X, Y, Z]: voxels some connected vehicle's cameras see but the ego's do not.

    Args:
        mask_camera_coop: [X, Y, Z] visible to any vehicle's cameras of the cooperative group,
            in the ego's grid (labels.npz of a world generated with ``--agents`` > 1).
        mask_camera: [X, Y, Z] the ego's own camera visibility (non-zero = visible).
    """
    if mask_camera_coop.shape != mask_camera.shape:
        raise ValueError(f'neighbour_only_mask: mask_camera_coop {mask_camera_coop.shape} vs '
                         f'mask_camera {mask_camera.shape}')
    return mask_camera_coop.astype(bool) & ~mask_camera.astype(bool)
