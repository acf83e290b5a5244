"""Token merging by bipartite soft matching (ToMe, Bolya et al., ICLR 2023), for BEV tokens.

One round: split the tokens alternately into sets A (even places) and B (odd
places), match every A token to its most similar B token (cosine similarity
of features), and merge the ``r`` best-matched A tokens into their B partner.
Merging is a size-weighted average of features *and* positions, sizes add
up, so the size-weighted mean of all features and the total size never
change. Several rounds reach any target count (one round removes at most
half of the tokens).

BEV-specific choice: similarity is only allowed between tokens closer than
``radius`` metres. Without it two far-apart road cells with alike features
would merge to a token placed halfway between them, where there is nothing.
If a round cannot merge anything within the radius, the radius doubles, so the
target is always reached (a budget is a hard limit).

Token order is kept as raster order of each token's *anchor* (its smallest
original index), so the alternating split stays spatially interleaved in
later rounds.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_CHUNK = 2048  # A-rows per similarity block: bounds memory to CHUNK x |B| floats


def _segment_sum(x: torch.Tensor, index: torch.Tensor, m: int) -> torch.Tensor:
    """Rows of ``x`` [N, D] summed into ``m`` groups by ``index`` [N] (differentiable).

    ``index_put`` with accumulation: several times faster than ``index_add`` on CPU here.
    """
    return x.new_zeros(m, x.shape[1]).index_put((index,), x, accumulate=True)


def _best_partner(fa: torch.Tensor, fb: torch.Tensor, pa: torch.Tensor, pb: torch.Tensor,
                  radius: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """For each A token its best B partner: (similarity [NA], index [NA]); -inf when none in radius."""
    fa = F.normalize(fa.float(), dim=-1)
    fb = F.normalize(fb.float(), dim=-1)
    best = torch.empty(fa.shape[0], device=fa.device)
    idx = torch.empty(fa.shape[0], dtype=torch.long, device=fa.device)
    for s in range(0, fa.shape[0], _CHUNK):
        sim = fa[s:s + _CHUNK] @ fb.t()
        if radius is not None:
            far = torch.cdist(pa[s:s + _CHUNK].float(), pb.float()) > radius
            sim = sim.masked_fill(far, float('-inf'))
        best[s:s + _CHUNK], idx[s:s + _CHUNK] = sim.max(dim=1)
    return best, idx


def bipartite_soft_matching(feat: torch.Tensor, size: torch.Tensor, pos: torch.Tensor,
                            anchor: torch.Tensor, r: int, radius: float | None = None):
    """One ToMe round: merge up to ``r`` A tokens into their most similar B tokens.

    Args:
        feat: [N, C] features.
        size: [N] float, cells each token stands for.
        pos: [N, 2] metric positions.
        anchor: [N] long, smallest original index of each token (defines the order).
        r: number of merges wanted (clipped to |A| and to the A tokens with a partner in radius).
        radius: metres, or None for global matching.
    Returns:
        (feat', size', pos', anchor', new_index [N] long: where each input token went, merged count).
    """
    n = feat.shape[0]
    r = min(int(r), n // 2)
    if r <= 0:
        return feat, size, pos, anchor, torch.arange(n, device=feat.device), 0
    a_idx = torch.arange(0, n, 2, device=feat.device)
    b_idx = torch.arange(1, n, 2, device=feat.device)
    # Matching is a discrete choice: no gradient through the similarity.
    with torch.no_grad():
        best, partner = _best_partner(feat[a_idx], feat[b_idx], pos[a_idx], pos[b_idx], radius)
        r = min(r, int(torch.isfinite(best).sum()))
        if r <= 0:
            return feat, size, pos, anchor, torch.arange(n, device=feat.device), 0
        order = torch.argsort(best, descending=True, stable=True)
    src_a = order[:r]                     # places in A that merge away
    keep_a = order[r:]
    src = a_idx[src_a]                    # token indices merged away
    dst = b_idx[partner[src_a]]           # token indices they merge into

    # Survivors: unmerged A and all B. Each merged token is ordered by its new anchor (smallest
    # original index among its members), keeping raster order for the next round's split.
    survivors = torch.cat([a_idx[keep_a], b_idx])
    new_index = torch.empty(n, dtype=torch.long, device=feat.device)
    new_index[survivors] = torch.arange(survivors.numel(), device=feat.device)
    new_index[src] = new_index[dst]
    group_anchor = anchor.new_full((survivors.numel(),), torch.iinfo(torch.long).max).scatter_reduce(
        0, new_index, anchor, reduce='amin')
    rank = torch.empty_like(group_anchor)
    rank[torch.argsort(group_anchor, stable=True)] = torch.arange(group_anchor.numel(), device=feat.device)
    new_index = rank[new_index]

    m = survivors.numel()
    w = size.to(feat.dtype).unsqueeze(1)
    packed = torch.cat([feat * w, pos.to(feat.dtype) * w, w], 1)
    summed = _segment_sum(packed, new_index, m)
    new_size = summed[:, -1]
    new_feat = summed[:, :feat.shape[1]] / new_size.unsqueeze(1)
    new_pos = (summed[:, feat.shape[1]:-1] / new_size.unsqueeze(1)).to(pos.dtype)
    new_size = new_size.to(size.dtype)
    new_anchor = torch.sort(group_anchor).values
    return new_feat, new_size, new_pos, new_anchor, new_index, r


def merge_to(feat: torch.Tensor, pos: torch.Tensor, target: int, size: torch.Tensor | None = None,
             radius: float | None = None, max_rounds: int = 64) -> dict:
    """Merge tokens by repeated bipartite soft matching until at most ``target`` remain.

    The matching rounds run without autograd and only produce the assignment; the merged
    tokens are then computed once from the originals (size-weighted means compose exactly),
    so the graph holds one scatter instead of one per round.

    Args:
        feat: [N, C]; pos: [N, 2] metres; size: [N] (default ones).
        target: wanted token count (>= 1).
        radius: matching radius in metres for the first round (None: global). Later rounds
            scale it by sqrt(N / N_now), the growth of the spacing between surviving tokens,
            and a round that merges nothing doubles it.
    Returns:
        dict ``feat`` [M, C], ``pos`` [M, 2], ``size`` [M], ``assign`` [N] long (original token ->
        merged token), ``rounds`` int, with M <= max(target, 1).
    """
    n = feat.shape[0]
    if target < 1:
        raise ValueError(f'merge_to: target must be >= 1, got {target}')
    if size is None:
        size = torch.ones(n, device=feat.device, dtype=feat.dtype)
    assign = torch.arange(n, device=feat.device)
    anchor = torch.arange(n, device=feat.device)
    rounds, stall = 0, 1.0
    with torch.no_grad():
        cur_f, cur_s, cur_p = feat.detach(), size.detach(), pos.detach()
        while cur_f.shape[0] > target:
            if rounds >= max_rounds:
                raise RuntimeError(f'merge_to: {cur_f.shape[0]} tokens left after {rounds} rounds '
                                   f'(target {target}); raise max_rounds')
            r_now = None if radius is None else radius * stall * math.sqrt(n / cur_f.shape[0])
            cur_f, cur_s, cur_p, anchor, new_index, merged = bipartite_soft_matching(
                cur_f, cur_s, cur_p, anchor, cur_f.shape[0] - target, r_now)
            assign = new_index[assign]
            rounds += 1
            if merged == 0:
                stall *= 2.0      # nothing within the radius: widen it so a hard budget is met
    m = int(assign.max()) + 1 if n else 0
    w = size.to(feat.dtype).unsqueeze(1)
    # One scatter for features, positions and sizes together.
    packed = torch.cat([feat * w, pos.to(feat.dtype) * w, w], 1)
    summed = _segment_sum(packed, assign, m)
    new_size = summed[:, -1]
    return dict(feat=summed[:, :feat.shape[1]] / new_size.unsqueeze(1),
                pos=(summed[:, feat.shape[1]:-1] / new_size.unsqueeze(1)).to(pos.dtype),
                size=new_size.to(size.dtype), assign=assign, rounds=rounds)
