"""What a forecast starts from: the context frames as the world model sees them at prediction time.

A context part answers two questions for a batch, and is the only difference
between the ground-truth-occupancy and the camera-driven world model:

* ``base(batch, seq)``: labels [B, T + 1, X, Y, Z] of the context frames the
  anchors are warped from (the ground truth, or the camera model's predictions);
* ``features(batch, seq)``: None when the context enters the forecaster as the
  tokens of ``base``, else BEV maps [B, T + 1, C, X, Y] (the camera model's).

Ground truth beyond what the part returns is only ever a training target.
"""
from __future__ import annotations

import torch

from occ.data.sequence import CONTEXT_BEV_KEY, CONTEXT_CAMERA_KEY, SequenceBatch
from occ.registry import MODELS


@MODELS.register_module()
class GroundTruthContext:
    """The past and current ground-truth occupancy, tokenised (OccWorld's setting)."""

    def base(self, batch: dict, seq: SequenceBatch) -> torch.Tensor:
        return seq.context

    def features(self, batch: dict, seq: SequenceBatch):
        return None

    def __repr__(self) -> str:
        return 'GroundTruthContext()'


@MODELS.register_module()
class CameraContext:
    """The frozen camera model's outputs of the context frames, read from the batch (never recomputed).

    ``batch[bev_key]`` float [B, T + 1, C, X, Y] enters the forecaster (its
    ``bev_channels`` must be C); ``batch[semantics_key]`` uint8 [B, T + 1, X, Y, Z]
    (the camera's occupancy prediction) is what anchors are built from, so a forecast
    is decoded on the camera's own current frame moved into t + h.
    (``OccSequenceDataset(camera_cache=...)`` provides both.)
    """

    def __init__(self, bev_key: str = CONTEXT_BEV_KEY, semantics_key: str = CONTEXT_CAMERA_KEY):
        self.bev_key, self.semantics_key = bev_key, semantics_key

    def _get(self, batch: dict, key: str, seq: SequenceBatch) -> torch.Tensor:
        if batch.get(key) is None:
            raise KeyError(f'CameraContext: the batch has no {key!r} (build the dataset with camera_cache=..., '
                           'tools/cache_camera_bev.py)')
        v = batch[key]
        if v.shape[1] != seq.num_context:
            raise ValueError(f'CameraContext: {key} has {v.shape[1]} frames, the context {seq.num_context}')
        return v

    def base(self, batch: dict, seq: SequenceBatch) -> torch.Tensor:
        return self._get(batch, self.semantics_key, seq)

    def features(self, batch: dict, seq: SequenceBatch) -> torch.Tensor:
        return self._get(batch, self.bev_key, seq)

    def __repr__(self) -> str:
        return f'CameraContext({self.bev_key!r}, {self.semantics_key!r})'


__all__ = ['GroundTruthContext', 'CameraContext']
