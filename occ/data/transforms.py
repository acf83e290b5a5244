"""Geometry-consistent augmentation: image-space affine maps and BEV flips/rotations.

Pixel convention: integer pixel coordinates are pixel centres (OpenCV's
convention), so one 3x3 affine matrix both warps the image (``cv2.warpAffine``)
and maps projected points; the two can never disagree.

Image side. ``base_image_transform`` is the deterministic resize (uniform,
covering the target) + crop that turns a raw camera image into the network
size; it is folded into the returned intrinsics. ``ImageAug`` draws a random
extra scale, crop offset, horizontal flip and in-plane rotation; the part of
the full pixel map that is *not* the deterministic one is ``img_aug``:

    full = img_aug @ base,   pixel_aug ~ img_aug @ K_out @ X_cam,   K_out = base @ K.

BEV side. ``BevAug`` draws a flip of x and/or y and a rotation about the ego
z axis; ``bev_aug`` (4x4) maps original ego coordinates to augmented ego
coordinates, and ``resample_labels`` resamples a label grid accordingly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from occ.constants import FREE, IGNORE_INDEX
from occ.geometry import OccGrid, gather_labels, label_pull_index


def affine3(scale_x: float = 1.0, scale_y: float = 1.0, tx: float = 0.0, ty: float = 0.0) -> np.ndarray:
    """3x3 pixel map ``u' = sx*u + tx, v' = sy*v + ty``."""
    return np.array([[scale_x, 0, tx], [0, scale_y, ty], [0, 0, 1]], dtype=np.float64)


def rotation3(angle_deg: float, center: tuple[float, float]) -> np.ndarray:
    """3x3 pixel map rotating by ``angle_deg`` (counter-clockwise on screen) about ``center`` (u, v)."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    # v points down on screen, so a visually counter-clockwise turn is R(-a) in (u, v).
    r = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]], dtype=np.float64)
    cu, cv = center
    return affine3(tx=cu, ty=cv) @ r @ affine3(tx=-cu, ty=-cv)


def hflip3(width: int) -> np.ndarray:
    """3x3 pixel map of a horizontal flip of an image ``width`` pixels wide (centres: u -> W-1-u)."""
    return np.array([[-1, 0, width - 1], [0, 1, 0], [0, 0, 1]], dtype=np.float64)


def base_image_transform(src_hw: tuple[int, int], dst_hw: tuple[int, int], scale: float = 1.0,
                         crop_frac: tuple[float, float] = (0.5, 1.0)) -> np.ndarray:
    """Uniform resize covering ``dst_hw`` (times ``scale``), then a crop to ``dst_hw``.

    ``crop_frac`` = (fx, fy) in [0, 1] places the crop window inside the resized
    image: 0 = left/top edge, 1 = right/bottom edge. The default keeps the
    horizontal centre and the bottom (the sky is the least useful part), as
    BEVDet's test-time crop does. Returns the 3x3 pixel map src -> dst.
    """
    (h0, w0), (h, w) = src_hw, dst_hw
    r = max(h / h0, w / w0) * scale
    # Map pixel centres: a pixel covering [u-0.5, u+0.5] scales to r times that interval.
    resize = affine3(r, r, 0.5 * r - 0.5, 0.5 * r - 0.5)
    rw, rh = w0 * r, h0 * r
    crop_x = (rw - w) * crop_frac[0]
    crop_y = (rh - h) * crop_frac[1]
    return affine3(tx=-crop_x, ty=-crop_y) @ resize


@dataclass
class ImageAug:
    """Random image-space augmentation parameters (train time).

    Args:
        scale: range of the extra resize factor on top of the covering resize.
        rot: range of the in-plane rotation in degrees.
        flip: probability of a horizontal flip.
        crop_y: range of the vertical crop position (0 top .. 1 bottom).
    """

    scale: tuple = (0.94, 1.11)
    rot: tuple = (-5.4, 5.4)
    flip: float = 0.5
    crop_y: tuple = (0.7, 1.0)

    def sample(self, rng: np.random.Generator) -> dict:
        return dict(scale=float(rng.uniform(*self.scale)), rot=float(rng.uniform(*self.rot)),
                    flip=bool(rng.random() < self.flip), crop_x=float(rng.uniform(0.0, 1.0)),
                    crop_y=float(rng.uniform(*self.crop_y)))


def image_transforms(src_hw: tuple[int, int], dst_hw: tuple[int, int], params: dict | None):
    """Pixel maps for one camera: ``(base, img_aug)``, both 3x3 float64.

    ``base`` is the deterministic test-time resize + crop (fold it into the
    intrinsics); ``img_aug`` is the remaining random part (identity when
    ``params`` is None). The full map applied to the raw image is ``img_aug @ base``.
    """
    base = base_image_transform(src_hw, dst_hw)
    if params is None:
        return base, np.eye(3)
    h, w = dst_hw
    full = base_image_transform(src_hw, dst_hw, params['scale'], (params['crop_x'], params['crop_y']))
    if params['flip']:
        full = hflip3(w) @ full
    full = rotation3(params['rot'], ((w - 1) / 2, (h - 1) / 2)) @ full
    return base, full @ np.linalg.inv(base)


