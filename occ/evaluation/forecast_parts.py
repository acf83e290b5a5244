"""Forecast metrics where the world moves: static classes, dynamic classes and moving voxels, per horizon.

A forecast that copies the current frame moved by the ego motion (ego-warp) is
right wherever the world is static; a world model earns its place where it is
not. ``ForecastMotionSplit`` reports, per horizon h (unmasked, OccWorld's
protocol, ``forecast.py``):

* ``static_miou``: mean IoU over the semantic classes that do not move
  (``0..16`` minus ``DYNAMIC_CLASSES``), from the whole-grid histogram;
* ``dynamic_miou``: mean IoU over ``DYNAMIC_CLASSES`` (vehicles, pedestrians,
  bicycles, ...), from the same histogram;
* ``moving_miou`` / ``moving_iou``: mIoU and geometry IoU inside the *moving
  voxels* of frame t+h (``moving_voxels``): where the ground truth of t+h
  differs from the ground truth of t ego-warped into t+h, and either of the
  two is a dynamic class: exactly the voxels a static world gets wrong because
  something moved (cells that entered the grid are left out: no warp reaches them).

Absent classes are left out of a mean (NaN), as in the Occ3D histogram.
"""
from __future__ import annotations

import numpy as np

from occ.constants import DYNAMIC_CLASSES, FREE, IGNORE_INDEX, NUM_CLASSES
from occ.evaluation.confusion import group_hist, iou_from_hist, masked_hist
from occ.evaluation.forecast import AVERAGE_AT, horizon_name
from occ.evaluation.parts import MetricPart, grid_for_shape, nan_if_none, pct
from occ.geometry import warp_labels
from occ.registry import METRIC_PARTS

STATIC_CLASSES = tuple(c for c in range(FREE) if c not in DYNAMIC_CLASSES)


def moving_voxels(current: np.ndarray, future: np.ndarray, fut2cur: np.ndarray, grid,
                  dynamic_classes=DYNAMIC_CLASSES) -> np.ndarray:
    """bool [X, Y, Z]: voxels of a future frame where something moved.

    Args:
        current: uint8 [X, Y, Z] ground truth of frame t (its own ego frame).
        future: uint8 [X, Y, Z] ground truth of frame t+h (its own ego frame; 255 = unknown).
        fut2cur: [4, 4] frame t+h ego coordinates -> frame t ego coordinates.
        grid: the ``OccGrid`` of both.
    A voxel is moving when ``future`` and ``current`` warped into t+h (nearest voxel)
    are both known and differ, and one of the two is a dynamic class.
    """
    warped = warp_labels(np.ascontiguousarray(current), np.asarray(fut2cur, np.float64), grid, fill=IGNORE_INDEX)
    dyn = np.zeros(256, bool)
    dyn[list(dynamic_classes)] = True
    known = (warped != IGNORE_INDEX) & (future < NUM_CLASSES)
    return known & (warped != future) & (dyn[warped] | dyn[future])


@METRIC_PARTS.register_module()
class ForecastMotionSplit(MetricPart):
    """Per-horizon forecast mIoU on static classes, on dynamic classes and inside moving voxels.

    Frame inputs: ``pred_future`` uint8 [H, X, Y, Z], ``gt_future`` [H', X, Y, Z],
    ``gt`` (the current frame), ``ego2global`` [4, 4], ``future_ego2global`` [H', 4, 4]
    and ``pc_range``. Statistics: int64 [H, 2, 18, 18]: per horizon the whole-grid
    confusion counts and those inside the moving voxels.

    Args:
        dynamic_classes: the classes that move (default ``occ.constants.DYNAMIC_CLASSES``).
    """

    name = 'future_split'
    inputs = ('pred_future', 'gt_future', 'gt', 'ego2global', 'future_ego2global')

    def __init__(self, dynamic_classes=DYNAMIC_CLASSES):
        self.dynamic = tuple(int(c) for c in dynamic_classes)
        self.static = tuple(c for c in range(FREE) if c not in self.dynamic)

    def frame(self, f):
        pred, gt = np.asarray(f['pred_future']), np.asarray(f['gt_future'])
        h_all = min(len(pred), len(gt))
        grid = grid_for_shape(gt.shape[1:], f['pc_range'])
        cur2global = np.asarray(f['ego2global'], np.float64)
        out = np.zeros((h_all, 2, NUM_CLASSES, NUM_CLASSES), np.int64)
        for h in range(h_all):
            fut2cur = np.linalg.solve(cur2global, np.asarray(f['future_ego2global'][h], np.float64))
            region = moving_voxels(f['gt'], gt[h], fut2cur, grid, self.dynamic)
            out[h, 0] = group_hist(pred[h], gt[h])[0]
            out[h, 1] = masked_hist(pred[h], gt[h], region.view(np.uint8))
        return out

    def _scores(self, hist: np.ndarray) -> dict:
        whole, moving = iou_from_hist(hist[0]), iou_from_hist(hist[1])

        def mean(per_class, classes):
            v = per_class[list(classes)]
            return float(np.nanmean(v)) if np.isfinite(v).any() else float('nan')
        return {'static_miou': mean(whole['per_class'], self.static),
                'dynamic_miou': mean(whole['per_class'], self.dynamic),
                'moving_miou': moving['miou'], 'moving_iou': moving['iou'],
                'moving_voxels': int(hist[1].sum())}

    def summary(self, total, frames, mask):
        per = {horizon_name(h): self._scores(total[h]) for h in range(len(total))}
        avg_keys = [f'{t:g}s' for t in AVERAGE_AT if f'{t:g}s' in per]
        out = {}
        for k, v in per.items():
            out[k] = {kk: (vv if kk == 'moving_voxels' else pct(vv)) for kk, vv in v.items()}
        if avg_keys:
            out['avg'] = {k: pct(float(np.mean([per[a][k] for a in avg_keys])))
                          for k in ('static_miou', 'dynamic_miou', 'moving_miou', 'moving_iou')}
            out['avg']['horizons'] = avg_keys
        return {'forecast_split': out}

    def flat(self, s):
        out = {}
        for h, v in s['forecast_split'].items():
            for k in ('static_miou', 'dynamic_miou', 'moving_miou', 'moving_iou'):
                out[f'forecast_{k}_{h}'] = nan_if_none(v[k])
        return out


__all__ = ['ForecastMotionSplit', 'moving_voxels', 'STATIC_CLASSES']
