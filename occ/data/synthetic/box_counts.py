"""``num_lidar_pts`` / ``num_radar_pts``: points of a stored point cloud inside each annotation box,
counted the way the nuScenes devkit does.

The devkit's route is ``NuScenes.get_sample_data`` (the annotation box moved into the sensor frame
through the ego_pose and calibrated_sensor records) followed by ``points_in_box`` on the points of
the file. This module runs that same route on the same numbers the tables and files hold (the
float32 points as written, the records' translations and quaternions), so the counts equal what a
client computes from the database. A KD-tree finds the few points near each box first; only those
go through the devkit's exact test.
"""
from __future__ import annotations

import numpy as np
from pyquaternion import Quaternion


def count_points_in_boxes(points: np.ndarray, boxes: list, sensor_record: dict, pose_record: dict) -> np.ndarray:
    """Number of points inside each box (int64 [B]).

    Args:
        points: float32 [P, >=3] in the sensor frame, exactly as stored in the file.
        boxes: dicts with ``translation`` [3], ``size`` [3] (w, l, h) and ``rotation`` [4] (w, x, y, z),
            global frame, as in the sample_annotation table.
        sensor_record: ``translation`` and ``rotation`` of the calibrated_sensor record.
        pose_record: ``translation`` and ``rotation`` of the sample_data's ego_pose record.
    """
    from nuscenes.utils.data_classes import Box
    from nuscenes.utils.geometry_utils import points_in_box
    from scipy.spatial import cKDTree

    counts = np.zeros(len(boxes), np.int64)
    pts = np.asarray(points)[:, :3]
    if not len(boxes) or not len(pts) or not np.isfinite(pts).all(axis=1).any():
        return counts
    pts = pts[np.isfinite(pts).all(axis=1)]
    # Candidates: points within the box's circumscribed sphere (+5 cm), in the global frame.
    s2e = _matrix(sensor_record)
    e2g = _matrix(pose_record)
    s2g = e2g @ s2e
    glob = pts.astype(np.float64) @ s2g[:3, :3].T + s2g[:3, 3]
    tree = cKDTree(glob)
    centres = np.array([b['translation'] for b in boxes], np.float64)
    radii = np.array([np.linalg.norm(b['size']) / 2 + 0.05 for b in boxes])
    near = tree.query_ball_point(centres, radii)
    pose_t, pose_q = np.array(pose_record['translation']), Quaternion(pose_record['rotation']).inverse
    cs_t, cs_q = np.array(sensor_record['translation']), Quaternion(sensor_record['rotation']).inverse
    for i, (b, idx) in enumerate(zip(boxes, near)):
        if not idx:
            continue
        box = Box(b['translation'], b['size'], Quaternion(b['rotation']))
        box.translate(-pose_t)
        box.rotate(pose_q)
        box.translate(-cs_t)
        box.rotate(cs_q)
        counts[i] = int(points_in_box(box, pts[np.sort(idx)].T).sum())
    return counts


def _matrix(record: dict) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Quaternion(record['rotation']).rotation_matrix
    m[:3, 3] = record['translation']
    return m


__all__ = ['count_points_in_boxes']
