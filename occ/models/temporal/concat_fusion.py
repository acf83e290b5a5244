"""Concatenation + convolution over T aligned past frames (BEVDet4D-style)."""
from __future__ import annotations

import torch
import torch.nn as nn

from occ.geometry import warp_bev

from .registry import TEMPORAL_FUSIONS


@TEMPORAL_FUSIONS.register_module()
class ConcatConvFusion(nn.Module):
    """Warp T past BEV maps into the current frame, concatenate with the current
    map and one validity channel per past frame, and mix with two 3x3 convs.

    The output is residual (``cur + mix``) so that with no valid past frame the
    current evidence passes through and the mix only adds what history offers.

    Args:
        channels: C of the BEV maps.
        num_frames: T past frames (slots; missing ones are zero with valid 0).
        pc_range: grid range, metres.
        hidden: width of the mixing conv (default C).
    """

    recurrent = False

    def __init__(self, channels: int, num_frames: int, pc_range, hidden: int | None = None):
        super().__init__()
        if num_frames < 1:
            raise ValueError(f'ConcatConvFusion needs num_frames >= 1, got {num_frames}')
        self.channels, self.num_frames = channels, num_frames
        self.pc_range = tuple(float(v) for v in pc_range)
        hidden = hidden or channels
        in_ch = channels * (num_frames + 1) + num_frames
        self.mix = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 3, padding=1),
        )

    def forward(self, cur: torch.Tensor, frames: list) -> torch.Tensor:
        """
        Args:
            cur: [B, C, X, Y] current BEV.
            frames: ``num_frames`` dicts, oldest first, each with ``feat``
                [B, C, X, Y] (past frame, own ego frame), ``cur2past`` [B, 4, 4],
                ``valid`` bool [B].
        Returns:
            fused [B, C, X, Y].
        """
        if len(frames) != self.num_frames:
            raise ValueError(f'ConcatConvFusion expects {self.num_frames} frames, got {len(frames)}')
        feats, masks = [], []
        for f in frames:
            warped, valid = warp_bev(f['feat'], f['cur2past'], self.pc_range)
            v = f['valid'].to(cur.dtype).view(-1, 1, 1, 1)
            feats.append(warped * v)
            masks.append(valid * v)
        return cur + self.mix(torch.cat([cur, *feats, *masks], 1))
