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
voxel gets a code ``(group * 18 + gt) * 18 + pred`` with ``group = cam + 2*lidar``
(four visibility groups); sums over groups give the camera, lidar and unmasked
histograms (``group_hist``, ``group_to_masks``).
"""
from __future__ import annotations

import numpy as np

from occ.constants import FREE, NUM_CLASSES

MASKS = ('camera', 'lidar', 'none')
_GROUPS = 4                             # visibility groups: cam + 2 * lidar
_GROUP = NUM_CLASSES * NUM_CLASSES      # 324 codes per group
_IGNORED_KEY = _GROUPS * NUM_CLASSES    # key of voxels whose GT label is >= 18 (dropped)
_FREE_KEY = FREE                        # GT free, outside both masks
_FREE_BLOCK = np.full(8, FREE, np.uint8).view(np.uint64)[0]


def _as_uint8(name: str, a) -> np.ndarray:
    if hasattr(a, 'detach'):           # torch tensor
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    if a.dtype != np.uint8:
        raise TypeError(f'{name}: expected uint8 (or bool for masks), got {a.dtype}')
    return np.ascontiguousarray(a)


def _keys(pred, gt, mask_camera, mask_lidar) -> tuple[np.ndarray, np.ndarray]:
    """Validated flat uint8 ``pred`` and ``key = gt + 18 * (cam + 2 * lidar)`` (72 = ignored GT)."""
    pred = _as_uint8('pred', pred).reshape(-1)
    gt8 = _as_uint8('gt', gt)
    shape = gt8.shape
    gt8 = gt8.reshape(-1)
    if pred.size != gt8.size:
        raise ValueError(f'prediction shape {np.shape(pred)} != GT shape {shape}')
    if pred.size and int(pred.max()) >= NUM_CLASSES:
        raise ValueError(f'prediction has label {int(pred.max())} outside 0..{NUM_CLASSES - 1}')
    group = None
    for m, shift, name in ((mask_camera, 0, 'mask_camera'), (mask_lidar, 1, 'mask_lidar')):
        if m is None:
            continue
        m = _as_uint8(name, m)
        if m.shape != shape:
            raise ValueError(f'{name} shape {m.shape} != GT shape {shape}')
        m = m.reshape(-1)
        if m.size and int(m.max()) > 1:
            m = (m != 0).view(np.uint8)
        bit = m << np.uint8(shift) if shift else m.copy()
        group = bit if group is None else (group | bit)
    key = np.zeros_like(gt8) if group is None else group
    key *= np.uint8(NUM_CLASSES)
    key += gt8
    if gt8.size and int(gt8.max()) >= NUM_CLASSES:
        key[gt8 >= NUM_CLASSES] = _IGNORED_KEY     # e.g. 255: skipped like Occ3D's hist_info
    return pred, key


def group_hist(pred, gt, mask_camera=None, mask_lidar=None) -> np.ndarray:
    """Confusion counts per visibility group, int64 [4, 18, 18] (group = cam + 2 * lidar).

    Args:
        pred: uint8 [...] predicted labels in 0..17.
        gt: uint8 [...] GT labels; values >= 18 (e.g. 255) are skipped.
        mask_camera, mask_lidar: uint8/bool [...] (nonzero = observed) or None (all zero).

    Voxel code = ``key * 18 + pred`` with ``key = gt + 18 * group``. Blocks of
    eight voxels that are free in GT and prediction and outside both masks
    (most of an occupancy grid) are counted without being histogrammed:
    ``np.bincount`` costs ~3 ns a voxel, the block test a fraction of that.
    """
    pred, key = _keys(pred, gt, mask_camera, mask_lidar)
    n8 = key.size - key.size % 8
    kb, pb = key[:n8].view(np.uint64), pred[:n8].view(np.uint64)
    busy = np.flatnonzero((kb != _FREE_BLOCK) | (pb != _FREE_BLOCK))
    code = np.concatenate([kb[busy].view(np.uint8), key[n8:]]).astype(np.uint16)
    code *= NUM_CLASSES
    code += np.concatenate([pb[busy].view(np.uint8), pred[n8:]])
    hist = np.bincount(code, minlength=(_IGNORED_KEY + 1) * NUM_CLASSES)[:_GROUPS * _GROUP]
    hist[_FREE_KEY * NUM_CLASSES + FREE] += 8 * (kb.size - busy.size)
    return hist.reshape(_GROUPS, NUM_CLASSES, NUM_CLASSES).astype(np.int64)


def group_to_masks(groups: np.ndarray) -> np.ndarray:
    """[..., 4, 18, 18] group counts -> int64 [..., 3, 18, 18] for MASKS (camera, lidar, none)."""
    g = np.asarray(groups)
    cam = g[..., 1, :, :] + g[..., 3, :, :]
    lidar = g[..., 2, :, :] + g[..., 3, :, :]
    none = g.sum(-3)
    return np.stack([cam, lidar, none], -3).astype(np.int64)


def masked_hist(pred, gt, mask) -> np.ndarray:
    """Confusion counts inside one visibility mask only, int64 [18, 18].

    Faster than ``group_hist`` when a single mask is wanted: only blocks of
    eight voxels holding an observed voxel (~20 % of them for Occ3D's camera
    mask) are read; their unobserved voxels go to a discarded bin.
    """
    pred = _as_uint8('pred', pred)
    gt = _as_uint8('gt', gt)
    mask = _as_uint8('mask', mask)
    if pred.shape != gt.shape or mask.shape != gt.shape:
        raise ValueError(f'prediction {pred.shape}, GT {gt.shape} and mask {mask.shape} differ in shape')
    if pred.size and int(pred.max()) >= NUM_CLASSES:
        raise ValueError(f'prediction has label {int(pred.max())} outside 0..{NUM_CLASSES - 1}')
    pred, gt, mask = pred.reshape(-1), gt.reshape(-1), mask.reshape(-1)
    n8 = gt.size - gt.size % 8
    busy = np.flatnonzero(mask[:n8].view(np.uint64))

    def pick(a):
        return np.concatenate([a[:n8].view(np.uint64)[busy].view(np.uint8), a[n8:]])
    g, p, m = pick(gt), pick(pred), pick(mask)
    code = g.astype(np.uint16)
    code *= NUM_CLASSES
    code += p
    code += 1
    code *= (m != 0) & (g < NUM_CLASSES)       # unobserved voxels and ignored GT -> bin 0
    hist = np.bincount(code, minlength=_GROUP + 1)[1:_GROUP + 1]
    return hist.reshape(NUM_CLASSES, NUM_CLASSES).astype(np.int64)


def confusion_matrices(pred, gt, mask_camera=None, mask_lidar=None, masks=MASKS) -> np.ndarray:
    """Confusion matrices of one frame (or a batch, any shape), int64 [3, 18, 18].

    Index 0 = within ``mask_camera``, 1 = within ``mask_lidar``, 2 = every voxel;
    ``hist[m, g, p]`` counts voxels with GT ``g`` predicted as ``p``. ``masks``
    selects which of the three are computed (the others stay zero); all three
    cost one pass, a single camera or lidar mask about half of that.
    """
    masks = tuple(masks)
    if set(masks) == set(MASKS) or not masks:
        return group_to_masks(group_hist(pred, gt, mask_camera, mask_lidar))
    out = np.zeros((len(MASKS), NUM_CLASSES, NUM_CLASSES), np.int64)
    for m in masks:
        if m not in MASKS:
            raise ValueError(f'mask must be one of {MASKS}, got {m!r}')
        if m == 'none':
            out[2] = group_hist(pred, gt)[0]
        else:
            vis = mask_camera if m == 'camera' else mask_lidar
            if vis is None:
                raise ValueError(f'mask {m!r} requested but mask_{m} is missing')
            out[MASKS.index(m)] = masked_hist(pred, gt, vis)
    return out


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
