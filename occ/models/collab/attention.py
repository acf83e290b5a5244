"""Ego BEV queries attend to nearby received tokens (size-aware, k-nearest within a radius).

Each ego cell's query attends to its own feature (so it can keep what it has)
and to the ``k`` nearest received tokens within ``radius`` metres. Keys and
values carry a learned encoding of the token's offset from the cell. A token
that stands for ``s`` cells gets ``+log(s)`` on its attention logit (ToMe's
proportional attention), so a merged token weighs as much as the cells it
replaced. Cells with no token in range are returned unchanged, bit for bit.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .registry import FUSIONS
from .stages import TokenFusion

_BLOCK = 1 << 22  # distance-matrix entries per block (16 MB of float32)


def knn_within(query_pos: torch.Tensor, tok_pos: torch.Tensor, k: int, reach):
    """k nearest tokens of each query, and which of them are within reach.

    Exhaustive for small problems; otherwise tokens are bucketed on a grid of the largest
    reach and each query only looks at its 3 x 3 buckets, which hold every token that can
    reach it (so the valid neighbours are the same, up to ties in distance).

    Args:
        query_pos: [Q, 2]; tok_pos: [n, 2] (n >= 1).
        reach: metres, a float or a per-token tensor [n] (a merged token reaches farther).
    Returns:
        idx [Q, k'] long, dist [Q, k'] (inf for empty slots), valid [Q, k'] bool.
    """
    n = tok_pos.shape[0]
    r_max = float(reach.max()) if torch.is_tensor(reach) else float(reach)
    if query_pos.shape[0] * n <= _BLOCK or not math.isfinite(r_max) or r_max <= 0:
        idx, dist = knn_exhaustive(query_pos, tok_pos, k)
    else:
        idx, dist = knn_bucketed(query_pos, tok_pos, k, r_max)
    reach = reach[idx] if torch.is_tensor(reach) else reach
    return idx, dist, dist <= reach


def knn_exhaustive(query_pos: torch.Tensor, tok_pos: torch.Tensor, k: int):
    """k nearest tokens by brute force, in blocks: idx [Q, min(k, n)], dist [Q, min(k, n)]."""
    n = tok_pos.shape[0]
    k = min(k, n)
    chunk = max(1, _BLOCK // n)
    idx, dist = [], []
    for s in range(0, query_pos.shape[0], chunk):
        d = torch.cdist(query_pos[s:s + chunk].float(), tok_pos.float())
        dd, ii = torch.topk(d, k, dim=1, largest=False, sorted=True)
        idx.append(ii)
        dist.append(dd)
    return torch.cat(idx), torch.cat(dist)


def knn_bucketed(query_pos: torch.Tensor, tok_pos: torch.Tensor, k: int, cell: float):
    """k nearest among the tokens in each query's 3 x 3 buckets of side ``cell``.

    Returns idx [Q, k'] and dist [Q, k'] (inf where a query has fewer candidates).
    """
    qp, tp = query_pos.float(), tok_pos.float()
    lo = torch.minimum(qp.min(0).values, tp.min(0).values) - cell
    tb = torch.floor((tp - lo) / cell).long()
    qb = torch.floor((qp - lo) / cell).long()
    ny = int(max(tb[:, 1].max(), qb[:, 1].max())) + 2
    nx = int(max(tb[:, 0].max(), qb[:, 0].max())) + 2
    key = tb[:, 0] * ny + tb[:, 1]
    order = torch.argsort(key, stable=True)
    counts = torch.bincount(key, minlength=nx * ny)
    starts = torch.cumsum(counts, 0) - counts
    off = torch.tensor([(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)], device=qb.device)
    m = int(counts.max())
    slot = torch.arange(m, device=qb.device)
    k = min(k, 9 * m)
    chunk = max(1, _BLOCK // (9 * m))
    idx, dist = [], []
    for s in range(0, qp.shape[0], chunk):
        nb = qb[s:s + chunk].unsqueeze(1) + off                       # [q, 9, 2], inside by the margin
        nkey = nb[..., 0] * ny + nb[..., 1]
        cand = starts[nkey].unsqueeze(-1) + slot                      # [q, 9, m]
        ok = (slot < counts[nkey].unsqueeze(-1)).flatten(1)
        cand = order[cand.clamp(max=order.numel() - 1)].flatten(1)    # token indices [q, 9m]
        d = (tp[cand] - qp[s:s + chunk].unsqueeze(1)).norm(dim=-1).masked_fill(~ok, float('inf'))
        dd, j = torch.topk(d, k, dim=1, largest=False, sorted=True)
        idx.append(cand.gather(1, j))
        dist.append(dd)
    return torch.cat(idx), torch.cat(dist)


@FUSIONS.register_module()
class LocalTokenAttention(TokenFusion):
    """Multi-head attention from ego cells to received tokens near them.

    Args:
        embed_dims: C, channels of both the ego BEV and the tokens.
        num_heads: attention heads (divides C).
        k: neighbours per query.
        radius: metres; single-cell tokens farther than this from a cell are ignored.
        pe_hidden: hidden width of the offset encoding MLP.
        zero_init: start the output projection at zero, so an untrained module is the identity.
        reach_scale: a merged token of size s reaches ``cell * sqrt(s / pi) * reach_scale``
            metres when that exceeds ``radius`` (``TokenFusion.reach``).
    """

    def __init__(self, embed_dims: int, num_heads: int = 4, k: int = 8, radius: float = 2.0,
                 pe_hidden: int = 32, zero_init: bool = True, reach_scale: float = 1.5):
        super().__init__(embed_dims, k, radius, reach_scale)
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.q = nn.Linear(embed_dims, embed_dims)
        self.kv = nn.Linear(embed_dims, 2 * embed_dims)
        self.pe = nn.Sequential(nn.Linear(2, pe_hidden), nn.ReLU(inplace=True),
                                nn.Linear(pe_hidden, 2 * embed_dims))
        self.out = nn.Linear(embed_dims, embed_dims)
        if zero_init:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, query: torch.Tensor, query_pos: torch.Tensor, tok_feat: torch.Tensor,
                tok_pos: torch.Tensor, tok_size: torch.Tensor,
                tok_reach: torch.Tensor | None = None) -> torch.Tensor:
        """Fuse received tokens into ego cells.

        Args:
            query: [Q, C] ego features; query_pos: [Q, 2] metres.
            tok_feat: [n, C]; tok_pos: [n, 2] metres in the ego frame; tok_size: [n].
            tok_reach: [n] metres each token reaches (default ``radius`` for all).
        Returns:
            [Q, C]: ``query + out(attn)`` on cells with a token in range, ``query`` elsewhere.
        """
        if tok_feat.shape[0] == 0:
            return query
        reach = self.radius if tok_reach is None else tok_reach
        idx, _, valid = knn_within(query_pos, tok_pos, self.k, reach)
        rows = valid.any(1).nonzero(as_tuple=True)[0]
        if rows.numel() == 0:
            return query
        idx, valid = idx[rows], valid[rows]
        q_feat, q_pos = query[rows], query_pos[rows]
        c, h = self.embed_dims, self.num_heads
        d = c // h

        # Key/value slot 0 is the cell itself (offset 0, size 1); slots 1.. are received tokens.
        kv_tok = self.kv(tok_feat)[idx]                                  # [R, k, 2C]
        kv_self = self.kv(q_feat).unsqueeze(1)                           # [R, 1, 2C]
        offset = (tok_pos[idx] - q_pos.unsqueeze(1)) / self.radius       # [R, k, 2]
        offset = torch.cat([offset.new_zeros(offset.shape[0], 1, 2), offset], 1)
        kv = torch.cat([kv_self, kv_tok], 1) + self.pe(offset)           # [R, 1+k, 2C]
        key, value = kv.split(c, dim=-1)
        log_size = torch.cat([tok_size.new_zeros(rows.numel(), 1), tok_size[idx].log()], 1)
        mask = torch.cat([valid.new_ones(rows.numel(), 1), valid], 1)    # [R, 1+k]

        q = self.q(q_feat).view(-1, h, 1, d)
        key = key.view(-1, 1 + idx.shape[1], h, d).transpose(1, 2)       # [R, h, 1+k, d]
        value = value.view(-1, 1 + idx.shape[1], h, d).transpose(1, 2)
        logits = (q * key).sum(-1) / math.sqrt(d) + log_size.unsqueeze(1).to(q.dtype)
        logits = logits.masked_fill(~mask.unsqueeze(1), float('-inf'))   # [R, h, 1+k]
        attn = logits.softmax(-1)
        fused = (attn.unsqueeze(-1) * value).sum(2).reshape(-1, c)       # [R, C]
        out = query.clone()
        out[rows] = q_feat + self.out(fused)
        return out
