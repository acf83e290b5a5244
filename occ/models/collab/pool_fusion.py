"""Parameter-free receiver baselines: each ego cell pools itself with the received tokens near it.

``MaxFusion`` is F-Cooper's element-wise maxout (Chen et al., SEC 2019) on tokens instead of a
warped map; ``MeanFusion`` averages. A cell takes the tokens among its ``k`` nearest that reach
it (``TokenFusion.reach``: a merged token of size s reaches ~sqrt(s) cells); a cell that no token
reaches is returned bit for bit. They learn nothing, so they measure how much of a gain the
messages carry without a learned fusion (the sender's encoder and confidence gate still learn
through the straight-through estimate).
"""
from __future__ import annotations

import torch

from .attention import knn_within
from .registry import FUSIONS
from .stages import TokenFusion


class _NeighbourPool(TokenFusion):
    """Shared part: gather, for every ego cell reached by a token, itself plus those tokens."""

    def _gather(self, query, query_pos, tok_feat, tok_pos, tok_reach):
        if tok_feat.shape[0] == 0:
            return None
        idx, _, valid = knn_within(query_pos, tok_pos, self.k, tok_reach)
        rows = valid.any(1).nonzero(as_tuple=True)[0]
        if rows.numel() == 0:
            return None
        # slot 0: the cell itself; slots 1..k: tokens (masked where out of reach)
        vals = torch.cat([query[rows].unsqueeze(1), tok_feat[idx[rows]]], 1)        # [R, 1+k, C]
        mask = torch.cat([valid.new_ones(rows.numel(), 1), valid[rows]], 1)          # [R, 1+k]
        return rows, vals, mask


@FUSIONS.register_module()
class MaxFusion(_NeighbourPool):
    """out[cell] = element-wise max over the cell and the tokens that reach it.

    Args: as ``TokenFusion`` (embed_dims, k, radius, reach_scale).
    """

    def forward(self, query, query_pos, tok_feat, tok_pos, tok_size, tok_reach=None):
        """query [Q, C], query_pos [Q, 2]; tokens feat [n, C], pos [n, 2], size [n], reach [n] -> [Q, C]."""
        hit = self._gather(query, query_pos, tok_feat, tok_pos, self.radius if tok_reach is None else tok_reach)
        if hit is None:
            return query
        rows, vals, mask = hit
        out = query.clone()
        out[rows] = vals.masked_fill(~mask.unsqueeze(-1), float('-inf')).amax(1)
        return out


@FUSIONS.register_module()
class MeanFusion(_NeighbourPool):
    """out[cell] = mean of the cell and the tokens that reach it (each counts once, whatever its size).

    Args: as ``TokenFusion`` (embed_dims, k, radius, reach_scale).
    """

    def forward(self, query, query_pos, tok_feat, tok_pos, tok_size, tok_reach=None):
        """query [Q, C], query_pos [Q, 2]; tokens feat [n, C], pos [n, 2], size [n], reach [n] -> [Q, C]."""
        hit = self._gather(query, query_pos, tok_feat, tok_pos, self.radius if tok_reach is None else tok_reach)
        if hit is None:
            return query
        rows, vals, mask = hit
        w = mask.unsqueeze(-1).to(vals.dtype)
        out = query.clone()
        out[rows] = (vals * w).sum(1) / w.sum(1)
        return out
