"""Softmax (multi-class) focal loss with optional per-class alpha."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from occ.registry import MODELS

from ._utils import flatten_valid, zero_loss


@MODELS.register_module()
class FocalLoss(nn.Module):
    """loss_i = -alpha[t_i] * (1 - p_i)^gamma * log p_i with p_i = softmax(x_i)[t_i].

    ``reduction='mean'`` divides the sum by the number of valid voxels (alpha
    rescales a voxel's contribution; it does not renormalise, as in RetinaNet).

    Args:
        gamma: focusing exponent; 0 with no alpha is plain cross-entropy.
        alpha: None (all 1) or a per-class weight list of length C.
        reduction: 'mean' or 'sum'.
        loss_weight: multiplies the result.
    """

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | None = None,
                 reduction: str = 'mean', loss_weight: float = 1.0):
        super().__init__()
        if reduction not in ('mean', 'sum'):
            raise ValueError(f"FocalLoss: reduction must be 'mean' or 'sum', got {reduction!r}")
        self.gamma, self.reduction, self.loss_weight = float(gamma), reduction, float(loss_weight)
        self.register_buffer('alpha', None if alpha is None else
                             torch.as_tensor(alpha, dtype=torch.float32), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """logits [B, C, ...], target long [B, ...], mask bool [B, ...] or None -> scalar."""
        x, t = flatten_valid(logits, target, mask, type(self).__name__)
        if self.alpha is not None and self.alpha.numel() != x.shape[1]:
            raise ValueError(f'FocalLoss: alpha has {self.alpha.numel()} entries for {x.shape[1]} classes')
        if t.numel() == 0:
            return zero_loss(logits)
        logp = F.log_softmax(x, dim=1).gather(1, t[:, None]).squeeze(1)
        loss = -((1 - logp.exp()) ** self.gamma) * logp
        if self.alpha is not None:
            loss = loss * self.alpha.to(loss.dtype)[t]
        loss = loss.mean() if self.reduction == 'mean' else loss.sum()
        return self.loss_weight * loss
