"""ToMe token merging for BEV tokens, checked against slow loop references."""
import math

import torch

from occ.models.collab.tome import bipartite_soft_matching, merge_to


def _tokens(n=97, c=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    feat = torch.randn(n, c, generator=g, dtype=torch.float64)
    pos = torch.rand(n, 2, generator=g, dtype=torch.float64) * 20 - 10
    size = torch.randint(1, 5, (n,), generator=g).double()
    return feat, pos, size


def _reference_round(feat, pos, size, r, radius):
    """One bipartite round written as plain loops (independent of the vectorised code)."""
    n = feat.shape[0]
    a = list(range(0, n, 2))
    b = list(range(1, n, 2))
    best = []
    for i in a:
        top, arg = -math.inf, None
        for jj, j in enumerate(b):
            if radius is not None and math.dist(pos[i].tolist(), pos[j].tolist()) > radius:
                continue
            s = float(feat[i] @ feat[j] / (feat[i].norm() * feat[j].norm()))
            if s > top:
                top, arg = s, jj
        best.append((top, arg))
    order = sorted(range(len(a)), key=lambda t: (-best[t][0], t))
    order = [t for t in order if best[t][0] > -math.inf][:r]
    groups = {j: [j] for j in b}
    merged_away = set()
    for t in order:
        groups[b[best[t][1]]].append(a[t])
        merged_away.add(a[t])
    for t, i in enumerate(a):
        if i not in merged_away:
            groups[i] = [i]
    out = []
    for anchor in sorted(groups, key=lambda j: min(groups[j])):
        mem = groups[anchor]
        w = size[mem]
        out.append((sorted(mem), (feat[mem] * w[:, None]).sum(0) / w.sum(),
                    (pos[mem] * w[:, None]).sum(0) / w.sum(), float(w.sum())))
    out.sort(key=lambda o: o[0][0])
    return out


def test_one_round_matches_loop_reference():
    feat, pos, size = _tokens()
    for radius in (None, 4.0):
        nf, ns, npos, _, new_index, merged = bipartite_soft_matching(
            feat, size, pos, torch.arange(feat.shape[0]), r=30, radius=radius)
        ref = _reference_round(feat, pos, size, 30, radius)
        assert len(ref) == nf.shape[0] == feat.shape[0] - merged
        for m, (members, f, p, s) in enumerate(ref):
            assert sorted((new_index == m).nonzero().flatten().tolist()) == members
            torch.testing.assert_close(nf[m], f)
            torch.testing.assert_close(npos[m], p)
            assert float(ns[m]) == s


def test_merge_preserves_weighted_mean_total_size_and_assignment():
    feat, pos, size = _tokens(n=301)
    out = merge_to(feat, pos, 40, size=size, radius=3.0)
    assert out['feat'].shape[0] <= 40 and out['rounds'] >= 3
    # Total size and the size-weighted means of features and positions are invariant.
    assert float(out['size'].sum()) == float(size.sum())
    torch.testing.assert_close((out['feat'] * out['size'][:, None]).sum(0), (feat * size[:, None]).sum(0))
    torch.testing.assert_close((out['pos'] * out['size'][:, None]).sum(0), (pos * size[:, None]).sum(0))
    # Every original token maps to exactly one merged token, and every merged token is
    # exactly the size-weighted mean of the originals mapped to it.
    assign = out['assign']
    assert assign.shape == (301,) and assign.min() >= 0 and assign.max() < out['feat'].shape[0]
    for m in range(out['feat'].shape[0]):
        mem = (assign == m).nonzero().flatten()
        assert mem.numel() >= 1
        w = size[mem]
        assert float(out['size'][m]) == float(w.sum())
        torch.testing.assert_close(out['feat'][m], (feat[mem] * w[:, None]).sum(0) / w.sum())
        torch.testing.assert_close(out['pos'][m], (pos[mem] * w[:, None]).sum(0) / w.sum())


def test_merge_reaches_target_even_when_radius_is_tiny():
    feat, pos, _ = _tokens(n=64)
    out = merge_to(feat, pos, 5, radius=1e-3)   # nothing is that close: the radius must widen
    assert out['feat'].shape[0] == 5
    assert torch.bincount(out['assign'], minlength=5).sum() == 64


def test_identical_features_merge_locally():
    # Two clusters with the same feature: with a radius, merges never mix the clusters.
    pos = torch.cat([torch.zeros(20, 2), torch.full((20, 2), 30.0)]) + torch.rand(40, 2)
    feat = torch.ones(40, 3)
    out = merge_to(feat, pos, 2, radius=5.0)
    centres = sorted(out['pos'][:, 0].tolist())
    assert out['feat'].shape[0] == 2 and centres[0] < 2 and centres[1] > 29


def test_gradient_flows_through_merge():
    feat, pos, _ = _tokens(n=32)
    feat = feat.float().requires_grad_(True)
    out = merge_to(feat, pos.float(), 8, radius=None)
    (out['feat'] * out['size'][:, None]).sum().backward()
    torch.testing.assert_close(feat.grad, torch.ones_like(feat))
