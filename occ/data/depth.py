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
        pix_from_cam: 3x3 camera -> (augmented) pixel with last row (0, 0, 1), e.g. ``full @ K``.
        hw: output (H, W).
    Returns: float32 [H, W]; 0 where no point projects.
    """
    h, w = hw
    ego2cam = np.linalg.inv(np.asarray(cam2ego, np.float64))
    # One combined 3x4 map ego -> (u*z, v*z, z), in float32: P is ~30k points per sweep.
    m = np.zeros((3, 4))
    m[:, :3] = np.asarray(pix_from_cam, np.float64) @ ego2cam[:3, :3]
    m[:, 3] = np.asarray(pix_from_cam, np.float64) @ ego2cam[:3, 3]
    m = m.astype(np.float32)
    pts = np.asarray(pts_ego, np.float32)[:, :3]
    uvz = pts @ m[:, :3].T + m[:, 3]
    # Camera z equals the third row here only because pix_from_cam's last row is (0, 0, 1).
    z = uvz[:, 2]
    keep = z > min_depth
    uvz, z = uvz[keep], z[keep]
    u = np.round(uvz[:, 0] / z).astype(np.int64)
    v = np.round(uvz[:, 1] / z).astype(np.int64)
    ok = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    flat = np.full(h * w, np.inf, np.float32)
    np.minimum.at(flat, v[ok] * w + u[ok], z[ok])          # nearest point per pixel
    flat[np.isinf(flat)] = 0.0
    return flat.reshape(h, w)


def dense_depth_path(data_root: str, cam_data_path: str) -> str:
    """``samples/CAM_X/<stem>.jpg`` -> ``<root>/depth/CAM_X/<stem>.png`` (synthetic worlds)."""
    cam_dir = os.path.basename(os.path.dirname(cam_data_path))
    stem = os.path.splitext(os.path.basename(cam_data_path))[0]
    return os.path.join(data_root, 'depth', cam_dir, stem + '.png')


def load_dense_depth(path: str, full: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """uint16 millimetre z-depth PNG -> float32 [H, W] metres, warped by the 3x3 pixel map ``full``.

    0 means no surface (sky); 65535 means "65.5 m or farther" and is treated as none.
    """
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
