"""Choosing which BEV tokens to send before (or instead of) merging.

``topk_by_confidence`` is Where2comm-style selection (Hu et al., NeurIPS 2022):
send the cells the sender is most confident contain something. ``random_subset``
is the matching baseline: as many tokens, chosen blindly. Both return indices
in raster order so a later ToMe pass keeps its spatial interleaving.
"""
from __future__ import annotations

import torch


def topk_by_confidence(conf: torch.Tensor, n: int) -> torch.Tensor:
    """Indices [min(n, N)] of the ``n`` most confident tokens (ties: lower index), sorted."""
    if conf.dim() != 1:
        raise ValueError(f'confidence must be [N], got {tuple(conf.shape)}')
    n = max(0, min(int(n), conf.numel()))
    order = torch.argsort(conf.detach(), descending=True, stable=True)
    return torch.sort(order[:n]).values


def random_subset(num: int, n: int, gen: torch.Generator, device=None) -> torch.Tensor:
    """``n`` distinct indices of ``range(num)`` drawn from ``gen``, sorted."""
    n = max(0, min(int(n), num))
    perm = torch.randperm(num, generator=gen)[:n]
    return torch.sort(perm).values.to(device)


def feature_norm_confidence(feat: torch.Tensor) -> torch.Tensor:
    """Parameter-free confidence: L2 norm of each token's feature [N, C] -> [N]."""
    return feat.detach().norm(dim=1)
