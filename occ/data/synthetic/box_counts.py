"""``num_lidar_pts`` / ``num_radar_pts``: points of a stored point cloud inside each annotation box,
counted the way the nuScenes devkit does.

The devkit's route is ``NuScenes.get_sample_data`` (the annotation box moved into the sensor frame
through the ego_pose and calibrated_sensor records) followed by ``points_in_box`` on the points of
the file (boundary included). Here the same numbers the tables and files hold (the float32 points
as written, the records' translations and quaternions) are tested in the box frame with numpy;
a point within 1 micrometre of a box face, where two roundings could disagree, is settled by running
the devkit's own route on that box. So the counts equal what a client computes from the database.
"""
from __future__ import annotations

import numpy as np

_EDGE = 1e-6     # metres: closer than this to a face, the devkit decides


def count_points_in_boxes(points: np.ndarray, boxes: list, sensor_record: dict, pose_record: dict) -> np.ndarray:
    """Number of points inside each box (int64 [B]).

    Args:
        points: float32 [P, >=3] in the sensor frame, exactly as stored in the file.
        boxes: dicts with ``translation`` [3], ``size`` [3] (w, l, h) and ``rotation`` [4] (w, x, y, z),
            global frame, as in the sample_annotation table.
        sensor_record: ``translation`` and ``rotation`` of the calibrated_sensor record.
        pose_record: ``translation`` and ``rotation`` of the sample_data's ego_pose record.
    """
    counts = np.zeros(len(boxes), np.int64)
    pts = np.asarray(points)[:, :3]
    pts = pts[np.isfinite(pts).all(axis=1)]
    if not len(boxes) or not len(pts):
        return counts
    s2g = _matrix(pose_record) @ _matrix(sensor_record)
    glob = pts.astype(np.float64) @ s2g[:3, :3].T + s2g[:3, 3]
    order = np.argsort(glob[:, 0], kind='stable')
    xs = glob[order, 0]
    for i, b in enumerate(boxes):
        c = np.asarray(b['translation'], np.float64)
        w, l, h = b['size']
        r = np.sqrt(w * w + l * l + h * h) / 2 + 0.01
        lo, hi = np.searchsorted(xs, [c[0] - r, c[0] + r])
        if lo == hi:
            continue
        idx = order[lo:hi]
        local = (glob[idx] - c) @ _rotation(b['rotation'])        # rows: points in the box frame
        half = np.array([l, w, h]) / 2
        excess = (np.abs(local) - half).max(axis=1)
        inside = excess < -_EDGE
        edge = np.abs(excess) <= _EDGE
        if edge.any():
            counts[i] = _devkit_count(pts[idx[inside | edge]], b, sensor_record, pose_record)
        else:
            counts[i] = int(inside.sum())
    return counts


def _devkit_count(pts: np.ndarray, box: dict, sensor_record: dict, pose_record: dict) -> int:
    """``get_sample_data`` + ``points_in_box`` of the devkit for one box and a few points."""
    from nuscenes.utils.data_classes import Box
    from nuscenes.utils.geometry_utils import points_in_box
    from pyquaternion import Quaternion
    bx = Box(box['translation'], box['size'], Quaternion(box['rotation']))
    bx.translate(-np.array(pose_record['translation']))
    bx.rotate(Quaternion(pose_record['rotation']).inverse)
    bx.translate(-np.array(sensor_record['translation']))
    bx.rotate(Quaternion(sensor_record['rotation']).inverse)
    return int(points_in_box(bx, pts.T).sum())


def _rotation(q) -> np.ndarray:
    """Rotation matrix of a unit quaternion (w, x, y, z)."""
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _matrix(record: dict) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = _rotation(record['rotation'])
    m[:3, 3] = record['translation']
    return m


__all__ = ['count_points_in_boxes']
