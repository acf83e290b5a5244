"""A light BEV encoder: residual blocks at full resolution and one stride-2 stage, fused back."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from occ.registry import MODELS


class BasicBlock(nn.Module):
    """ResNet basic block (3x3 conv, BN, ReLU, 3x3 conv, BN, + shortcut, ReLU).

    [B, Cin, X, Y] -> [B, Cout, X/s, Y/s].
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x), inplace=True)


@MODELS.register_module()
class BEVEncoder(nn.Module):
    """BEV feature encoder (BEVDet/FlashOcc style, slimmed for CPU).

    ``num_blocks`` basic blocks at full resolution, then ``num_down_blocks``
    blocks at half resolution (the first one strided), upsampled and
    concatenated with the full-resolution features, then a 3x3 conv. The
    half-resolution stage enlarges the receptive field at a quarter of the cost.

    Args:
        in_channels, out_channels: C_in, C_out.
        num_blocks: full-resolution blocks (0 allowed).
        num_down_blocks: half-resolution blocks (0 disables the stage).
        down_channels: channels of the half-resolution stage (default 2 * in_channels).
        fuse_kernel: kernel of the fusing conv (3, or 1 for a cheaper head on CPU).

    Shapes: [B, C_in, X, Y] -> [B, C_out, X, Y] (X, Y even when num_down_blocks > 0).
    """

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int = 1, num_down_blocks: int = 1,
                 down_channels: int = None, fuse_kernel: int = 3):
        super().__init__()
        self.full = nn.Sequential(*[BasicBlock(in_channels, in_channels) for _ in range(num_blocks)])
        dc = int(down_channels or 2 * in_channels)
        self.down = nn.Sequential(*[BasicBlock(in_channels if i == 0 else dc, dc, stride=2 if i == 0 else 1)
                                    for i in range(num_down_blocks)])
        fused = in_channels + (dc if num_down_blocks > 0 else 0)
        self.fuse = nn.Sequential(nn.Conv2d(fused, out_channels, fuse_kernel, padding=fuse_kernel // 2, bias=False),
                                  nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.full(x)
        if len(self.down):
            y = self.down(x)
            y = F.interpolate(y, size=x.shape[-2:], mode='bilinear', align_corners=False)
            x = torch.cat([x, y], 1)
        return self.fuse(x)
