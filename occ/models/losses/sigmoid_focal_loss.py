"""Sigmoid (binary, per class) focal loss on one-hot targets (Lin et al., 2017)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from occ.registry import MODELS

from ._utils import flatten_valid, zero_loss


@MODELS.register_module()
class SigmoidFocalLoss(nn.Module):
    """Each class is an independent binary problem against its one-hot target.

    Equals ``torchvision.ops.sigmoid_focal_loss(x, one_hot(t), alpha, gamma, reduction)``
    on the valid voxels: with ``reduction='mean'`` the sum is divided by
    N_valid * C (every element counts), with ``'sum'`` it is not divided.

    Args:
        alpha: weight of positives in (0, 1); negatives get 1 - alpha; < 0 disables.
        gamma: focusing exponent (0 gives plain binary cross-entropy).
        reduction: 'mean' or 'sum'.
        loss_weight: multiplies the result.
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = 'mean',
                 loss_weight: float = 1.0):
        super().__init__()
        if reduction not in ('mean', 'sum'):
            raise ValueError(f"SigmoidFocalLoss: reduction must be 'mean' or 'sum', got {reduction!r}")
        self.alpha, self.gamma = float(alpha), float(gamma)
        self.reduction, self.loss_weight = reduction, float(loss_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """logits [B, C, ...], target long [B, ...], mask bool [B, ...] or None -> scalar."""
        x, t = flatten_valid(logits, target, mask, type(self).__name__)
        if t.numel() == 0:
            return zero_loss(logits)
        onehot = F.one_hot(t, x.shape[1]).to(x.dtype)
        p = torch.sigmoid(x)
        ce = F.binary_cross_entropy_with_logits(x, onehot, reduction='none')
        p_true = p * onehot + (1 - p) * (1 - onehot)
        loss = ce * (1 - p_true) ** self.gamma
        if self.alpha >= 0:
            loss = loss * (self.alpha * onehot + (1 - self.alpha) * (1 - onehot))
        loss = loss.mean() if self.reduction == 'mean' else loss.sum()
        return self.loss_weight * loss
