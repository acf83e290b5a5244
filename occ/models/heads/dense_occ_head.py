"""Dense occupancy head, FlashOcc's channel-to-height: BEV features -> logits [B, 18, X, Y, Z]."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn

from occ.constants import NUM_CLASSES
from occ.registry import MODELS

from .base import BaseOccHead
from .bev_encoder import BEVEncoder


@MODELS.register_module()
class DenseOccHead(BaseOccHead):
    """BEV encoder, then a per-cell MLP to ``num_classes * Z`` channels reshaped to voxels.

    FlashOcc (Yu et al., 2023) keeps everything 2-D: the height axis lives in
    the channels of the last layer, so the head costs a 2-D CNN.

    Args:
        in_channels: BEV channels C.
        mid_channels: channels after the BEV encoder.
        hidden_channels: hidden width of the per-cell MLP (default 2 * mid_channels).
        num_z: Z, voxels along height.
        num_classes: 18 (Occ3D incl. free).
        encoder: kwargs of :class:`BEVEncoder` (besides in/out channels), or None for no encoder.
        losses: loss configs, see :class:`BaseOccHead`.

    forward(bev [B, C, X, Y]) -> dict(logits [B, num_classes, X, Y, Z]).
    """

    def __init__(self, in_channels: int, mid_channels: int = 64, num_z: int = 8, num_classes: int = NUM_CLASSES,
                 hidden_channels: Optional[int] = None, encoder: Optional[dict] = None,
                 losses: Optional[Sequence[dict]] = None):
        super().__init__(losses)
        self.num_z, self.num_classes = int(num_z), int(num_classes)
        enc = dict(num_blocks=1, num_down_blocks=1) if encoder is None else dict(encoder)
        self.encoder = BEVEncoder(in_channels, mid_channels, **enc)
        # per-cell MLP (1x1 convs): a wider hidden layer, as FlashOcc's predicter
        hidden = int(hidden_channels or 2 * mid_channels)
        self.predictor = nn.Sequential(nn.Conv2d(mid_channels, hidden, 1), nn.Softplus(),
                                       nn.Conv2d(hidden, self.num_classes * self.num_z, 1))

    def forward(self, bev: torch.Tensor) -> dict:
        B, _, X, Y = bev.shape
        x = self.predictor(self.encoder(bev))                      # [B, classes * Z, X, Y]
        logits = x.view(B, self.num_classes, self.num_z, X, Y).permute(0, 1, 3, 4, 2)
        return dict(logits=logits)
