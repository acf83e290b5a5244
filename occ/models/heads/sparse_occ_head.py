"""Sparse coarse-to-fine occupancy head (the SparseOcc idea, Tang et al. 2024 / Liu et al. 2024).

Most of an occupancy grid is free (≈94 % on Occ3D), so decoding every voxel
at full resolution wastes memory on empty space. This head decodes a coarse
volume densely, then repeatedly keeps only the voxels it believes occupied,
splits each into its 8 children and refines them with submanifold sparse
convolutions (spconv), so the cost follows the occupied surface, not the
volume:

    BEV [B, C, X, Y] --3x3 conv, pool to X/f x Y/f, 1x1 conv to C0*Z/f--> coarse volume (all active)
    level l = 0..L-1: SubM refine -> occupancy logit -> keep (score or GT parent) -> split x2
    level L (full grid): SubM refine -> 18-class logits on the active voxels

with f = 2^L. Pruned voxels are predicted free: in the dense view their
logits are ``free_logit`` for class 17 and 0 elsewhere. The split is a
learned per-child projection (a stride-2 transposed 2x2x2 convolution
evaluated only at kept parents).

Training: every level gets a binary occupancy loss on its active voxels (a
voxel is occupied if any labelled voxel inside its footprint is non-free);
voxels whose footprint holds GT-occupied voxels are always kept so the fine
levels see every occupied voxel (pass ``voxel_semantics`` to forward). The
configured semantic losses see the final active voxels.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from occ.constants import FREE, IGNORE_INDEX, NUM_CLASSES
from occ.ops.spconv_shim import require_spconv
from occ.registry import MODELS

from .base import BaseOccHead

DEFAULT_LOSSES = (
    dict(type='WeightedCELoss', class_weight='auto', loss_weight=1.0),
    dict(type='LovaszSoftmaxLoss', loss_weight=1.0),
)


def coarse_occupancy(voxel_semantics: torch.Tensor, mask: torch.Tensor | None,
                     factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """GT occupancy at a coarser resolution.

    Args:
        voxel_semantics: [B, X, Y, Z] integer labels (17 free, 255 ignore).
        mask: [B, X, Y, Z] bool/uint8 or None (1 = counts for the loss).
        factor: integer down-sampling factor dividing X, Y and Z.

    Returns:
        occupied [B, X/f, Y/f, Z/f] bool (some valid voxel inside is non-free),
        valid [B, X/f, Y/f, Z/f] bool (some voxel inside is labelled and unmasked).
    """
    sem = voxel_semantics.long()
    valid = sem != IGNORE_INDEX
    if mask is not None:
        valid = valid & mask.bool()
    occ = valid & (sem != FREE)
    if factor == 1:
        return occ, valid
    b, x, y, z = sem.shape
    shape = (b, x // factor, factor, y // factor, factor, z // factor, factor)
    return occ.reshape(shape).any(6).any(4).any(2), valid.reshape(shape).any(6).any(4).any(2)


def _gather(volume: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """volume [B, X, Y, Z] at indices [M, 4] (b, x, y, z) -> [M]."""
    i = indices.long()
    return volume[i[:, 0], i[:, 1], i[:, 2], i[:, 3]]


class _SubMBlock(nn.Module):
    """SubMConv3d 3x3x3 -> BatchNorm1d -> ReLU on the features of a SparseConvTensor."""

    def __init__(self, channels: int, indice_key: str):
        super().__init__()
        spconv = require_spconv('SparseOccHead')
        self.conv = spconv.SubMConv3d(channels, channels, 3, padding=1, bias=False, indice_key=indice_key)
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x):
        x = self.conv(x)
        return x.replace_feature(F.relu(self.norm(x.features)))


@MODELS.register_module()
class SparseOccHead(BaseOccHead):
    """Coarse-to-fine sparse occupancy head.

    Args:
        in_channels: C of the BEV input [B, C, Xb, Y_b] (any Xb, Yb; pooled to the coarse grid).
        grid_shape: (X, Y, Z) of the output grid, each divisible by 2^(len(channels)-1).
        channels: feature width per level, coarse to fine; len(channels) - 1 splits.
        num_convs: SubM blocks per level.
        keep_threshold: keep voxels with occupancy probability above this.
        keep_ratio: if set, instead keep the top ``ceil(keep_ratio * M_b)`` of each
            sample's M_b active voxels (bounded memory regardless of scores).
        keep_gt_in_training: also keep voxels holding GT-occupied voxels (training only).
        occ_prior: initial occupancy probability of the level classifiers.
        free_logit: logit of class 17 at pruned voxels in the dense view (others 0).
        num_classes: 18 (Occ3D).
        losses: semantic loss configs (``MODELS``, see :class:`BaseOccHead`), applied
            to the final active voxels.
        occ_loss_weight: weight of each level's binary occupancy BCE.
        occ_pos_weight: BCE weight of occupied voxels (they are the minority).

    ``uses_labels_in_forward``: a model should call ``head(bev, voxel_semantics=..., mask=...)``
    in training so GT-occupied voxels are kept (without them the head still trains,
    but on the voxels it already believes occupied).
    """

    uses_labels_in_forward = True

    def __init__(self, in_channels: int, grid_shape: Sequence[int] = (100, 100, 8),
                 channels: Sequence[int] = (64, 32, 32), num_convs: int = 1,
                 keep_threshold: float = 0.5, keep_ratio: float | None = None,
                 keep_gt_in_training: bool = True, occ_prior: float = 0.1,
                 free_logit: float = 10.0, num_classes: int = NUM_CLASSES,
                 losses: Sequence[dict] = DEFAULT_LOSSES, occ_loss_weight: float = 1.0,
                 occ_pos_weight: float = 2.0):
        super().__init__(losses)
        self.spconv = require_spconv('SparseOccHead')
        self.grid_shape = tuple(int(s) for s in grid_shape)
        self.channels = tuple(int(c) for c in channels)
        self.num_splits = len(self.channels) - 1
        self.factor = 2 ** self.num_splits
        if len(self.grid_shape) != 3 or any(s % self.factor for s in self.grid_shape):
            raise ValueError(f'SparseOccHead: grid_shape {self.grid_shape} must be divisible by '
                             f'2^{self.num_splits} = {self.factor} ({len(self.channels)} levels)')
        if keep_ratio is not None and not 0 < keep_ratio <= 1:
            raise ValueError(f'SparseOccHead: keep_ratio must be in (0, 1], got {keep_ratio}')
        self.coarse_shape = tuple(s // self.factor for s in self.grid_shape)
        self.keep_threshold, self.keep_ratio = float(keep_threshold), keep_ratio
        self.keep_gt_in_training = bool(keep_gt_in_training)
        self.free_logit, self.num_classes = float(free_logit), int(num_classes)
        self.occ_loss_weight, self.occ_pos_weight = float(occ_loss_weight), float(occ_pos_weight)
        self._warned = False

        c0, zc = self.channels[0], self.coarse_shape[2]
        self.bev_conv = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True))
        # channel-to-height: one 1x1 conv produces C0 features for each of the Zc heights
        self.to_height = nn.Conv2d(in_channels, c0 * zc, 1)
        self.blocks = nn.ModuleList(
            nn.Sequential(*[_SubMBlock(c, f'subm{level}') for _ in range(num_convs)])
            for level, c in enumerate(self.channels))
        self.occ_preds = nn.ModuleList(nn.Linear(c, 1) for c in self.channels[:-1])
        prior_bias = math.log(occ_prior / (1 - occ_prior))
        for pred in self.occ_preds:
            nn.init.constant_(pred.bias, prior_bias)
        # split: each kept parent emits 8 children, child o = (dx, dy, dz) at index o = 4dx + 2dy + dz
        self.splits = nn.ModuleList(nn.Linear(ci, 8 * co) for ci, co in zip(self.channels[:-1], self.channels[1:]))
        self.cls_pred = nn.Linear(self.channels[-1], self.num_classes)
        self.register_buffer('child_offsets', torch.tensor(
            [[0, dx, dy, dz] for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)], dtype=torch.int32),
            persistent=False)

    # ------------------------------------------------------------------ pieces
    def lift(self, bev: torch.Tensor) -> torch.Tensor:
        """BEV [B, C, Xb, Yb] -> dense coarse volume [B, C0, Xc, Yc, Zc]."""
        xc, yc, zc = self.coarse_shape
        x = self.bev_conv(bev)
        if tuple(x.shape[-2:]) != (xc, yc):
            x = F.adaptive_avg_pool2d(x, (xc, yc))
        x = self.to_height(x)
        b = x.shape[0]
        return x.view(b, self.channels[0], zc, xc, yc).permute(0, 1, 3, 4, 2).contiguous()

    def _select(self, scores: torch.Tensor, indices: torch.Tensor, batch_size: int,
                gt_occupied: torch.Tensor | None) -> torch.Tensor:
        """Which active voxels to split: bool [M] (at least one per sample, so no sample goes empty)."""
        if self.keep_ratio is None:
            keep = scores.sigmoid() > self.keep_threshold
        else:
            keep = torch.zeros_like(scores, dtype=torch.bool)
        b_idx = indices[:, 0].long()
        for b in range(batch_size):
            rows = (b_idx == b).nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            k = 1 if self.keep_ratio is None else max(1, math.ceil(self.keep_ratio * rows.numel()))
            keep[rows[scores[rows].topk(min(k, rows.numel())).indices]] = True
        if gt_occupied is not None:
            keep = keep | gt_occupied
        return keep

    def _split(self, level: int, feats: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Kept parents [M, Ci], [M, 4] -> children [8M, Co], [8M, 4] (int32, b, 2x+dx, 2y+dy, 2z+dz)."""
        m = feats.shape[0]
        child = self.splits[level](feats).view(m * 8, self.channels[level + 1])
        parent = indices * torch.tensor([1, 2, 2, 2], dtype=indices.dtype, device=indices.device)
        child_idx = (parent[:, None, :] + self.child_offsets.to(indices.device)[None]).reshape(m * 8, 4)
        return child, child_idx

    # ------------------------------------------------------------------ forward
    def forward(self, bev: torch.Tensor, voxel_semantics: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> dict:
        """Decode occupancy.

        Args:
            bev: [B, C, Xb, Yb].
            voxel_semantics: optional [B, X, Y, Z] labels; in training mode the
                voxels holding GT-occupied voxels are always kept.
            mask: optional [B, X, Y, Z] visibility used with voxel_semantics.

        Returns:
            dict with ``logits`` [B, 18, X, Y, Z] (dense view, pruned voxels free),
            ``sparse`` (indices int32 [M, 4] (b, x, y, z), logits [M, 18]) and
            ``occ_levels``: per split level (indices [M_l, 4], occupancy logits [M_l]).
        """
        b = bev.shape[0]
        vol = self.lift(bev)
        xc, yc, zc = self.coarse_shape
        grid = torch.stack(torch.meshgrid(
            torch.arange(b), torch.arange(xc), torch.arange(yc), torch.arange(zc), indexing='ij'), -1)
        indices = grid.reshape(-1, 4).to(device=bev.device, dtype=torch.int32)
        feats = vol.permute(0, 2, 3, 4, 1).reshape(-1, self.channels[0])
        use_gt = self.training and self.keep_gt_in_training and voxel_semantics is not None
        if self.training and self.keep_gt_in_training and voxel_semantics is None and not self._warned:
            warnings.warn('SparseOccHead: training without voxel_semantics in forward; GT-occupied '
                          'voxels cannot be kept, fine levels see only score-kept voxels')
            self._warned = True

        occ_levels = []
        for level in range(self.num_splits + 1):
            shape = [s * 2 ** level for s in self.coarse_shape]
            x = self.spconv.SparseConvTensor(feats, indices, shape, b)
            feats = self.blocks[level](x).features
            if level == self.num_splits:
                break
            scores = self.occ_preds[level](feats).squeeze(1)
            occ_levels.append((indices, scores))
            gt_occ = None
            if use_gt:
                occ, _ = coarse_occupancy(voxel_semantics, mask, self.factor // 2 ** level)
                gt_occ = _gather(occ, indices)
            keep = self._select(scores.detach(), indices, b, gt_occ)
            feats, indices = self._split(level, feats[keep], indices[keep])

        logits = self.cls_pred(feats)
        return dict(logits=self.densify(logits, indices, b), sparse=(indices, logits), occ_levels=occ_levels)

    def densify(self, logits: torch.Tensor, indices: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Sparse logits [M, C] at indices [M, 4] -> [B, C, X, Y, Z]; elsewhere free_logit on class 17."""
        fill = logits.new_zeros(self.num_classes)
        fill[FREE] = self.free_logit
        dense = fill.expand(batch_size, *self.grid_shape, self.num_classes).clone()
        i = indices.long()
        dense = dense.index_put((i[:, 0], i[:, 1], i[:, 2], i[:, 3]), logits)
        return dense.permute(0, 4, 1, 2, 3)

    # ------------------------------------------------------------------ loss
    def loss(self, out: dict, voxel_semantics: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        """Per-level occupancy BCE + semantic losses on the final active voxels.

        Args:
            out: forward output.
            voxel_semantics: [B, X, Y, Z] labels.
            mask: [B, X, Y, Z] (e.g. mask_camera) or None.

        Returns:
            dict of scalar ``loss_occ_l{level}`` and ``loss_<name>`` for each semantic loss.
        """
        if tuple(voxel_semantics.shape[1:]) != self.grid_shape:
            raise ValueError(f'SparseOccHead.loss: labels of shape {tuple(voxel_semantics.shape)} '
                             f'do not match grid_shape {self.grid_shape}')
        target = voxel_semantics.long()
        losses = {}
        for level, (indices, scores) in enumerate(out['occ_levels']):
            occ, valid = coarse_occupancy(target, mask, self.factor // 2 ** level)
            occ, valid = _gather(occ, indices), _gather(valid, indices)
            if bool(valid.any()):
                bce = F.binary_cross_entropy_with_logits(
                    scores[valid], occ[valid].to(scores.dtype),
                    pos_weight=scores.new_tensor(self.occ_pos_weight))
            else:
                bce = scores.sum() * 0.0
            losses[f'loss_occ_l{level}'] = self.occ_loss_weight * bce
        indices, logits = out['sparse']
        sem_t = _gather(target, indices)[None]                # [1, M]
        sem_m = None if mask is None else _gather(mask.bool(), indices)[None]
        sem_logits = logits.t()[None]                          # [1, C, M]
        for name, loss_fn in zip(self.loss_names, self.losses):
            losses[name] = loss_fn(sem_logits, sem_t, sem_m)
        return losses

