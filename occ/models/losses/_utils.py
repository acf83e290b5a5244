"""Shared plumbing of the occupancy losses: shape checks and the valid-voxel set."""
from __future__ import annotations

import torch

from occ.constants import IGNORE_INDEX


def flatten_valid(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None,
                  name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the voxels a loss is computed on.

    Args:
        logits: [B, C, *S] float (S any spatial shape, possibly empty: [N, C] works too).
        target: [B, *S] long class indices; ``IGNORE_INDEX`` (255) is dropped.
        mask: [B, *S] bool or None; only voxels with mask True are kept.

    Returns:
        logits [N, C] and target [N] of the valid voxels.
    """
    if logits.dim() < 2:
        raise ValueError(f'{name}: logits must be [B, C, ...], got shape {tuple(logits.shape)}')
    b, c = logits.shape[:2]
    spatial = logits.shape[2:]
    if tuple(target.shape) != (b, *spatial):
        raise ValueError(f'{name}: target shape {tuple(target.shape)} does not match logits '
                         f'{tuple(logits.shape)} (expected {(b, *spatial)})')
    if target.dtype.is_floating_point:
        raise TypeError(f'{name}: target must hold integer class indices, got {target.dtype}')
    flat_logits = logits.reshape(b, c, -1).transpose(1, 2).reshape(-1, c)
    flat_target = target.reshape(-1).long()
    valid = flat_target != IGNORE_INDEX
    if mask is not None:
        if tuple(mask.shape) != tuple(target.shape):
            raise ValueError(f'{name}: mask shape {tuple(mask.shape)} does not match target '
                             f'{tuple(target.shape)}')
        valid = valid & mask.reshape(-1).bool()
    flat_target = flat_target[valid]
    if flat_target.numel() and (int(flat_target.min()) < 0 or int(flat_target.max()) >= c):
        raise ValueError(f'{name}: target holds class {int(flat_target.max())} or '
                         f'{int(flat_target.min())} outside [0, {c}) (255 = ignore)')
    return flat_logits[valid], flat_target


def zero_loss(logits: torch.Tensor) -> torch.Tensor:
    """A zero that keeps the graph connected (so DDP sees every parameter used)."""
    return logits.sum() * 0.0
