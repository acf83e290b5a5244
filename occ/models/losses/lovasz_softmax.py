"""Lovász-softmax loss (Berman, Rannen Triki, Blaschko, CVPR 2018).

The Jaccard loss of class c, Δ_c(M) = |M| / |F_c ∪ M| (M the mispredicted
voxels, F_c the voxels labelled c), is submodular, so its Lovász extension is
its tight convex closure. For a vector of errors m ∈ [0, 1]^N, sorted so that
m_π1 ≥ m_π2 ≥ ..., the extension is

    Δ̄_c(m) = Σ_i m_πi · (Δ_c({π1..πi}) − Δ_c({π1..πi−1})),

a dot product of the sorted errors with the increments of Δ_c along the
sorted prefix. With softmax probabilities p, the errors are
m_i = |[y_i = c] − p_i,c|. The loss averages Δ̄_c over classes.
"""
from __future__ import annotations

import torch
from torch import nn

from occ.registry import MODELS

from ._utils import flatten_valid, zero_loss


def jaccard_increments(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Increments of the Jaccard loss along a sorted prefix.

    Args:
        fg_sorted: [..., N] float, 1 where the i-th largest error is a labelled
            (foreground) voxel; leading dims are independent problems (classes).

    Returns:
        [..., N] float, Δ(prefix i) − Δ(prefix i−1), with Δ(∅) = 0.
    """
    n_fg = fg_sorted.sum(-1, keepdim=True)
    # After the first i voxels are mispredicted: the intersection keeps the
    # foreground voxels not yet in the prefix, the union adds the background ones in it.
    inter = n_fg - fg_sorted.cumsum(-1)
    union = n_fg + (1.0 - fg_sorted).cumsum(-1)
    loss = 1.0 - inter / union
    return torch.cat([loss[..., :1], loss[..., 1:] - loss[..., :-1]], -1)


def lovasz_softmax_flat(probs: torch.Tensor, target: torch.Tensor, classes: str = 'present') -> torch.Tensor:
    """Lovász-softmax on flat inputs, all classes in one batched sort.

    Args:
        probs: [N, C] class probabilities (rows sum to 1).
        target: [N] long in [0, C).
        classes: 'present' (average over classes that occur in target) or 'all'.

    Returns:
        scalar.
    """
    c = probs.shape[1]
    cls = torch.arange(c, device=target.device)
    if classes == 'present':
        cls = cls[torch.bincount(target, minlength=c) > 0]
    if cls.numel() == 0:
        return probs.sum() * 0.0
    fg = (target[None, :] == cls[:, None]).to(probs.dtype)             # [K, N]
    errors = (fg - probs.t()[cls]).abs()                               # [K, N]
    errors_sorted, order = torch.sort(errors, dim=1, descending=True)
    # The increments depend on the sort order only, not on p: no gradient through them.
    per_class = (errors_sorted * jaccard_increments(fg.gather(1, order))).sum(1)
    return per_class.mean()


@MODELS.register_module()
class LovaszSoftmaxLoss(nn.Module):
    """Lovász-softmax over all valid voxels of the batch taken together.

    Args:
        classes: 'present' (default, as in the paper's experiments) or 'all'
            (a class absent from the target contributes its mean predicted
            probability mass, pushing it towards zero).
        loss_weight: multiplies the result.
    """

    def __init__(self, classes: str = 'present', loss_weight: float = 1.0):
        super().__init__()
        if classes not in ('present', 'all'):
            raise ValueError(f"LovaszSoftmaxLoss: classes must be 'present' or 'all', got {classes!r}")
        self.classes, self.loss_weight = classes, float(loss_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """logits [B, C, ...], target long [B, ...], mask bool [B, ...] or None -> scalar."""
        x, t = flatten_valid(logits, target, mask, type(self).__name__)
        if t.numel() == 0:
            return zero_loss(logits)
        probs = torch.softmax(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x, dim=1)
        return self.loss_weight * lovasz_softmax_flat(probs, t, self.classes)