def warp_image(img: np.ndarray, full: np.ndarray, dst_hw: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Warp ``img`` [H0, W0(, C)] by the 3x3 pixel map ``full`` into ``dst_hw``; outside = 0.

    For strong downscaling (bilinear sampling alone would alias) the image is
    first box-filtered by an integer factor k (OpenCV's fast INTER_AREA path,
    after dropping the < k leftover rows/columns) and the residual map is
    warped; the composition equals ``full`` exactly.
    """
    h, w = dst_hw
    m = full
    if not nearest:
        k = int(round(1.0 / math.sqrt(abs(np.linalg.det(full[:2, :2])))))
        if k >= 2:
            h0, w0 = img.shape[:2]
            hh, ww = (h0 // k) * k, (w0 // k) * k
            img = cv2.resize(img[:hh, :ww], (ww // k, hh // k), interpolation=cv2.INTER_AREA)
            # Box filter of k pixels: output pixel j is centred on input (j*k + (k-1)/2).
            m = full @ np.linalg.inv(affine3(1 / k, 1 / k, 0.5 / k - 0.5, 0.5 / k - 0.5))
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(img, m[:2].astype(np.float64), (w, h), flags=flags,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def to4x4(m3: np.ndarray) -> np.ndarray:
    """Embed a 3x3 pixel map as the 4x4 ``img_aug`` of the batch contract (z, w untouched)."""
    out = np.eye(4, dtype=np.float32)
    out[:2, :2] = m3[:2, :2]
    out[:2, 3] = m3[:2, 2]
    return out


@dataclass
class BevAug:
    """Random BEV augmentation parameters (train time).

    Args:
        rot: range of the rotation about the ego z axis, degrees.
        flip_x: probability of mirroring x (front <-> back).
        flip_y: probability of mirroring y (left <-> right).
    """

    rot: tuple = (-22.5, 22.5)
    flip_x: float = 0.5
    flip_y: float = 0.5

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A 4x4 float32 ``bev_aug``: original ego coordinates -> augmented ego coordinates."""
        return bev_matrix(float(rng.uniform(*self.rot)), bool(rng.random() < self.flip_x),
                          bool(rng.random() < self.flip_y))


def bev_matrix(rot_deg: float = 0.0, flip_x: bool = False, flip_y: bool = False) -> np.ndarray:
    """4x4 float32: flip first, then rotate by ``rot_deg`` about z (counter-clockwise seen from above)."""
    a = math.radians(rot_deg)
    r = np.eye(4)
    r[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    f = np.diag([-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0, 1.0, 1.0])
    return (r @ f).astype(np.float32)


def resample_labels(arrays: dict, src2dst: np.ndarray, grid: OccGrid) -> dict:
    """Resample label grids through a rigid map of the ego frame (nearest voxel, ``occ.geometry``).

    Args:
        arrays: name -> uint8 [X, Y, Z] grids in the source frame; ``semantics``
            and ``semantics``-like keys (containing 'semantics') get 255 where the
            destination voxel comes from outside the grid, masks get 0.
        src2dst: 4x4 map of source coordinates to destination coordinates.
        grid: the grid both arrays live on.

    Returns: dict of uint8 [X, Y, Z] grids in the destination frame.
    """
    dst2src = np.linalg.inv(np.asarray(src2dst, np.float64))
    # One pull index for all arrays; BEV flips / rotations and planar ego motion take the
    # column path (x, y mapped once per column), exact for the flips' centre-to-centre maps.
    flat, inside = label_pull_index(dst2src[None], grid)
    out = {}
    for k, a in arrays.items():
        lab = torch.from_numpy(np.ascontiguousarray(a, np.uint8))[None]
        fill = IGNORE_INDEX if 'semantics' in k else 0
        out[k] = gather_labels(lab, flat, inside, fill)[0].numpy()
    return out


def downsample_labels(sem: np.ndarray, masks: dict, factor: int) -> tuple[np.ndarray, dict]:
    """Coarsen Occ3D labels by an integer ``factor`` per axis.

    Semantics: the most frequent occupied class (0..16) of each block, ties to the
    lower index; free (17) only when the whole block is free. Masks: observed
    when any voxel of the block is observed.

    Args:
        sem: uint8 [X, Y, Z] with values 0..17.
        masks: name -> uint8 [X, Y, Z].
    Returns: (uint8 [X/f, Y/f, Z/f], dict of uint8 [X/f, Y/f, Z/f]).
    """
    if factor == 1:
        return sem, masks
    x, y, z = sem.shape
    f = factor

    def blocks(a):
        return a.reshape(x // f, f, y // f, f, z // f, f).transpose(0, 2, 4, 1, 3, 5).reshape(
            x // f, y // f, z // f, f ** 3)

    b = blocks(sem)
    has = (b != FREE).any(-1)
    out = np.full(has.shape, FREE, np.uint8)
    # Only blocks with something occupied need a vote (most of a scene is free air);
    # one bincount over (block, class) pairs counts every class of those blocks at once.
    sub = b[has].astype(np.int64)
    m = sub.shape[0]
    counts = np.bincount((np.arange(m)[:, None] * (FREE + 1) + sub).ravel(),
                         minlength=m * (FREE + 1)).reshape(m, FREE + 1)
    counts[:, FREE] = -1
    out[has] = counts.argmax(1)
    return out, {k: blocks(m).max(-1).astype(np.uint8) for k, m in masks.items()}
