"""Shared part of occupancy heads: building the configured losses and applying them."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn

from occ.models.losses.naming import build_named_losses


class BaseOccHead(nn.Module):
    """Base of occupancy heads: owns the loss modules built from config.

    Args:
        losses: list of loss configs (``type=`` names in ``MODELS``, e.g.
            ``[dict(type='WeightedCELoss'), dict(type='LovaszSoftmaxLoss')]``).
            An optional ``name`` key sets the logged key (default from the type:
            ``loss_weighted_ce``, ``loss_lovasz_softmax``, ...; ``occ.models.losses.naming``).

    Subclasses return ``dict(logits=[B, 18, X, Y, Z], ...)`` from forward. A head
    that needs the labels while training (e.g. to keep GT-occupied voxels) sets
    ``uses_labels_in_forward = True``; OccNet then calls
    ``head(bev, voxel_semantics=..., mask=...)`` in training.
    """

    uses_labels_in_forward = False

    def __init__(self, losses: Optional[Sequence[dict]] = None):
        super().__init__()
        self.loss_names, self.losses = build_named_losses(losses)

    def loss(self, out: dict, voxel_semantics: torch.Tensor, mask: Optional[torch.Tensor] = None) -> dict:
        """Apply every configured loss to ``out['logits']``.

        Args:
            out: forward output with ``logits`` [B, 18, X, Y, Z].
            voxel_semantics: [B, X, Y, Z] integer labels (255 = ignore).
            mask: bool/uint8 [B, X, Y, Z] or None; only voxels with mask True count.

        Returns:
            dict name -> scalar loss.
        """
        if not self.losses:
            raise ValueError(f'{type(self).__name__}: no losses configured (set head.losses)')
        logits = out['logits'].float()
        target = voxel_semantics.long()
        mask = None if mask is None else mask.bool()
        return {name: fn(logits, target, mask) for name, fn in zip(self.loss_names, self.losses)}
