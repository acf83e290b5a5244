"""Sender compressors: which of a neighbour's BEV cells go on the wire, within the byte budget.

Registered in ``COMPRESSORS`` under the name a config's ``strategy`` uses:

    'none'    nothing is sent (ego only);
    'full'    the whole map, positions implied by the grid (a ``dense`` message);
    'random'  as many single cells as fit, chosen blindly (baseline);
    'topk'    as many single cells as fit, the most confident first (Where2comm-style);
    'tome'    optional confidence pre-selection, then ToMe merging to the count that fits
              (sizes travel with the tokens, so a few fewer fit).

When the budget fits every cell, 'random', 'topk' and 'tome' all send every cell as is.
The algorithms live in select.py and tome.py; this file only plugs them into the sender.
"""
from __future__ import annotations

import abc
import math

import torch

from .message import size_dtype_for
from .registry import COMPRESSORS
from .select import random_subset, topk_by_confidence
from .stages import Compressor, Payload
from .tome import merge_to


@COMPRESSORS.register_module(name='none')
class SilentCompressor(Compressor):
    """Sends nothing: the ego-only baseline with the collaboration module in place."""

    sends = False

    def forward(self, bev, feat, pos, score, budget_bytes, codec, gen):
        return None


@COMPRESSORS.register_module(name='full')
class FullCompressor(Compressor):
    """The whole map, every channel of every cell, ignoring the budget (the upper reference)."""

    def forward(self, bev, feat, pos, score, budget_bytes, codec, gen):
        c = bev.shape[0]
        return Payload(feat=bev.reshape(c, -1).t(), dense=bev)


class CellSelector(Compressor):
    """Single cells (no sizes on the wire): as many as fit the budget, chosen by ``pick``."""

    @abc.abstractmethod
    def pick(self, score: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        """Sorted indices [n] of the cells to send (``score`` [N])."""

    def forward(self, bev, feat, pos, score, budget_bytes, codec, gen):
        n = codec.max_tokens(budget_bytes, feat.shape[1], has_sizes=False)
        if n == 0:
            return None
        keep = torch.arange(feat.shape[0], device=feat.device) if n >= feat.shape[0] else self.pick(score, n, gen)
        return Payload(feat=feat[keep], pos=pos[keep])


@COMPRESSORS.register_module(name='random')
class RandomCompressor(CellSelector):
    """Random cells (seeded by the module's generator): the blind baseline."""

    def pick(self, score, n, gen):
        return random_subset(score.shape[0], n, gen, score.device)


@COMPRESSORS.register_module(name='topk')
class TopKCompressor(CellSelector):
    """The ``n`` most confident cells (Where2comm's spatial confidence selection)."""

    def pick(self, score, n, gen):
        return topk_by_confidence(score, n)


@COMPRESSORS.register_module(name='tome')
class ToMeCompressor(Compressor):
    """ToMe bipartite soft matching of the cells down to the token count that fits.

    Args:
        select_ratio: keep this fraction of the cells, the most confident, before merging
            (None: merge all cells). Never fewer than the count that fits.
        merge_radius: metres; only tokens this close are matched (the radius grows with the
            token spacing and doubles when a round stalls, so the budget is always met).
        cells_per_token: instead of ``select_ratio``, keep the ``cells_per_token * n`` most
            confident cells for the ``n`` tokens that fit, so merging stays inside confident
            regions and a merged token stands for about that many cells whatever the budget
            (its reach, ~sqrt(size), stays small).
    """

    def __init__(self, select_ratio: float | None = None, merge_radius: float = 4.0,
                 cells_per_token: float | None = None):
        super().__init__()
        if select_ratio is not None and not 0.0 < select_ratio <= 1.0:
            raise ValueError(f'ToMeCompressor: select_ratio must be in (0, 1], got {select_ratio}')
        if cells_per_token is not None and cells_per_token < 1:
            raise ValueError(f'ToMeCompressor: cells_per_token must be >= 1, got {cells_per_token}')
        self.select_ratio, self.merge_radius, self.cells_per_token = select_ratio, merge_radius, cells_per_token

    def forward(self, bev, feat, pos, score, budget_bytes, codec, gen):
        c, num = feat.shape[1], feat.shape[0]
        n_plain = codec.max_tokens(budget_bytes, c, has_sizes=False)
        if n_plain == 0:
            return None
        if n_plain >= num:                  # every cell fits as it is: nothing to merge
            return Payload(feat=feat, pos=pos)
        n = codec.max_tokens(budget_bytes, c, True, size_dtype_for(num).itemsize)
        if n == 0:
            return None
        if self.cells_per_token is not None:
            keep = topk_by_confidence(score, math.ceil(self.cells_per_token * n))
            feat, pos = feat[keep], pos[keep]
        elif self.select_ratio is not None:
            keep = topk_by_confidence(score, max(n, math.ceil(self.select_ratio * num)))
            feat, pos = feat[keep], pos[keep]
        merged = merge_to(feat, pos, n, radius=self.merge_radius)
        return Payload(feat=merged['feat'], pos=merged['pos'], size=merged['size'])

    def extra_repr(self) -> str:
        return (f'select_ratio={self.select_ratio}, merge_radius={self.merge_radius}, '
                f'cells_per_token={self.cells_per_token}')
