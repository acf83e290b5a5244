"""Occupancy losses (registered in ``occ.registry.MODELS``).

All share ``forward(logits [B, C, ...], target long [B, ...], mask bool [B, ...] | None) -> scalar``;
target 255 is ignored and mask keeps voxels with mask True. See docs/CONTRACTS.md.
"""
from .focal_loss import FocalLoss
from .lovasz_softmax import LovaszSoftmaxLoss, lovasz_softmax_flat
from .occupancy_bce import OccupancyBCELoss
from .naming import build_named_losses, loss_key
from .sigmoid_focal_loss import SigmoidFocalLoss
from .weighted_ce import OCC3D_CLASS_COUNTS, WeightedCELoss, class_weights_from_counts

__all__ = ['FocalLoss', 'SigmoidFocalLoss', 'LovaszSoftmaxLoss', 'WeightedCELoss',
           'OccupancyBCELoss',
           'lovasz_softmax_flat', 'class_weights_from_counts', 'OCC3D_CLASS_COUNTS', 'loss_key', 'build_named_losses']
