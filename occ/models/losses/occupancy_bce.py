"""Occupied-vs-free binary cross-entropy on the free class of softmax logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from occ.constants import FREE
from occ.registry import MODELS

from ._utils import flatten_valid, zero_loss


@MODELS.register_module()
class OccupancyBCELoss(nn.Module):
    """BCE of p(occupied) = 1 - softmax(logits)[free], unweighted by class.

    Class-weighted CE pushes the free/occupied boundary towards "occupied"
    (free weighs ~1/30 of a rare class); this term scores geometry alone.

    forward(logits [B, C, ...], target long [B, ...], mask bool [B, ...] | None) -> scalar.
    """

    def __init__(self, free_index: int = FREE, pos_weight: float = 1.0, loss_weight: float = 1.0):
        super().__init__()
        self.free_index, self.pos_weight, self.loss_weight = int(free_index), float(pos_weight), float(loss_weight)

    def forward(self, logits, target, mask=None):
        x, t = flatten_valid(logits, target, mask, type(self).__name__)
        if t.numel() == 0:
            return zero_loss(logits)
        lse = torch.logsumexp(x, 1)
        log_free = x[:, self.free_index] - lse
        # log p(occupied) = log(1 - p_free), computed stably from the other classes
        others = torch.cat([x[:, :self.free_index], x[:, self.free_index + 1:]], 1)
        log_occ = torch.logsumexp(others, 1) - lse
        occ = (t != self.free_index).float()
        nll = -(self.pos_weight * occ * log_occ + (1 - occ) * log_free)
        return self.loss_weight * nll.mean()
