"""Streaming voxel confusion matrices and the Occ3D-nuScenes IoU / mIoU definitions.

Definition (CVPR 2023 3D Occupancy Prediction Challenge, repository
CVPR2023-3D-Occupancy-Prediction, ``projects/mmdet3d_plugin/datasets/occ_metrics.py``,
class ``Metric_mIoU``):

* an 18x18 histogram ``hist[gt, pred]`` is accumulated over **all frames** of
  the split, counting only voxels inside the visibility mask (``mask_camera``,
  ``mask_lidar`` or every voxel) and only GT labels in ``0..17`` (255 is
  skipped);
* per-class IoU = ``diag / (row_sum + col_sum - diag)`` of that histogram, so
  free (17) predictions count as false negatives of the GT class and free GT
  voxels predicted as a class count as that class's false positives;
* mIoU = ``nanmean`` over classes ``0..16`` (free excluded). A class with an
  empty row and column (absent from GT and prediction in every frame) has
  0/0 = NaN and is left out; a class predicted but never in GT scores 0.

Geometry IoU (occupied vs free, the "IoU" column of Occ3D tables) is the IoU of
the binary occupied class of the same masked voxels: ``TP = hist[:17, :17].sum()``,
``FN = hist[:17, 17].sum()``, ``FP = hist[17, :17].sum()``.

One pass over a frame fills the histograms for all three masks at once: every
voxel gets a code ``group * 342 + gt * 18 + pred`` with ``group = cam + 2*lidar``
(four visibility groups); sums over groups give the camera, lidar and unmasked
histograms. ``gt`` is clipped to 18 (one "ignored" row, 19 rows x 18 = 342).
"""
from __future__ import annotations

import numpy as np

from occ.constants import FREE, NUM_CLASSES

MASKS = ('camera', 'lidar', 'none')
_ROWS = NUM_CLASSES + 1                 # 18 labels + one row for ignored GT (>= 18)
_GROUP = _ROWS * NUM_CLASSES            # 342 codes per visibility group
_NBINS = 4 * _GROUP                     # groups: (cam, lidar) in {0,1}^2
_FREE_CODE = FREE * NUM_CLASSES + FREE  # gt free, pred free, outside both masks
_FREE_BLOCK = np.full(4, _FREE_CODE, np.uint16).view(np.uint64)[0]


def _as_uint8(name: str, a) -> np.ndarray:
    if hasattr(a, 'detach'):           # torch tensor
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    if a.dtype != np.uint8:
        raise TypeError(f'{name}: expected uint8 (or bool for masks), got {a.dtype}')
    return np.ascontiguousarray(a)


def voxel_codes(pred, gt, mask_camera=None, mask_lidar=None) -> np.ndarray:
    """Per-voxel confusion codes, uint16 with the same shape as ``gt``.

    Args:
        pred: uint8 [...] predicted labels in 0..17.
        gt: uint8 [...] GT labels; values >= 18 (e.g. 255) are ignored.
        mask_camera, mask_lidar: uint8/bool [...] visibility (nonzero = observed)
            or None (treated as all zeros; the 'none' histogram still counts them).
    """
    pred = _as_uint8('pred', pred)
    gt = _as_uint8('gt', gt)
    if pred.shape != gt.shape:
        raise ValueError(f'prediction shape {pred.shape} != GT shape {gt.shape}')
    if pred.size and int(pred.max()) >= NUM_CLASSES:
        raise ValueError(f'prediction has label {int(pred.max())} outside 0..{NUM_CLASSES - 1}')
    if gt.size and int(gt.max()) >= NUM_CLASSES:
        gt = np.minimum(gt, NUM_CLASSES)    # all ignored labels share one row
    code = gt.astype(np.uint16)
    code *= NUM_CLASSES
    code += pred
    group = None
    for m, weight, name in ((mask_camera, 1, 'mask_camera'), (mask_lidar, 2, 'mask_lidar')):
        if m is None:
            continue
        m = _as_uint8(name, m)
        if m.shape != gt.shape:
            raise ValueError(f'{name} shape {m.shape} != GT shape {gt.shape}')
        bit = (m != 0).view(np.uint8) * np.uint8(weight)
        group = bit if group is None else group | bit
    if group is not None:
        g16 = group.astype(np.uint16)
        g16 *= _GROUP
        code += g16
    return code


