"""Occupancy forecasting metrics per horizon, OccWorld's protocol with one fix.

OccWorld (Zheng et al. 2024; wzzheng/OccWorld ``utils/metric_util.py``,
``multi_step_MeanIou`` and its use in ``train.py``): for every future horizon,
counts are accumulated over the whole split, with no visibility mask:

* semantic mIoU over the 17 classes 0..16 (free excluded), per class
  ``correct / (seen + predicted - correct)`` where *seen* counts GT voxels of
  the class and *predicted* counts predicted voxels of the class (all voxels);
* geometry IoU of the binary occupied (label != 17) vs free grid;
* the table reports each horizon and the mean over +1 s, +2 s, +3 s.

The fix: OccWorld scores a class with no GT voxels at a horizon as IoU 1; here
a class absent from both prediction and GT is left out of the mean (NaN), and
one predicted but absent from GT scores 0, as the Occ3D histogram does.

Both reduce to the same 18x18 histogram as the voxel metric (``seen`` = row
sum, ``predicted`` = column sum, ``correct`` = diagonal), so one histogram per
horizon is kept.
"""
from __future__ import annotations

import numpy as np

from occ.constants import NUM_CLASSES
from occ.evaluation.confusion import group_hist, iou_from_hist

KEYFRAME_DT = 0.5           # seconds between nuScenes keyframes (2 Hz)
AVERAGE_AT = (1.0, 2.0, 3.0)  # seconds averaged in OccWorld's tables


def horizon_name(h: int) -> str:
    """Horizon index 0 -> '0.5s', 1 -> '1s', ..."""
    return f'{(h + 1) * KEYFRAME_DT:g}s'


def future_hists(pred_future, gt_future) -> np.ndarray:
    """Unmasked 18x18 histograms per horizon, int64 [H, 18, 18].

    Args:
        pred_future: uint8 [H, X, Y, Z]; gt_future: uint8 [H', X, Y, Z] with H' >= H
            (extra GT horizons are ignored; GT 255 marks a horizon past the scene end).
    """
    pred_future = np.asarray(pred_future)
    gt_future = np.asarray(gt_future.detach().cpu().numpy() if hasattr(gt_future, 'detach')
                           else gt_future)
    if pred_future.ndim != 4 or gt_future.ndim != 4:
        raise ValueError(f'future semantics must be [H, X, Y, Z], got {pred_future.shape} '
                         f'and {gt_future.shape}')
    h = min(len(pred_future), len(gt_future))
    return np.stack([group_hist(pred_future[i], gt_future[i])[0]
                     for i in range(h)]) if h else np.zeros((0, NUM_CLASSES, NUM_CLASSES), np.int64)


def forecast_metrics(hists: np.ndarray) -> dict:
    """Fractions per horizon from [H, 18, 18] histograms.

    Returns ``{'0.5s': {'miou', 'iou', 'per_class'}, ..., 'avg': {'miou', 'iou'}}``;
    'avg' is the mean over the horizons at 1, 2 and 3 s that exist.
    """
    out = {}
    for h, hist in enumerate(hists):
        m = iou_from_hist(hist)
        out[horizon_name(h)] = {'miou': m['miou'], 'iou': m['iou'], 'per_class': m['per_class'][:17]}
    avg_keys = [f'{t:g}s' for t in AVERAGE_AT if f'{t:g}s' in out]
    if avg_keys:
        out['avg'] = {k: float(np.mean([out[a][k] for a in avg_keys])) for k in ('miou', 'iou')}
        out['avg']['horizons'] = avg_keys
    return out
