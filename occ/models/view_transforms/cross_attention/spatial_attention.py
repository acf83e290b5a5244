"""BEVFormer's spatial cross-attention, pure torch (no mmcv).

Each BEV query owns a pillar of Z reference points. For every camera the
pillar hits (some point projects inside the image, in front of the camera),
the query samples every feature level of that camera's image around each
projected point: per head, level, pillar point and sampling point it learns
an offset (in feature cells of that level) and an attention weight (softmax
over levels x points, as MSDeformAttn). The per-camera results are summed
and divided by the number of cameras hit. Queries that hit no camera get
exactly zero from this module, so a residual connection leaves them at
their query value.

Only (camera, query) pairs that hit are evaluated ("rebatching"): each
camera's hit queries are packed first, padded to the largest count.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from occ.ops.deform_sampling import multi_scale_deform_sample


class SpatialCrossAttention(nn.Module):
    """Deformable cross-attention from BEV queries to multi-camera, multi-scale features.

    Args:
        embed_dims: C of queries and values.
        num_heads: attention heads (C divisible by it).
        num_levels: feature levels L.
        num_z: reference points per pillar Z.
        num_points: sampling points per head, level and pillar point P.
        value_dims: channels of the image features (default embed_dims).
    """

    def __init__(self, embed_dims: int, num_heads: int = 4, num_levels: int = 1, num_z: int = 4,
                 num_points: int = 2, value_dims: int | None = None):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'SpatialCrossAttention: embed_dims {embed_dims} not divisible by num_heads {num_heads}')
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.num_levels, self.num_z, self.num_points = num_levels, num_z, num_points
        n = num_heads * num_levels * num_z * num_points
        self.sampling_offsets = nn.Linear(embed_dims, n * 2)
        self.attention_weights = nn.Linear(embed_dims, n)
        self.value_proj = nn.Linear(value_dims or embed_dims, embed_dims)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Start with each head looking in its own direction, points at growing
        # radius (deformable DETR's idea): the sampling covers a neighbourhood
        # before any training. Uniform attention weights.
        nn.init.zeros_(self.sampling_offsets.weight)
        angle = torch.arange(self.num_heads, dtype=torch.float32) * (2 * math.pi / self.num_heads)
        direction = torch.stack([angle.cos(), angle.sin()], -1)                  # [H, 2]
        radius = torch.arange(1, self.num_points + 1, dtype=torch.float32)       # [P]
        bias = direction[:, None, None, None, :] * radius[None, None, None, :, None]
        bias = bias.expand(self.num_heads, self.num_levels, self.num_z, self.num_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: torch.Tensor, feats: Sequence[torch.Tensor], ref_loc: torch.Tensor,
                ref_valid: torch.Tensor) -> torch.Tensor:
        """
        Args:
            query: [B, Q, C] queries (positional embedding already added).
            feats: L maps [B * N, value_dims, h_l, w_l] (camera-major within each sample).
            ref_loc: [B, N, Q, Z, 2] normalised image coordinates of the pillar points.
            ref_valid: [B, N, Q, Z] bool, point inside camera n's image.

        Returns:
            [B, Q, C]; exactly zero for queries that hit no camera.
        """
        b, q, c = query.shape
        n = ref_loc.shape[1]
        H, L, Z, P = self.num_heads, self.num_levels, self.num_z, self.num_points
        if len(feats) != L:
            raise ValueError(f'SpatialCrossAttention: got {len(feats)} feature levels, expected {L}')
        hit = ref_valid.any(-1)                                           # [B, N, Q]
        counts = hit.sum(-1)                                              # [B, N]
        max_len = int(counts.max()) if counts.numel() else 0
        out = query.new_zeros(b * q, c)
        cams_hit = hit.sum(1)                                             # [B, Q]
        if max_len == 0:
            return out.view(b, q, c)

        # pack each camera's hit queries first (stable sort keeps query order)
        order = torch.argsort((~hit).to(torch.int8), dim=-1, stable=True)[..., :max_len]   # [B, N, M]
        slot_ok = torch.arange(max_len, device=query.device) < counts[..., None]             # [B, N, M]

        offsets = self.sampling_offsets(query).view(b, q, H, L, Z, P, 2)
        weights = self.attention_weights(query).view(b, q, H, L * Z * P).softmax(-1).view(b, q, H, L, Z, P)
        bi = torch.arange(b, device=query.device)[:, None, None]
        offsets, weights = offsets[bi, order], weights[bi, order]         # [B, N, M, H, L, Z, P(, 2)]
        loc = torch.gather(ref_loc, 2, order[..., None, None].expand(b, n, max_len, Z, 2))  # [B, N, M, Z, 2]

        values, sizes = [], []
        for x in feats:
            h_l, w_l = x.shape[-2:]
            v = self.value_proj(x.flatten(2).transpose(1, 2))             # [B*N, h*w, C]
            values.append(v.view(b * n, h_l * w_l, H, c // H).permute(0, 2, 3, 1).reshape(b * n * H, c // H, h_l, w_l))
            sizes.append((w_l, h_l))
        # offsets are in feature cells of each level: normalise by that level's size
        norm = torch.tensor(sizes, dtype=offsets.dtype, device=offsets.device)               # [L, 2] (w, h)
        loc = loc[:, :, :, None, None, :, None, :] + offsets / norm[:, None, None, :]       # [B, N, M, H, L, Z, P, 2]
        loc = loc.permute(0, 1, 3, 2, 4, 5, 6, 7).reshape(b * n * H, max_len, L, Z * P, 2)
        w = weights.permute(0, 1, 3, 2, 4, 5, 6).reshape(b * n * H, max_len, L, Z * P)
        sampled = multi_scale_deform_sample(values, loc, w)              # [B*N*H, M, C/H]
        sampled = sampled.view(b, n, H, max_len, c // H).permute(0, 1, 3, 2, 4).reshape(b, n, max_len, c)
        sampled = sampled * slot_ok[..., None].to(sampled.dtype)

        flat_q = (order + torch.arange(b, device=query.device)[:, None, None] * q)[slot_ok]   # [K]
        out = out.index_add(0, flat_q, sampled[slot_ok])
        out = out.view(b, q, c) / cams_hit.clamp(min=1)[..., None].to(out.dtype)
        return self.output_proj(out) * (cams_hit > 0)[..., None].to(out.dtype)
