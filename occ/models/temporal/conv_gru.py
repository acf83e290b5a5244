"""Recurrent BEV memory: a ConvGRU over the ego-motion-aligned previous state."""
from __future__ import annotations

import torch
import torch.nn as nn

from occ.geometry import warp_bev

from .registry import TEMPORAL_FUSIONS


@TEMPORAL_FUSIONS.register_module()
class ConvGRUFusion(nn.Module):
    """One fused state carried from frame to frame.

    At each frame the previous state h is warped into the current frame
    (cells from outside the old map get h = 0 and a validity channel of 0, so
    the gates can tell "no memory" from "memory says zero"), then

        z = sigmoid(Wz * [x, h, m]),  r = sigmoid(Wr * [x, h, m])
        n = tanh(Wn * [x, r * h]),    h' = (1 - z) * n + z * h

    and the fused output is ``x + proj(h')`` (residual, so the current
    evidence always reaches the head unchanged).

    Args:
        channels: C of the BEV maps (= state width).
        pc_range: grid range, metres.
        kernel_size: gate convolution size.
    """

    recurrent = True

    def __init__(self, channels: int, pc_range, kernel_size: int = 3, num_frames: int | None = None):
        super().__init__()
        # num_frames is accepted (and unused) so every fusion is built the same way.
        self.channels = channels
        self.pc_range = tuple(float(v) for v in pc_range)
        p = kernel_size // 2
        self.gates = nn.Conv2d(2 * channels + 1, 2 * channels, kernel_size, padding=p)
        self.cand = nn.Conv2d(2 * channels, channels, kernel_size, padding=p)
        self.proj = nn.Conv2d(channels, channels, 1)

    def step(self, x: torch.Tensor, prev: dict | None) -> torch.Tensor:
        """New state [B, C, X, Y] from input ``x`` [B, C, X, Y] and ``prev``
        (dict with ``feat`` = previous state, ``cur2past`` [B, 4, 4], ``valid``
        bool [B]) or None (no memory)."""
        if prev is None:
            h = x.new_zeros(x.shape)
            m = x.new_zeros(x.shape[0], 1, *x.shape[2:])
        else:
            h, m = warp_bev(prev['feat'], prev['cur2past'], self.pc_range)
            v = prev['valid'].to(x.dtype).view(-1, 1, 1, 1)
            h, m = h * v, m * v
        z, r = torch.sigmoid(self.gates(torch.cat([x, h, m], 1))).chunk(2, 1)
        n = torch.tanh(self.cand(torch.cat([x, r * h], 1)))
        return (1 - z) * n + z * h

    def output(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Fused BEV [B, C, X, Y] from the input and the new state."""
        return x + self.proj(state)
