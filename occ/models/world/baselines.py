"""Forecasting baselines: copy the last frame (``CopyLastForecaster``), or move it by the known ego motion
(``EgoWarpForecaster``)."""
from __future__ import annotations

from typing import Optional

import torch
from mmengine.model import BaseModel

from occ.constants import FREE
from occ.geometry import OCC3D_RANGE, OccGrid, relative_pose, warp_labels
from occ.registry import MODELS


@MODELS.register_module()
class CopyLastForecaster(BaseModel):
    """Predict every future frame as the current frame (labels in each frame's own ego frame).

    Args:
        num_future: H frames predicted.
        pc_range, voxel_size: the label grid.
        source_key: batch key of the frame copied: ``voxel_semantics`` (ground truth), or
            ``context_camera_semantics`` (the camera model's prediction of every context
            frame; the last, current one is copied): the camera-driven baselines.
    """

    def __init__(self, num_future: int = 6, pc_range=OCC3D_RANGE, voxel_size: float = 0.8,
                 source_key: str = 'voxel_semantics', data_preprocessor=None, init_cfg=None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='OccDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.num_future = int(num_future)
        self.grid = OccGrid.from_voxel(voxel_size, pc_range)
        self.source_key = source_key
        # mmengine's optimizer wrapper needs a parameter; this one is never used.
        self._unused = torch.nn.Parameter(torch.zeros(()), requires_grad=False)

    def forecast(self, voxel_semantics: torch.Tensor, ego2global: Optional[torch.Tensor] = None,
                 future_ego2global: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Current labels [B, X, Y, Z] (+ poses [B, 4, 4], [B, H, 4, 4]) -> uint8 [B, H, X, Y, Z]."""
        cur = voxel_semantics
        return cur[:, None].expand(-1, self.num_future, *cur.shape[1:]).to(torch.uint8).clone()

    def forward(self, inputs: dict, data_samples=None, mode: str = 'predict'):
        if mode == 'loss':
            raise ValueError(f'{type(self).__name__} has nothing to train; evaluate it with '
                             'tools/test.py or tools/eval_world.py')
        if self.source_key not in inputs:
            raise KeyError(f'{type(self).__name__}: the batch has no {self.source_key!r}')
        cur = inputs[self.source_key]
        if self.source_key != 'voxel_semantics':
            cur = cur[:, -1]                          # context frames, current last
        fut = self.forecast(cur, inputs.get('ego2global'), inputs.get('future_ego2global'))
        if mode == 'tensor':
            return {'semantics_future': fut}
        tokens = inputs.get('sample_token') or [None] * len(fut)
        return [{'sample_token': tokens[i], 'semantics': cur[i].cpu().numpy(),
                 'semantics_future': fut[i].cpu().numpy()} for i in range(len(fut))]


@MODELS.register_module()
class EgoWarpForecaster(CopyLastForecaster):
    """The current frame moved by the known ego motion into each future ego frame: a static world
    seen from the moving ego (nearest voxel, ``occ.geometry.warp_labels``; cells from outside the
    grid are free). Same arguments as ``CopyLastForecaster``."""

    def forecast(self, voxel_semantics: torch.Tensor, ego2global: Optional[torch.Tensor] = None,
                 future_ego2global: Optional[torch.Tensor] = None) -> torch.Tensor:
        if ego2global is None or future_ego2global is None:
            raise ValueError('EgoWarpForecaster needs ego2global and future_ego2global')
        out = []
        for h in range(self.num_future):
            fut2cur = relative_pose(future_ego2global[:, h], ego2global)
            out.append(warp_labels(voxel_semantics.long(), fut2cur, self.grid, fill=FREE))
        return torch.stack(out, 1).to(torch.uint8)


__all__ = ['CopyLastForecaster', 'EgoWarpForecaster']
