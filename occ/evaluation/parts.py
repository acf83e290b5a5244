"""Metric parts of ``OccEvaluator``: one class per metric, registered in ``METRIC_PARTS``.

A part turns one frame into a fixed-shape array of **additive** statistics
(confusion counts, ray counts, a byte count). The evaluator sums these arrays
over frames; the part turns the sum into numbers. Because every statistic is a
sum over frames, the same code pools the tool's worker pool, mmengine's
distributed results and the resampled frames of a bootstrap (``weights @
per-frame arrays``), and nothing else needs to change for a new metric:

    @METRIC_PARTS.register_module()
    class MyMetric(MetricPart):
        name = 'my_metric'                  # key in frame results and summaries
        inputs = ('pred', 'gt')             # frame inputs it needs (others: skipped)
        def frame(self, f): ...             # -> np.ndarray (int64/float64) or None
        def summary(self, total, frames, mask): ...   # -> dict merged into the summary
        def flat(self, summary): ...        # -> {key: float} for loggers

Frame inputs (``f``) are numpy arrays: ``pred``, ``gt`` uint8 [X, Y, Z];
``mask_camera``, ``mask_lidar`` uint8 [X, Y, Z]; ``origins`` float [T, 3];
``pred_future`` uint8 [H, X, Y, Z]; ``gt_future`` uint8 [H', X, Y, Z];
``bytes_sent`` scalar or [K]; ``pc_range`` (6 floats); and any further batch
key a part names in ``inputs`` (e.g. ``mask_camera_history``). Visibility
regions are parts too (``occ/evaluation/regions.py``).
"""
from __future__ import annotations

import abc
import math

import numpy as np

from occ.constants import CLASS_NAMES, FREE, NUM_CLASSES
from occ.evaluation.confusion import MASKS, confusion_matrices, iou_from_hist
from occ.evaluation.forecast import forecast_metrics, future_hists
from occ.evaluation.origins import default_origins
from occ.evaluation.ray_iou import RAY_THRESHOLDS, RayCaster, RayIoUAccumulator, lidar_ray_directions
from occ.geometry import OccGrid
from occ.registry import METRIC_PARTS

SEMANTIC_NAMES = CLASS_NAMES[:FREE]


