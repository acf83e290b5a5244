"""Per-pixel depth targets at the augmented image size, from LiDAR or dense depth images.

Depth is the camera-frame z (distance along the optical axis), in metres; 0
means no measurement. Image augmentation only moves pixels, and BEV
augmentation only moves the ego frame, so neither changes a point's depth.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from occ.data.occ3d_io import OccFileError
from occ.data.transforms import warp_image

LIDAR_DIMS = 5   # x, y, z, intensity, ring (nuScenes .pcd.bin)


def load_points(path: str) -> np.ndarray:
    """nuScenes ``.pcd.bin`` -> float32 [P, 5] (x, y, z, intensity, ring) in the LiDAR frame."""
    if not os.path.isfile(path):
        raise OccFileError(f'{path}: LiDAR file not found')
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % LIDAR_DIMS:
        raise OccFileError(f'{path}: LiDAR file holds {raw.size} float32 values, '
                           f'not a multiple of {LIDAR_DIMS} (truncated?)')
    return raw.reshape(-1, LIDAR_DIMS)


def transform_points(pts: np.ndarray, a2b: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid map to points [P, >=3]; returns float64 [P, 3]."""
    a2b = np.asarray(a2b, np.float64)
    return np.asarray(pts, np.float64)[:, :3] @ a2b[:3, :3].T + a2b[:3, 3]


def project_depth(pts_ego: np.ndarray, cam2ego: np.ndarray, pix_from_cam: np.ndarray,
                  hw: tuple[int, int], min_depth: float = 0.1) -> np.ndarray:
    """Sparse depth image from ego-frame points: nearest point per pixel.

    Args:
        pts_ego: float [P, 3] points in the ego frame.
        cam2ego: 4x4 camera -> ego.
        pix_from_cam: 3x3 camera -> (augmented) pixel, e.g. ``img_aug[:3,:3]-part @ K``.
        hw: output (H, W).
    Returns: float32 [H, W]; 0 where no point projects.
    """
    h, w = hw
    p = transform_points(pts_ego, np.linalg.inv(np.asarray(cam2ego, np.float64)))
    p = p[p[:, 2] > min_depth]
    uvw = p @ np.asarray(pix_from_cam, np.float64).T
    u = np.round(uvw[:, 0] / uvw[:, 2]).astype(np.int64)
    v = np.round(uvw[:, 1] / uvw[:, 2]).astype(np.int64)
    ok = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u, v, d = u[ok], v[ok], p[ok, 2]
    out = np.zeros((h, w), np.float32)
    if d.size:
        pix = v * w + u
        order = np.lexsort((d, pix))              # by pixel, then nearest first
        pix, d = pix[order], d[order]
        first = np.unique(pix, return_index=True)[1]
        out.reshape(-1)[pix[first]] = d[first]
    return out


def dense_depth_path(data_root: str, cam_data_path: str) -> str:
    """``samples/CAM_X/<stem>.jpg`` -> ``<root>/depth/CAM_X/<stem>.png`` (synthetic worlds)."""
    cam_dir = os.path.basename(os.path.dirname(cam_data_path))
    stem = os.path.splitext(os.path.basename(cam_data_path))[0]
    return os.path.join(data_root, 'depth', cam_dir, stem + '.png')


def load_dense_depth(path: str, full: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """uint16 millimetre z-depth PNG (0 = none, 65535 = saturated, treated as none), warped by the 3x3 pixel map ``full`` -> float32 [H, W] metres."""
    if not os.path.isfile(path):
        raise OccFileError(f'{path}: dense depth image not found')
    d = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if d is None or d.ndim != 2 or d.dtype != np.uint16:
        raise OccFileError(f'{path}: not a single-channel uint16 depth PNG '
                           f'({None if d is None else (d.shape, d.dtype)})')
    # 65535 means "this far or farther": a bound, not a measurement.
    d = np.where(d == np.iinfo(np.uint16).max, 0, d).astype(np.uint16)
    # Nearest keeps object edges sharp: interpolating depth across an edge invents surfaces.
    return warp_image(d, full, hw, nearest=True).astype(np.float32) / 1000.0