def count_codes(codes: np.ndarray) -> np.ndarray:
    """Histogram of voxel codes, int64 [4, 19, 18] (group, gt row, pred).

    Blocks of four voxels that are free in GT and prediction and outside both
    masks (most of an occupancy grid) are counted without being histogrammed:
    ``np.bincount`` costs ~3 ns a voxel, the block test a fraction of that.
    """
    flat = np.ascontiguousarray(codes, dtype=np.uint16).ravel()
    n_main = flat.size - flat.size % 4
    blocks = flat[:n_main].view(np.uint64)
    busy = np.flatnonzero(blocks != _FREE_BLOCK)
    sub = flat[:n_main].reshape(-1, 4)[busy].ravel()
    hist = np.bincount(sub, minlength=_NBINS)
    hist += np.bincount(flat[n_main:], minlength=_NBINS)
    hist[_FREE_CODE] += 4 * (blocks.size - busy.size)
    return hist.reshape(4, _ROWS, NUM_CLASSES)


def group_to_masks(groups: np.ndarray) -> np.ndarray:
    """[..., 4, 19, 18] group histograms -> int64 [..., 3, 18, 18] for MASKS (camera, lidar, none).

    The ignored-GT row is dropped, as Occ3D's ``hist_info`` drops GT outside 0..17.
    """
    g = np.asarray(groups)[..., :NUM_CLASSES, :]
    cam = g[..., 1, :, :] + g[..., 3, :, :]
    lidar = g[..., 2, :, :] + g[..., 3, :, :]
    none = g.sum(-3)
    return np.stack([cam, lidar, none], -3).astype(np.int64)


def confusion_matrices(pred, gt, mask_camera=None, mask_lidar=None) -> np.ndarray:
    """Confusion matrices of one frame (or a batch, any shape), int64 [3, 18, 18].

    Index 0 = within ``mask_camera``, 1 = within ``mask_lidar``, 2 = every voxel;
    ``hist[m, g, p]`` counts voxels with GT ``g`` predicted as ``p``.
    """
    return group_to_masks(count_codes(voxel_codes(pred, gt, mask_camera, mask_lidar)))


def iou_from_hist(hist: np.ndarray) -> dict:
    """Occ3D metrics from one 18x18 histogram ``hist[gt, pred]``.

    Returns fractions (0..1), NaN where undefined:
    ``per_class`` float [18] (index 17 = free), ``miou`` (nanmean of 0..16),
    ``iou`` (geometry, occupied vs free).
    """
    hist = np.asarray(hist, dtype=np.float64)
    diag = np.diag(hist)
    with np.errstate(divide='ignore', invalid='ignore'):
        per_class = diag / (hist.sum(1) + hist.sum(0) - diag)
    sem = per_class[:FREE]
    miou = float(np.nanmean(sem)) if np.isfinite(sem).any() else float('nan')
    tp = hist[:FREE, :FREE].sum()
    fn = hist[:FREE, FREE].sum()
    fp = hist[FREE, :FREE].sum()
    denom = tp + fn + fp
    iou = float(tp / denom) if denom > 0 else float('nan')
    return {'per_class': per_class, 'miou': miou, 'iou': iou}


class ConfusionAccumulator:
    """Streams frames into three 18x18 histograms (camera mask, lidar mask, no mask).

    Memory is constant in the number of frames; the result does not depend on
    the order frames are added in, so per-worker accumulators can be summed.
    """

    def __init__(self):
        self.hist = np.zeros((len(MASKS), NUM_CLASSES, NUM_CLASSES), np.int64)
        self.num_frames = 0

    def add(self, pred, gt, mask_camera=None, mask_lidar=None) -> np.ndarray:
        """Add one frame; returns its [3, 18, 18] histograms."""
        h = confusion_matrices(pred, gt, mask_camera, mask_lidar)
        self.add_hist(h)
        return h

    def add_hist(self, hist: np.ndarray, num_frames: int = 1) -> None:
        self.hist += np.asarray(hist, np.int64)
        self.num_frames += num_frames

    def merge(self, other: 'ConfusionAccumulator') -> None:
        self.add_hist(other.hist, other.num_frames)

    def metrics(self, mask: str = 'camera') -> dict:
        """``iou_from_hist`` of the histogram of ``mask`` ('camera', 'lidar', 'none')."""
        if mask not in MASKS:
            raise ValueError(f'mask must be one of {MASKS}, got {mask!r}')
        return iou_from_hist(self.hist[MASKS.index(mask)])
