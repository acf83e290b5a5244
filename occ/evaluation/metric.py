"""``OccMetric``: the occupancy evaluation as an mmengine metric (val/test loops).

GT comes from the flat batch dict (``voxel_semantics``, ``mask_camera``,
``mask_lidar``, optional ``future_semantics``, ``sample_token``), predictions
from the model's predict output (list of dicts with ``semantics`` and optional
``semantics_future`` / ``bytes_sent``). ``self.results`` holds one small
per-sample summary (sparse counts, a few hundred bytes), so mmengine's
distributed collection stays cheap and drops the sampler's padding duplicates.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric

from occ.data.infos import RAY_ORIGIN_KEYS, InfoFile
from occ.evaluation.confusion import MASKS
from occ.evaluation.evaluator import FIXED_INPUTS, OccEvaluator, grid_for_shape, save_frame_table
from occ.evaluation.origins import origins_from_infos
from occ.geometry import OCC3D_RANGE
from occ.registry import METRICS


def _np(x):
    return x.detach().cpu().numpy() if hasattr(x, 'detach') else np.asarray(x)


# batch / prediction keys of the evaluator's fixed frame inputs; any other input a
# metric part names (e.g. ``mask_camera_history``) is read from the batch by its own name
_FROM_BATCH = {'gt': 'voxel_semantics', 'mask_camera': 'mask_camera', 'mask_lidar': 'mask_lidar',
               'gt_future': 'future_semantics'}
_FROM_PREDICTION = {'pred': 'semantics', 'pred_future': 'semantics_future',
                    'bytes_sent': 'bytes_sent'}


@METRICS.register_module()
class OccMetric(BaseMetric):
    """Occ3D voxel mIoU / IoU, RayIoU, forecasting mIoU per horizon, bytes sent, regions.

    The numbers come from ``OccEvaluator``'s metric parts (``parts``); a part that
    needs a further batch key (``HistoryOnlyRegion``: ``mask_camera_history``)
    scores the frames whose batch carries it.

    Args:
        mask: visibility mask of the headline ``miou``/``iou``: 'camera', 'lidar' or 'none'.
        ray_iou: also compute RayIoU (SparseOcc protocol).
        ann_file: optional info pickle; gives RayIoU origins from the LiDAR poses of
            the scene's keyframes (SparseOcc). Without it one origin (the nuScenes
            LiDAR position) is used, which is not comparable to published RayIoU.
        pc_range: metric range of the label grid (the voxel size follows from its shape).
        ray_device: torch device for ray casting (None = CUDA when available, else CPU).
        parts: metric parts (names or config dicts of ``METRIC_PARTS``); None = the
            evaluator's defaults, e.g. ``[*DEFAULT_PARTS, 'OccludedRegion']`` adds one.
        frame_stats: optional ``.npz`` path; ``compute_metrics`` also writes every
            frame's statistics there (``save_frame_table``), for paired bootstraps.
    """

    default_prefix: Optional[str] = None

    def __init__(self, mask: str = 'camera', ray_iou: bool = True, ann_file: Optional[str] = None,
                 pc_range=OCC3D_RANGE, ray_device=None, parts=None,
                 frame_stats: Optional[str] = None, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if mask not in MASKS:
            raise ValueError(f'OccMetric: mask must be one of {MASKS}, got {mask!r}')
        self.mask = mask
        self.ray_iou = ray_iou
        self.ann_file = ann_file
        self.pc_range = tuple(pc_range)
        self.ray_device = ray_device
        self.frame_stats = frame_stats
        self._evaluator = OccEvaluator(ray_iou=ray_iou, ray_device=ray_device, pc_range=pc_range,
                                       parts=parts)
        self._extra_inputs = sorted(self._evaluator.inputs - set(FIXED_INPUTS))
        self._origins = None

    def _origins_for(self, token, shape):
        if not (self.ray_iou and self.ann_file):
            return None
        if self._origins is None:
            self._origins = origins_from_infos(InfoFile.read(self.ann_file, RAY_ORIGIN_KEYS).infos,
                                               grid_for_shape(shape, self.pc_range))
        return self._origins.get(token)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        sem = data_batch['voxel_semantics']
        if len(data_samples) != len(sem):
            raise ValueError(f'OccMetric: {len(data_samples)} predictions for a batch of {len(sem)}')
        tokens = data_batch.get('sample_token') or [None] * len(sem)
        batch_keys = dict(_FROM_BATCH, **{k: k for k in self._extra_inputs})
        for i, out in enumerate(data_samples):
            tok = tokens[i]
            if tok is not None and out.get('sample_token') not in (None, tok):
                raise ValueError(f'OccMetric: prediction {i} is for {out["sample_token"]!r}, '
                                 f'batch sample is {tok!r}')
            inputs = {name: None if data_batch.get(key) is None else _np(data_batch[key][i])
                      for name, key in batch_keys.items()}
            inputs.update({name: out.get(key) for name, key in _FROM_PREDICTION.items()})
            res = self._evaluator.frame_result(
                origins=self._origins_for(tok, inputs['gt'].shape), **inputs)
            res['token'] = tok
            self.results.append(res)

    def compute_metrics(self, results: list) -> dict:
        ev = self._evaluator.empty_copy()
        for r in results:
            ev.add_result(r)
        if self.frame_stats:
            save_frame_table(self.frame_stats, [r.get('token') or '' for r in results],
                             ev.frame_table(results), ev.parts)
        return ev.flat_metrics(self.mask)
