"""``OccMetric``: the occupancy evaluation as an mmengine metric (val/test loops).

GT comes from the flat batch dict (``voxel_semantics``, ``mask_camera``,
``mask_lidar``, optional ``future_semantics``, ``sample_token``), predictions
from the model's predict output (list of dicts with ``semantics`` and optional
``semantics_future`` / ``bytes_sent``). ``self.results`` holds one small
per-sample summary (sparse counts, a few hundred bytes), so mmengine's
distributed collection stays cheap and drops the sampler's padding duplicates.
"""
from __future__ import annotations

import pickle
from typing import Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric

from occ.evaluation.confusion import MASKS
from occ.evaluation.evaluator import OccEvaluator, grid_for_shape
from occ.evaluation.origins import origins_from_infos
from occ.grid import OCC3D_RANGE
from occ.registry import METRICS


def load_infos(path: str) -> list:
    """The ``infos`` list of an ``occ_infos_*.pkl`` (CONTRACTS.md); errors name the file."""
    try:
        with open(path, 'rb') as f:
            data = pickle.load(f)
    except FileNotFoundError as e:
        raise FileNotFoundError(f'{path}: info file not found') from e
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
        raise ValueError(f'{path}: not a readable info pickle ({type(e).__name__}: {e})') from e
    infos = data.get('infos') if isinstance(data, dict) else data
    if not isinstance(infos, list):
        raise ValueError(f'{path}: expected a dict with an "infos" list, got {type(data).__name__}')
    return infos


def _np(x):
    return x.detach().cpu().numpy() if hasattr(x, 'detach') else np.asarray(x)


@METRICS.register_module()
class OccMetric(BaseMetric):
    """Occ3D voxel mIoU / IoU, RayIoU, forecasting mIoU per horizon, bytes sent.

    Args:
        mask: visibility mask of the headline ``miou``/``iou``: 'camera', 'lidar' or 'none'.
        ray_iou: also compute RayIoU (SparseOcc protocol).
        ann_file: optional info pickle; gives RayIoU origins from the LiDAR poses of
            the scene's keyframes (SparseOcc). Without it one origin (the nuScenes
            LiDAR position) is used, which is not comparable to published RayIoU.
        pc_range: metric range of the label grid (the voxel size follows from its shape).
        ray_device: torch device for ray casting (None = CUDA when available, else CPU).
    """

    default_prefix: Optional[str] = None

    def __init__(self, mask: str = 'camera', ray_iou: bool = True, ann_file: Optional[str] = None,
                 pc_range=OCC3D_RANGE, ray_device=None, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if mask not in MASKS:
            raise ValueError(f'OccMetric: mask must be one of {MASKS}, got {mask!r}')
        self.mask = mask
        self.ray_iou = ray_iou
        self.ann_file = ann_file
        self.pc_range = tuple(pc_range)
        self.ray_device = ray_device
        self._evaluator = OccEvaluator(ray_iou=ray_iou, ray_device=ray_device, pc_range=pc_range)
        self._origins = None

    def _origins_for(self, token, shape):
        if not (self.ray_iou and self.ann_file):
            return None
        if self._origins is None:
            self._origins = origins_from_infos(load_infos(self.ann_file),
                                               grid_for_shape(shape, self.pc_range))
        return self._origins.get(token)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        sem = data_batch['voxel_semantics']
        if len(data_samples) != len(sem):
            raise ValueError(f'OccMetric: {len(data_samples)} predictions for a batch of {len(sem)}')
        tokens = data_batch.get('sample_token') or [None] * len(sem)
        future = data_batch.get('future_semantics')
        cams, lidars = data_batch.get('mask_camera'), data_batch.get('mask_lidar')
        for i, out in enumerate(data_samples):
            tok = tokens[i]
            if tok is not None and out.get('sample_token') not in (None, tok):
                raise ValueError(f'OccMetric: prediction {i} is for {out["sample_token"]!r}, '
                                 f'batch sample is {tok!r}')
            gt = _np(sem[i])
            self.results.append(self._evaluator.frame_result(
                _np(out['semantics']), gt,
                mask_camera=None if cams is None else _np(cams[i]),
                mask_lidar=None if lidars is None else _np(lidars[i]),
                origins=self._origins_for(tok, gt.shape),
                pred_future=out.get('semantics_future'),
                gt_future=None if future is None else _np(future[i]),
                bytes_sent=out.get('bytes_sent')))

    def compute_metrics(self, results: list) -> dict:
        ev = OccEvaluator(ray_iou=self.ray_iou, pc_range=self.pc_range)
        for r in results:
            ev.add_result(r)
        return ev.flat_metrics(self.mask)
