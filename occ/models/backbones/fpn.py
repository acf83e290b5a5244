"""Feature pyramid neck: lateral 1x1 convs, top-down upsample-and-add, 3x3 output convs."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from occ.registry import MODELS


@MODELS.register_module()
class FPNNeck(nn.Module):
    """FPN (Lin et al., 2017) over the backbone maps, finest first.

    Args:
        in_channels: channels of each input map (finest first).
        out_channels: channels of every output map.
        out_ids: which pyramid levels to return (indices into the inputs);
            e.g. (1,) with inputs at strides (8, 16, 32) returns the stride-16 map.

    Shapes:
        list of [B, C_i, H_i, W_i] -> list of [B, out_channels, H_i, W_i] for i in out_ids.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, out_ids: Sequence[int] = (0,)):
        super().__init__()
        self.in_channels = list(in_channels)
        self.out_ids = tuple(int(i) for i in out_ids)
        if any(not 0 <= i < len(self.in_channels) for i in self.out_ids):
            raise ValueError(f'out_ids {self.out_ids} out of range for {len(self.in_channels)} inputs')
        # levels finer than the finest requested output do not influence it: skip them
        self.start = min(self.out_ids)
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in self.in_channels[self.start:])
        self.output = nn.ModuleDict({str(i): nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)) for i in self.out_ids})

    def forward(self, feats: Sequence[torch.Tensor]) -> list:
        if len(feats) != len(self.in_channels):
            raise ValueError(f'FPNNeck expects {len(self.in_channels)} maps, got {len(feats)}')
        lat = [conv(f) for conv, f in zip(self.lateral, feats[self.start:])]
        for i in range(len(lat) - 2, -1, -1):
            lat[i] = lat[i] + F.interpolate(lat[i + 1], size=lat[i].shape[-2:], mode='bilinear', align_corners=False)
        return [self.output[str(i)](lat[i - self.start]) for i in self.out_ids]
