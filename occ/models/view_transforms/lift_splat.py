"""Lift-Splat (Philion & Fidler, 2020) view transform with BEVDepth-style depth supervision.

Per camera pixel a depth net predicts a distribution over D depth bins and
C context features; their outer product is "lifted" to the frustum points and
"splatted" (summed) into BEV cells by :func:`occ.ops.bev_pool.bev_pool`, whose
point-to-cell plan is cached per calibration.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from occ.geometry import OCC3D_RANGE, OccGrid
from occ.ops.bev_pool import BEVPoolPlanCache, bev_pool, build_bev_pool_plan
from occ.registry import MODELS

from .frustum import create_frustum, frustum_to_ego


def depth_to_bins(depth: torch.Tensor, depth_bins: Sequence[float]) -> torch.Tensor:
    """Metric depth [...] -> bin index (long) [...]; -1 where depth <= 0 or outside [d_min, d_max)."""
    d_min, d_max, step = (float(x) for x in depth_bins)
    num = int(round((d_max - d_min) / step))
    idx = torch.floor((depth - d_min) / step).long()
    valid = (depth > 0) & (idx >= 0) & (idx < num)
    return torch.where(valid, idx, torch.full_like(idx, -1))


def downsample_depth(depth: torch.Tensor, stride: int) -> torch.Tensor:
    """LiDAR depth per pixel [B, N, H, W] (0 = none) -> nearest valid depth per stride cell [B, N, H/s, W/s].

    Taking the minimum keeps the foreground surface when a cell straddles an edge (as BEVDepth does).
    """
    B, N, H, W = depth.shape
    d = depth.reshape(B, N, H // stride, stride, W // stride, stride)
    d = torch.where(d > 0, d, torch.full_like(d, float('inf'))).amin(dim=(3, 5))
    return torch.where(torch.isinf(d), torch.zeros_like(d), d)


@MODELS.register_module()
class LiftSplat(nn.Module):
    """Image features -> BEV features [B, C, X, Y] on the occupancy grid (z collapsed).

    Args:
        in_channels: channels of the image feature map used.
        out_channels: C, BEV feature channels.
        depth_bins: (d_min, d_max, step) metres; D = (d_max - d_min) / step.
        downsample: stride of the image feature map (checked against the input).
        pc_range, voxel_size: the BEV grid (occ.geometry.OccGrid); height is collapsed.
        mid_channels: hidden channels of the depth net.
        in_index: which neck output to use.
        pool_method: 'spmm' or 'index_add' (see occ.ops.bev_pool).
        plan_cache_size: calibrations whose pooling plans are kept.

    forward(feats, batch) -> dict(bev [B, C, X, Y], depth [B, N, D, h, w] logits).
    """

    def __init__(self, in_channels: int, out_channels: int, depth_bins: Sequence[float] = (1.0, 45.0, 1.0),
                 downsample: int = 16, pc_range: Sequence[float] = OCC3D_RANGE, voxel_size: float = 0.8,
                 mid_channels: Optional[int] = None, in_index: int = 0, pool_method: str = 'spmm',
                 plan_cache_size: int = 8):
        super().__init__()
        self.depth_bins = tuple(float(x) for x in depth_bins)
        self.num_bins = int(round((self.depth_bins[1] - self.depth_bins[0]) / self.depth_bins[2]))
        self.out_channels = int(out_channels)
        self.downsample = int(downsample)
        self.grid = OccGrid.from_voxel(voxel_size, pc_range)
        self.in_index = int(in_index)
        self.pool_method = pool_method
        mid = int(mid_channels or in_channels)
        self.depth_net = nn.Sequential(
            nn.Conv2d(in_channels, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, self.num_bins + self.out_channels, 1))
        self.plan_cache = BEVPoolPlanCache(plan_cache_size)

    def get_plan(self, batch: dict, img_size: tuple, feat_size: tuple):
        """The pooling plan for this batch's calibration (built once, then cached)."""
        B, N = batch['intrinsics'].shape[:2]
        bev_aug = batch.get('bev_aug')
        if bev_aug is None:
            bev_aug = torch.eye(4, device=batch['intrinsics'].device).expand(B, 4, 4)
        calib = [batch['intrinsics'], batch['cam2ego'], batch['img_aug'], bev_aug]
        extra = (img_size, feat_size, self.downsample, self.depth_bins, self.grid.pc_range, self.grid.voxel_size)

        def build():
            frustum = create_frustum(img_size, self.downsample, self.depth_bins).to(batch['intrinsics'].device)
            geom = frustum_to_ego(frustum, batch['intrinsics'].float(), batch['cam2ego'].float(),
                                  batch['img_aug'].float(), bev_aug.float())
            return build_bev_pool_plan(geom, self.grid.pc_range, self.grid.shape, collapse_z=True)

        return self.plan_cache.get(calib, extra, build)

    def forward(self, feats: Sequence[torch.Tensor], batch: dict) -> dict:
        x = feats[self.in_index]                                    # [B*N, Cin, h, w]
        B, N, _, H, W = batch['imgs'].shape
        h, w = x.shape[-2:]
        if (H, W) != (h * self.downsample, w * self.downsample):
            raise ValueError(f'LiftSplat: feature map {h}x{w} is not the image {H}x{W} / downsample {self.downsample}')
        out = self.depth_net(x)
        depth_logits = out[:, :self.num_bins].reshape(B, N, self.num_bins, h, w)
        context = out[:, self.num_bins:].reshape(B, N, self.out_channels, h, w).permute(0, 1, 3, 4, 2)
        plan = self.get_plan(batch, (H, W), (h, w))
        # pooling in float32 also under autocast: sums over thousands of points
        bev = bev_pool(depth_logits.float().softmax(2), context.float(), plan, method=self.pool_method)
        # bev_pool returns channels-last memory; downstream modules may .view() it
        return dict(bev=bev.contiguous(), depth=depth_logits)

    def loss_depth(self, depth_logits: torch.Tensor, gt_depth: torch.Tensor) -> torch.Tensor:
        """BEVDepth-style depth loss (unweighted).

        Args:
            depth_logits: [B, N, D, h, w] from forward.
            gt_depth: [B, N, H, W] metric LiDAR depth at the input image size, 0 = no point.

        Binary cross-entropy between the softmax depth distribution and the
        one-hot bin of the nearest LiDAR depth in each feature cell, summed over
        bins, averaged over cells that have a LiDAR point inside the depth range.
        """
        B, N, D, h, w = depth_logits.shape
        cell_depth = downsample_depth(gt_depth.float(), self.downsample)
        if cell_depth.shape[-2:] != (h, w):
            raise ValueError(f'depth target {tuple(gt_depth.shape)} does not match the depth map {h}x{w} '
                             f'at stride {self.downsample}')
        bins = depth_to_bins(cell_depth, self.depth_bins)               # [B, N, h, w]
        valid = bins >= 0
        logp = depth_logits.float().log_softmax(2).permute(0, 1, 3, 4, 2)[valid]   # [V, D]
        target = F.one_hot(bins[valid], D).float()
        # log(1 - p) computed from log p without cancelling to -inf where p -> 1
        log1mp = torch.log1p(-logp.exp().clamp(max=1 - 1e-6))
        bce = -(target * logp + (1 - target) * log1mp).sum()
        return bce / valid.sum().clamp(min=1)
