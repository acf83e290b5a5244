"""Forecasting baselines: copy the last frame, or copy it moved by the known ego motion."""
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

    With ``ego_warp=True`` the current labels are warped by the known ego
    motion into each future frame's ego frame (nearest voxel; cells coming
    from outside the grid are free): a static world seen from the moving ego.

    Args:
        num_future: H frames predicted.
        ego_warp: move the frame by the ego motion.
        pc_range, voxel_size: the label grid (for the warp).
        source_key: batch key of the frame copied: ``voxel_semantics`` (ground truth), or
            ``context_camera_semantics`` (the camera model's prediction of every context
            frame; the last, current one is copied): the camera-driven baselines.
    """

    def __init__(self, num_future: int = 6, ego_warp: bool = False, pc_range=OCC3D_RANGE,
                 voxel_size: float = 0.8, source_key: str = 'voxel_semantics', data_preprocessor=None,
                 init_cfg=None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='OccDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.num_future, self.ego_warp = int(num_future), bool(ego_warp)
        self.grid = OccGrid.from_voxel(voxel_size, pc_range)
        self.source_key = source_key
        # mmengine's optimizer wrapper needs a parameter; this one is never used.
        self._unused = torch.nn.Parameter(torch.zeros(()), requires_grad=False)

    def forecast(self, voxel_semantics: torch.Tensor, ego2global: Optional[torch.Tensor] = None,
                 future_ego2global: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Current labels [B, X, Y, Z] (+ poses [B, 4, 4], [B, H, 4, 4]) -> uint8 [B, H, X, Y, Z]."""
        cur = voxel_semantics
        if not self.ego_warp:
            return cur[:, None].expand(-1, self.num_future, *cur.shape[1:]).to(torch.uint8).clone()
        if ego2global is None or future_ego2global is None:
            raise ValueError('CopyLastForecaster(ego_warp=True) needs ego2global and future_ego2global')
        out = []
        for h in range(self.num_future):
            fut2cur = relative_pose(future_ego2global[:, h], ego2global)
            out.append(warp_labels(cur.long(), fut2cur, self.grid, fill=FREE))
        return torch.stack(out, 1).to(torch.uint8)

    def forward(self, inputs: dict, data_samples=None, mode: str = 'predict'):
        if mode == 'loss':
            raise ValueError('CopyLastForecaster has nothing to train; evaluate it with tools/train_world.py '
                             '--eval-only or occ.models.world.evaluate')
        if self.source_key not in inputs:
            raise KeyError(f'CopyLastForecaster: the batch has no {self.source_key!r}')
        cur = inputs[self.source_key]
        if self.source_key != 'voxel_semantics':
            cur = cur[:, -1]                          # context frames, current last
        fut = self.forecast(cur, inputs.get('ego2global'), inputs.get('future_ego2global'))
        if mode == 'tensor':
            return {'semantics_future': fut}
        tokens = inputs.get('sample_token') or [None] * len(fut)
        return [{'sample_token': tokens[i], 'semantics': cur[i].cpu().numpy(),
                 'semantics_future': fut[i].cpu().numpy()} for i in range(len(fut))]