def pct(x):
    """Fraction -> percent; None where undefined (NaN or None)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else 100.0 * float(x)


def nan_if_none(v) -> float:
    return float('nan') if v is None else float(v)


def grid_for_shape(shape, pc_range) -> OccGrid:
    """The OccGrid over ``pc_range`` with ``shape`` [X, Y, Z] voxels (voxels must be cubic)."""
    lo, hi = np.asarray(pc_range[:3], float), np.asarray(pc_range[3:], float)
    sizes = (hi - lo) / np.asarray(shape, float)
    if not np.allclose(sizes, sizes[0], rtol=1e-4):
        raise ValueError(f'grid {tuple(shape)} over range {tuple(pc_range)} gives non-cubic voxels '
                         f'{sizes.tolist()}; pass pc_range/voxel_size explicitly')
    return OccGrid(tuple(float(v) for v in pc_range), float(sizes[0]))


class MetricPart(abc.ABC):
    """Base class: one metric as additive per-frame statistics.

    Attributes:
        name: key of the part's per-frame array in ``OccEvaluator.frame_result``
            and of its entry in per-frame tables.
        inputs: frame inputs that must all be present (not None) for the part to
            score a frame; a frame without them is not counted by this part.
        always_reported: summarise even when no frame was scored (``total`` is then None).
    """

    name: str = ''
    inputs: tuple = ('pred', 'gt')
    always_reported: bool = False

    @abc.abstractmethod
    def frame(self, f: dict):
        """Additive statistics of one frame: int64/float64 array of fixed shape, or None (skip)."""

    @abc.abstractmethod
    def summary(self, total: np.ndarray, frames: int, mask: str) -> dict:
        """Entries of ``OccEvaluator.summary`` from the summed statistics of ``frames`` frames
        (percent, None where undefined, JSON-serialisable); ``mask`` is the headline mask."""

    @abc.abstractmethod
    def flat(self, summary: dict) -> dict:
        """Flat ``{key: float}`` (NaN where undefined) from the full summary."""

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'


@METRIC_PARTS.register_module()
class VoxelIoU(MetricPart):
    """Occ3D voxel mIoU / IoU in the camera mask, the LiDAR mask and everywhere.

    Statistics: int64 [3, 18, 18] confusion counts ``hist[mask, gt, pred]``
    (``confusion.py`` holds the definitions).
    """

    name = 'hist'
    inputs = ('pred', 'gt')
    always_reported = True              # the headline mIoU exists (None) before any frame

    def frame(self, f):
        return confusion_matrices(f['pred'], f['gt'], f.get('mask_camera'), f.get('mask_lidar'))

    def summary(self, total, frames, mask):
        if total is None:
            total = np.zeros((len(MASKS), NUM_CLASSES, NUM_CLASSES), np.int64)
        by_mask = {k: iou_from_hist(total[i]) for i, k in enumerate(MASKS)}
        m = by_mask[mask]
        return {'mask': mask, 'num_frames': frames,
                'miou': pct(m['miou']), 'iou': pct(m['iou']),
                'per_class': {n: pct(v) for n, v in zip(SEMANTIC_NAMES, m['per_class'][:FREE])},
                'by_mask': {k: {'miou': pct(v['miou']), 'iou': pct(v['iou'])}
                            for k, v in by_mask.items()}}

    def flat(self, s):
        out = {'miou': nan_if_none(s['miou']), 'iou': nan_if_none(s['iou'])}
        for n, v in s['per_class'].items():
            out[f'IoU_{n}'] = nan_if_none(v)
        return out


@METRIC_PARTS.register_module()
class RayIoU(MetricPart):
    """SparseOcc RayIoU at 1/2/4 m (``ray_iou.py``), from ``origins`` or the nuScenes LiDAR default.

    Statistics: int64 [2 + T + 1, 18]: rows ``gt_cnt``, ``pred_cnt``, ``tp`` per
    threshold, and a last row whose first entry is 1 when the frame used the
    default origin.

    Args:
        device: torch device of the ray casts (None = CUDA when available, else CPU).
        thresholds: depth thresholds in metres.
    """

    name = 'rays'
    inputs = ('pred', 'gt')

    def __init__(self, device=None, thresholds=RAY_THRESHOLDS):
        if device is None:
            import torch
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        self.device = device
        self.thresholds = tuple(float(t) for t in thresholds)
        self._directions = None
        self._default_casters = {}

    def _caster(self, origins, shape, pc_range) -> RayCaster:
        """Rays of a frame; the default-origin traversal is built once per grid and reused."""
        grid = grid_for_shape(shape, pc_range)
        if self._directions is None:
            self._directions = lidar_ray_directions()
        if origins is not None:
            return RayCaster(origins, self._directions, grid, self.device)
        key = (tuple(shape), tuple(pc_range))
        if key not in self._default_casters:
            self._default_casters[key] = RayCaster(default_origins(), self._directions, grid,
                                                   self.device)
        return self._default_casters[key]

    def frame(self, f):
        origins = f.get('origins')
        c = RayIoUAccumulator.frame_counts(
            f['pred'], f['gt'], self._caster(origins, f['gt'].shape, f['pc_range']), self.thresholds)
        flag = np.zeros((1, NUM_CLASSES), np.int64)
        flag[0, 0] = origins is None
        return np.concatenate([c['gt_cnt'][None], c['pred_cnt'][None], c['tp'], flag]).astype(np.int64)

    def summary(self, total, frames, mask):
        acc = RayIoUAccumulator(self.thresholds)
        acc.add_counts({'gt_cnt': total[0], 'pred_cnt': total[1], 'tp': total[2:-1]})
        r = acc.metrics()
        out = {'ray_iou': pct(r['ray_iou'])}
        for t in self.thresholds:
            out[f'ray_iou@{t:g}'] = pct(r[f'ray_iou@{t:g}'])
        out['ray_per_class'] = {n: pct(v) for n, v in zip(SEMANTIC_NAMES, r['per_class'])}
        out['ray_frames_default_origin'] = int(total[-1, 0])
        return out

    def flat(self, s):
        return {k: nan_if_none(s[k]) for k in ['ray_iou'] + [f'ray_iou@{t:g}' for t in self.thresholds]}


@METRIC_PARTS.register_module()
class ForecastIoU(MetricPart):
    """OccWorld forecasting mIoU / IoU per horizon (``forecast.py``), no visibility mask.

    Statistics: int64 [H, 18, 18] per-horizon confusion counts (frames with
    fewer horizons are zero-padded when summed).
    """

    name = 'future'
    inputs = ('pred_future', 'gt_future')

    def frame(self, f):
        return future_hists(f['pred_future'], f['gt_future'])

    def summary(self, total, frames, mask):
        fm = forecast_metrics(total)
        return {'forecast': {k: {kk: (pct(vv) if kk in ('miou', 'iou') else vv)
                                 for kk, vv in v.items() if kk != 'per_class'}
                             for k, v in fm.items()}}

    def flat(self, s):
        out = {}
        for h, v in s['forecast'].items():
            out[f'forecast_miou_{h}'] = nan_if_none(v['miou'])
            out[f'forecast_iou_{h}'] = nan_if_none(v['iou'])
        return out


@METRIC_PARTS.register_module()
class BytesSent(MetricPart):
    """Mean bytes sent per agent per frame (collaboration). Statistics: float64 [1]."""

    name = 'bytes'
    inputs = ('bytes_sent',)

    def frame(self, f):
        b = np.asarray(f['bytes_sent']).astype(np.float64)
        return np.array([b.mean()]) if b.size else None      # mean over agents of this frame

    def summary(self, total, frames, mask):
        return {'bytes_sent': float(total[0]) / frames}

    def flat(self, s):
        return {'bytes_sent': float(s['bytes_sent'])}
