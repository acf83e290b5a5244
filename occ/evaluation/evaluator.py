"""One object that turns per-frame predictions into every occupancy metric.

``OccEvaluator.frame_result`` computes a small, picklable summary of one frame
(sparse confusion counts, ray counts, per-horizon counts, bytes sent); such
summaries are summed by ``add_result`` in any order, so the tool's worker
pool and mmengine's distributed result collection both reduce to the same
integer sums. ``summary`` / ``flat_metrics`` give the numbers in percent.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from occ.constants import CLASS_NAMES, FREE, NUM_CLASSES
from occ.evaluation.confusion import MASKS, ConfusionAccumulator, confusion_matrices
from occ.evaluation.forecast import forecast_metrics, future_hists
from occ.evaluation.origins import default_origins
from occ.evaluation.ray_iou import (RAY_THRESHOLDS, RayIoUAccumulator, RayCaster,
                                    lidar_ray_directions)
from occ.grid import OCC3D_RANGE, OccGrid

SEMANTIC_NAMES = CLASS_NAMES[:FREE]


def grid_for_shape(shape, pc_range=OCC3D_RANGE) -> OccGrid:
    """The OccGrid over ``pc_range`` with ``shape`` [X, Y, Z] voxels (voxels must be cubic)."""
    lo, hi = np.asarray(pc_range[:3], float), np.asarray(pc_range[3:], float)
    sizes = (hi - lo) / np.asarray(shape, float)
    if not np.allclose(sizes, sizes[0], rtol=1e-4):
        raise ValueError(f'grid {tuple(shape)} over range {tuple(pc_range)} gives non-cubic voxels '
                         f'{sizes.tolist()}; pass pc_range/voxel_size explicitly')
    return OccGrid(tuple(float(v) for v in pc_range), float(sizes[0]))


def _pack(hist: np.ndarray) -> tuple:
    """Dense int histogram -> (shape, flat nonzero indices int32, counts int64): a few hundred bytes."""
    flat = hist.ravel()
    nz = np.flatnonzero(flat)
    return (hist.shape, nz.astype(np.int32), flat[nz].astype(np.int64))


def _unpack(packed: tuple) -> np.ndarray:
    shape, idx, cnt = packed
    out = np.zeros(int(np.prod(shape)), np.int64)
    np.add.at(out, idx, cnt)
    return out.reshape(shape)


def _numpy(x) -> np.ndarray:
    """numpy view of an array, scalar or (any-device) torch tensor."""
    return x.detach().cpu().numpy() if hasattr(x, 'detach') else np.asarray(x)


def _pct(x: float):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else 100.0 * float(x)


class OccEvaluator:
    """Streaming accumulator of voxel mIoU/IoU (3 masks), RayIoU, forecasting and bytes.

    Args:
        ray_iou: compute RayIoU (costs two ray casts of ~14k rays per origin per frame).
        ray_device: torch device for the ray casts (None = CUDA when available, else CPU).
        pc_range: metric range of the grid; the voxel size follows from the array shape.
    """

    def __init__(self, ray_iou: bool = True, ray_device=None, pc_range=OCC3D_RANGE):
        self.ray_iou = ray_iou
        if ray_device is None:
            ray_device = 'cuda' if torch.cuda.is_available() else 'cpu'
        self.ray_device = ray_device
        self.pc_range = tuple(pc_range)
        self.conf = ConfusionAccumulator()
        self.rays = RayIoUAccumulator()
        self.future = None                  # int64 [H, 18, 18]
        self.bytes_sum = 0.0
        self.bytes_frames = 0
        self.ray_frames = 0
        self.default_origin_frames = 0
        self._directions = None
        self._default_casters = {}

    def _caster(self, origins, shape) -> RayCaster:
        """Rays of a frame; the default-origin traversal is built once and reused."""
        grid = grid_for_shape(shape, self.pc_range)
        if self._directions is None:
            self._directions = lidar_ray_directions()
        if origins is not None:
            return RayCaster(origins, self._directions, grid, self.ray_device)
        key = tuple(shape)
        if key not in self._default_casters:
            self._default_casters[key] = RayCaster(default_origins(), self._directions,
                                                         grid, self.ray_device)
        return self._default_casters[key]

    # ---- per frame -------------------------------------------------------
    def frame_result(self, pred, gt, mask_camera=None, mask_lidar=None, origins=None,
                     pred_future=None, gt_future=None, bytes_sent=None) -> dict:
        """Small summary of one frame (does not change the accumulator).

        Args:
            pred, gt: uint8 [X, Y, Z]; mask_camera, mask_lidar: uint8/bool [X, Y, Z].
            origins: float [T, 3] RayIoU origins in the ego frame (None: nuScenes LiDAR default).
            pred_future: uint8 [H, X, Y, Z]; gt_future: uint8 [H', X, Y, Z].
            bytes_sent: scalar or per-agent array of bytes sent for this frame.
        """
        gt, pred = _numpy(gt), _numpy(pred)
        res = {'hist': _pack(confusion_matrices(pred, gt, mask_camera, mask_lidar))}
        if self.ray_iou:
            res['default_origin'] = origins is None
            c = RayIoUAccumulator.frame_counts(pred, gt, self._caster(origins, gt.shape),
                                               RAY_THRESHOLDS)
            res['rays'] = np.concatenate([c['gt_cnt'][None], c['pred_cnt'][None], c['tp']])
        if pred_future is not None and gt_future is not None:
            res['future'] = _pack(future_hists(pred_future, gt_future))
        if bytes_sent is not None:
            b = _numpy(bytes_sent).astype(np.float64)
            if b.size:
                res['bytes'] = float(b.mean())       # mean over agents of this frame
        return res

    def add_result(self, res: dict) -> None:
        self.conf.add_hist(_unpack(res['hist']))
        if 'rays' in res:
            r = np.asarray(res['rays'], np.int64)
            self.rays.add_counts({'gt_cnt': r[0], 'pred_cnt': r[1], 'tp': r[2:]})
            self.ray_frames += 1
            self.default_origin_frames += int(res.get('default_origin', False))
        if 'future' in res:
            f = _unpack(res['future'])
            if self.future is None:
                self.future = f
            else:
                h = max(len(self.future), len(f))
                acc = np.zeros((h, NUM_CLASSES, NUM_CLASSES), np.int64)
                acc[:len(self.future)] += self.future
                acc[:len(f)] += f
                self.future = acc
        if 'bytes' in res:
            self.bytes_sum += res['bytes']
            self.bytes_frames += 1

    def add(self, *args, **kwargs) -> dict:
        """``frame_result`` then ``add_result``."""
        res = self.frame_result(*args, **kwargs)
        self.add_result(res)
        return res

    # ---- results ---------------------------------------------------------
    def summary(self, mask: str = 'camera') -> dict:
        """Structured results in percent (None where undefined), JSON-serialisable."""
        if mask not in MASKS:
            raise ValueError(f'mask must be one of {MASKS}, got {mask!r}')
        m = self.conf.metrics(mask)
        out = {'mask': mask, 'num_frames': self.conf.num_frames,
               'miou': _pct(m['miou']), 'iou': _pct(m['iou']),
               'per_class': {n: _pct(v) for n, v in zip(SEMANTIC_NAMES, m['per_class'][:FREE])},
               'by_mask': {k: {'miou': _pct(v['miou']), 'iou': _pct(v['iou'])}
                           for k, v in ((k, self.conf.metrics(k)) for k in MASKS)}}
        if self.ray_frames:
            r = self.rays.metrics()
            out['ray_iou'] = _pct(r['ray_iou'])
            for t in self.rays.thresholds:
                out[f'ray_iou@{t:g}'] = _pct(r[f'ray_iou@{t:g}'])
            out['ray_per_class'] = {n: _pct(v) for n, v in zip(SEMANTIC_NAMES, r['per_class'])}
            out['ray_frames_default_origin'] = self.default_origin_frames
        if self.future is not None:
            fm = forecast_metrics(self.future)
            out['forecast'] = {k: {kk: (_pct(vv) if kk in ('miou', 'iou') else vv)
                                   for kk, vv in v.items() if kk != 'per_class'}
                               for k, v in fm.items()}
        if self.bytes_frames:
            out['bytes_sent'] = self.bytes_sum / self.bytes_frames
        return out

    def flat_metrics(self, mask: str = 'camera') -> dict:
        """Flat dict of floats (percent; NaN where undefined) for loggers and mmengine."""
        s = self.summary(mask)
        nan = float('nan')
        out = {'miou': s['miou'] if s['miou'] is not None else nan,
               'iou': s['iou'] if s['iou'] is not None else nan}
        for n, v in s['per_class'].items():
            out[f'IoU_{n}'] = nan if v is None else v
        for k in ('ray_iou', 'ray_iou@1', 'ray_iou@2', 'ray_iou@4'):
            if k in s:
                out[k] = nan if s[k] is None else s[k]
        for h, v in s.get('forecast', {}).items():
            out[f'forecast_miou_{h}'] = nan if v['miou'] is None else v['miou']
            out[f'forecast_iou_{h}'] = nan if v['iou'] is None else v['iou']
        if 'bytes_sent' in s:
            out['bytes_sent'] = float(s['bytes_sent'])
        return out
