"""Temporal self-attention of current BEV queries to past BEV maps (BEVFormer-style).

Deformable-style sampling in pure torch: every current cell (query) predicts,
per head and per frame, P sampling offsets around its own location and one
attention logit per point. The location of a query in a past frame is its
cell centre moved by ego motion (``cur2past``), so the past maps are sampled
directly in their own frames (one bilinear read, no pre-warp of the values).
Points that fall outside a past map, or frames that do not exist, are
excluded from the softmax rather than read as zeros.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from occ.geometry import OccGrid, inside_mask, metric_to_normalized, sample_bev, transform_xy, warp_bev

from .registry import TEMPORAL_FUSIONS


@TEMPORAL_FUSIONS.register_module()
class TemporalSelfAttention(nn.Module):
    """Deformable attention of current BEV queries over (T past frames + current).

    Args:
        channels: C of the BEV maps (divisible by ``num_heads``).
        num_frames: T past frames.
        pc_range: grid range, metres.
        num_heads: attention heads.
        num_points: sampling points per head and frame.
        offset_scale: initial radius of the sampling pattern, in cells.
    """

    recurrent = False

    def __init__(self, channels: int, num_frames: int, pc_range, num_heads: int = 4,
                 num_points: int = 4, offset_scale: float = 1.0):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f'channels {channels} not divisible by num_heads {num_heads}')
        if num_frames < 1:
            raise ValueError(f'TemporalSelfAttention needs num_frames >= 1, got {num_frames}')
        self.channels, self.num_frames = channels, num_frames
        self.num_heads, self.num_points = num_heads, num_points
        self.pc_range = tuple(float(v) for v in pc_range)
        nf = num_frames + 1
        # Offsets and weights are predicted from the query and every aligned
        # frame together, so a query can look where its past self moved.
        self.offsets = nn.Conv2d(channels * nf, nf * num_heads * num_points * 2, 1)
        self.weights = nn.Conv2d(channels * nf, nf * num_heads * num_points, 1)
        self.value_proj = nn.Conv2d(channels, channels, 1)
        self.out_proj = nn.Conv2d(channels, channels, 1)
        self._init_offsets(offset_scale)

    def _init_offsets(self, scale: float):
        # Start from a ring of points per head (heads rotated against each
        # other), like deformable DETR, so the initial receptive field is spread.
        nn.init.zeros_(self.offsets.weight)
        nf, h, p = self.num_frames + 1, self.num_heads, self.num_points
        ang = torch.arange(h * p, dtype=torch.float32) * (2 * math.pi / (h * p))
        ring = torch.stack([ang.cos(), ang.sin()], -1).view(h, p, 2)
        ring = ring * (torch.arange(p, dtype=torch.float32) + 1).view(1, p, 1) / p * scale
        with torch.no_grad():
            self.offsets.bias.copy_(ring.expand(nf, h, p, 2).reshape(-1))
        nn.init.zeros_(self.weights.weight)
        nn.init.zeros_(self.weights.bias)

    def forward(self, cur: torch.Tensor, frames: list) -> torch.Tensor:
        """
        Args:
            cur: [B, C, X, Y] current BEV (queries; also the last "frame").
            frames: ``num_frames`` dicts, oldest first: ``feat`` [B, C, X, Y]
                in the past ego frame, ``cur2past`` [B, 4, 4], ``valid`` bool [B].
        Returns:
            fused [B, C, X, Y] = cur + attention output.
        """
        if len(frames) != self.num_frames:
            raise ValueError(f'TemporalSelfAttention expects {self.num_frames} frames, got {len(frames)}')
        b, c, nx, ny = cur.shape
        nf, h, p = self.num_frames + 1, self.num_heads, self.num_points
        eye = torch.eye(4, device=cur.device, dtype=cur.dtype).expand(b, 4, 4)
        all_frames = list(frames) + [dict(feat=cur, cur2past=eye,
                                          valid=torch.ones(b, dtype=torch.bool, device=cur.device))]

        aligned = [warp_bev(f['feat'], f['cur2past'], self.pc_range)[0] for f in frames]
        ctx = torch.cat([*aligned, cur], 1)
        bev_grid = OccGrid.from_shape(self.pc_range, (nx, ny))
        cell = torch.tensor(bev_grid.voxel.tolist(), device=cur.device, dtype=cur.dtype)
        # offsets [B, F, H, P, X, Y, 2] in metres, in the current ego frame
        off = self.offsets(ctx).view(b, nf, h, p, 2, nx, ny).permute(0, 1, 2, 3, 5, 6, 4) * cell
        logits = self.weights(ctx).view(b, nf, h, p, nx, ny)
        centers = bev_grid.centers_torch(cur.device).to(cur.dtype)

        sampled, valids = [], []
        for fi, f in enumerate(all_frames):
            pts = centers + off[:, fi]                                  # [B, H, P, X, Y, 2] current frame
            pts = transform_xy(pts, f['cur2past'].to(cur.dtype))        # into that frame
            grid = metric_to_normalized(pts, self.pc_range)
            valid = inside_mask(grid) & f['valid'].view(b, 1, 1, 1, 1)  # [B, H, P, X, Y]
            value = self.value_proj(f['feat']).view(b * h, c // h, nx, ny)
            grid = grid.permute(0, 1, 3, 4, 2, 5).reshape(b * h, nx * ny, p, 2)
            s = sample_bev(value, grid).view(b, h, c // h, nx, ny, p)   # [B, H, C/H, X, Y, P]
            sampled.append(s)
            valids.append(valid)
        sampled = torch.stack(sampled, 1)                               # [B, F, H, C/H, X, Y, P]
        valid = torch.stack(valids, 1)                                  # [B, F, H, P, X, Y]
        logits = logits.masked_fill(~valid, float('-inf'))
        # softmax jointly over frames and points; a query with no valid point gets 0
        logits = logits.permute(0, 2, 4, 5, 1, 3).reshape(b, h, nx, ny, nf * p)
        attn = torch.softmax(logits, -1)
        attn = torch.nan_to_num(attn, nan=0.0).view(b, h, nx, ny, nf, p)
        out = torch.einsum('bfhcxyp,bhxyfp->bhcxy', sampled, attn).reshape(b, c, nx, ny)
        return cur + self.out_proj(out)
