"""Cross-attention view transform (BEVFormer's spatial encoder, Li et al. 2022), pure torch.

Learned BEV queries on an (optionally coarser) grid over the occupancy range
read multi-scale, multi-camera image features through deformable spatial
cross-attention at their projected 3D reference pillars; each layer is

    q = LN(q + SCA(q + pos)),   q = LN(q + FFN(q))

(post-norm, as BEVFormer; no temporal self-attention here: temporal fusion
is a separate stage of occ). The query grid is then upsampled to the
occupancy grid's X x Y.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from occ.geometry import OCC3D_RANGE, OccGrid
from occ.registry import MODELS

from .reference_points import pillar_points, project_pillars
from .spatial_attention import SpatialCrossAttention


class _EncoderLayer(nn.Module):
    """Spatial cross-attention and FFN, each with residual and post-LayerNorm."""

    def __init__(self, embed_dims: int, ffn_dims: int, dropout: float, **sca_kwargs):
        super().__init__()
        self.attn = SpatialCrossAttention(embed_dims, **sca_kwargs)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.ffn = nn.Sequential(nn.Linear(embed_dims, ffn_dims), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(ffn_dims, embed_dims))
        self.norm2 = nn.LayerNorm(embed_dims)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query, pos, feats, ref_loc, ref_valid):
        q = self.norm1(query + self.dropout(self.attn(query + pos, feats, ref_loc, ref_valid)))
        return self.norm2(q + self.dropout(self.ffn(q)))


@MODELS.register_module()
class CrossAttentionBEV(nn.Module):
    """Image features -> BEV features [B, C, X, Y] by deformable cross-attention.

    Args:
        in_channels: channels of every used neck level.
        embed_dims: C of queries and of the output BEV.
        pc_range, voxel_size: the occupancy grid (output is its X x Y).
        bev_downsample: query grid = (X / s, Y / s); the result is upsampled to X x Y.
        in_indices: which neck outputs to attend to (multi-scale).
        num_layers: encoder layers.
        num_heads, num_points: of the deformable attention.
        num_z: reference points per pillar, evenly spread over the grid's z range.
        ffn_dims: hidden width of the FFN (default 2 * embed_dims).
        num_cams: cameras N (for the learned camera embedding).
        dropout: in attention residuals and FFN.

    forward(feats: list of [B*N, in_channels, h_l, w_l], batch) -> dict(bev [B, C, X, Y]).
    """

    def __init__(self, in_channels: int, embed_dims: int = 64, pc_range: Sequence[float] = OCC3D_RANGE,
                 voxel_size: float = 0.8, bev_downsample: int = 2, in_indices: Sequence[int] = (0,),
                 num_layers: int = 2, num_heads: int = 4, num_points: int = 2, num_z: int = 4,
                 ffn_dims: int | None = None, num_cams: int = 6, dropout: float = 0.0):
        super().__init__()
        self.grid = OccGrid.from_voxel(voxel_size, pc_range)
        X, Y, _ = self.grid.shape
        s = int(bev_downsample)
        if s < 1 or X % s or Y % s:
            raise ValueError(f'CrossAttentionBEV: grid {X}x{Y} is not divisible by bev_downsample {s}')
        self.bev_shape = (X // s, Y // s)
        self.out_shape = (X, Y)
        self.in_indices = tuple(int(i) for i in in_indices)
        self.embed_dims, self.num_cams = int(embed_dims), int(num_cams)
        n_q = self.bev_shape[0] * self.bev_shape[1]
        self.bev_queries = nn.Parameter(torch.empty(n_q, embed_dims))
        self.bev_pos = nn.Parameter(torch.empty(n_q, embed_dims))
        self.cams_embed = nn.Parameter(torch.empty(num_cams, in_channels))
        self.level_embed = nn.Parameter(torch.empty(len(self.in_indices), in_channels))
        for p in (self.bev_queries, self.bev_pos, self.cams_embed, self.level_embed):
            nn.init.trunc_normal_(p, std=0.02)
        self.layers = nn.ModuleList(
            _EncoderLayer(embed_dims, ffn_dims or 2 * embed_dims, dropout, num_heads=num_heads,
                          num_levels=len(self.in_indices), num_z=num_z, num_points=num_points,
                          value_dims=in_channels)
            for _ in range(num_layers))
        self.register_buffer('ref_points', pillar_points(self.grid.pc_range, self.bev_shape, num_z),
                             persistent=False)
        self.upsample = None if s == 1 else nn.Sequential(
            nn.Upsample(scale_factor=s, mode='bilinear', align_corners=False),
            nn.Conv2d(embed_dims, embed_dims, 3, padding=1, bias=False),
            nn.BatchNorm2d(embed_dims), nn.ReLU(inplace=True))

    def encode(self, feats: Sequence[torch.Tensor], batch: dict) -> torch.Tensor:
        """Run the encoder layers: queries [B, Q, C] on the query grid (q = ix * Yq + iy)."""
        imgs = batch['imgs']
        b, n = imgs.shape[:2]
        if n != self.num_cams:
            raise ValueError(f'CrossAttentionBEV: batch has {n} cameras, model built for num_cams={self.num_cams}')
        maps = []
        for lvl, i in enumerate(self.in_indices):
            if i >= len(feats):
                raise ValueError(f'CrossAttentionBEV: in_indices {self.in_indices} but only {len(feats)} feature maps')
            x = feats[i]
            if x.shape[0] != b * n:
                raise ValueError(f'CrossAttentionBEV: feature map {i} has batch {x.shape[0]}, expected B*N = {b * n}')
            emb = (self.cams_embed[None, :, :] + self.level_embed[lvl]).reshape(1, n, -1, 1, 1)
            maps.append((x.reshape(b, n, *x.shape[1:]) + emb.to(x.dtype)).flatten(0, 1))
        ref_loc, ref_valid = project_pillars(self.ref_points, batch, imgs.shape[-2:])
        query = self.bev_queries[None].expand(b, -1, -1)
        pos = self.bev_pos[None].expand(b, -1, -1)
        for layer in self.layers:
            query = layer(query, pos, maps, ref_loc, ref_valid)
        return query

    def forward(self, feats: Sequence[torch.Tensor], batch: dict) -> dict:
        query = self.encode(feats, batch)
        b = query.shape[0]
        bev = query.transpose(1, 2).reshape(b, self.embed_dims, *self.bev_shape)
        if self.upsample is not None:
            bev = self.upsample(bev)
        return dict(bev=bev)
