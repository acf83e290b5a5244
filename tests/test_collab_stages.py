"""Pluggable collaboration stages: compressors / fusions registered outside occ/models/collab are
used from a config, the max / mean fusion baselines against a loop reference, the stages a config
builds, and the dropped-message control."""
import math

import pytest
import torch
from mmengine.config import Config

from occ.geometry import planar_pose
from occ.models.collab import (COMPRESSORS, FUSIONS, CollabFusion, Compressor, MaxFusion, MeanFusion, Payload,
                               TokenFusion)
from occ.models.collab.tokens import bev_cell_centres
from occ.registry import MODELS

C, X, Y = 8, 10, 10
RNG = (-8.0, -8.0, -1.0, 8.0, 8.0, 5.4)


def _batch(nb_poses=((1.0, 0.0, 10.0),), b=1):
    k = len(nb_poses)
    e2g = lambda p: planar_pose(p[0], p[1], math.radians(p[2]))  # noqa: E731
    return dict(ego2global=torch.stack([e2g((0, 0, 0))] * b),
                neighbors=dict(ego2global=torch.stack([torch.stack([e2g(p) for p in nb_poses])] * b),
                               valid=torch.ones(b, k, dtype=torch.bool)))


def _maps(k=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, C, X, Y, generator=g), torch.randn(1, k, C, X, Y, generator=g)


# -------------------------------------------------------------- registered outside the package
class _Counted:
    calls = 0


@FUSIONS.register_module(force=True)
class CopyNearestFusion(TokenFusion):
    """A test fusion: each reached cell becomes the feature of its nearest token."""

    def forward(self, query, query_pos, feat, pos, size, reach=None):
        _Counted.calls += 1
        d = torch.cdist(query_pos, pos)
        j = d.argmin(1)
        hit = d.gather(1, j[:, None])[:, 0] <= reach[j]
        out = query.clone()
        out[hit] = feat[j[hit]]
        return out


@COMPRESSORS.register_module(name='first_cells', force=True)
class FirstCellsCompressor(Compressor):
    """A test compressor: the first ``n`` cells in raster order, with a configurable cap."""

    def __init__(self, cap: int = 1000):
        super().__init__()
        self.cap = cap

    def forward(self, bev, feat, pos, score, budget_bytes, codec, gen):
        n = min(self.cap, codec.max_tokens(budget_bytes, feat.shape[1], has_sizes=False))
        return Payload(feat=feat[:n], pos=pos[:n]) if n else None


def test_fusion_and_compressor_registered_outside_the_package_are_used_from_a_config():
    cfg = Config(dict(model=dict(type='CollabFusion', embed_dims=C, pc_range=RNG, strategy='first_cells',
                                 budget_bytes=2000, compressors=dict(first_cells=dict(cap=3)),
                                 fusion=dict(type='CopyNearestFusion', radius=0.5))))
    m = MODELS.build(cfg.model)
    assert isinstance(m.fusion, CopyNearestFusion) and isinstance(m.compressor, FirstCellsCompressor)
    bev, nbs = _maps()
    before = _Counted.calls
    out, nbytes = m(bev, _batch(nb_poses=((0.0, 0.0, 0.0),)), nbs)
    assert _Counted.calls == before + 1
    # the neighbour stands on the ego: its first 3 cells (raster order) land on the ego's first 3 cells
    flat_out, flat_nb = out[0].reshape(C, -1), nbs[0, 0].reshape(C, -1)
    changed = (out[0] != bev[0]).any(0).reshape(-1).nonzero()[:, 0].tolist()
    assert changed == [0, 1, 2]
    torch.testing.assert_close(flat_out[:, :3], flat_nb[:, :3], atol=1e-2, rtol=1e-2)   # fp16 on the wire
    assert nbytes.item() == len(m.make_message(nbs[0, 0], (0.0, 0.0, 0.0))[0])
    with pytest.raises(ValueError, match='not a registered compressor'):
        CollabFusion(C, RNG, strategy='no_such_thing')


# -------------------------------------------------------------- max / mean against a loop
def _reference_pool(query, qpos, feat, pos, reach, k, how):
    out = query.clone()
    for qi in range(query.shape[0]):
        dist = sorted((math.dist(qpos[qi].tolist(), pos[t].tolist()), t) for t in range(pos.shape[0]))
        near = [t for d, t in dist[:k] if d <= reach[t]]
        if not near:
            continue
        vals = torch.stack([query[qi]] + [feat[t] for t in near])
        out[qi] = vals.max(0).values if how == 'max' else vals.mean(0)
    return out


@pytest.mark.parametrize('cls,how', [(MaxFusion, 'max'), (MeanFusion, 'mean')])
def test_pooling_fusions_match_a_loop_reference(cls, how):
    g = torch.Generator().manual_seed(3)
    fusion = cls(C, k=3, radius=2.0)
    qpos = bev_cell_centres(5, 5, (-5, -5, 5, 5))
    query = torch.randn(25, C, generator=g)
    feat, pos = torch.randn(9, C, generator=g), torch.rand(9, 2, generator=g) * 10 - 5
    size = torch.tensor([1.0, 3, 1, 8, 2, 1, 5, 1, 1])
    reach = fusion.reach(size, 2.0)
    got = fusion(query, qpos, feat, pos, size, reach)
    ref = _reference_pool(query, qpos, feat, pos, reach, 3, how)
    torch.testing.assert_close(got, ref)
    untouched = (got == query).all(1)
    assert 0 < int(untouched.sum()) < 25             # some cells reached, the others bit for bit


def test_pooling_fusion_inside_collab_and_reach_rule():
    fusion = MaxFusion(C, radius=2.0, reach_scale=1.5)
    r = fusion.reach(torch.tensor([1.0, 100.0]), 0.8)
    assert r[0] == 2.0 and r[1] == pytest.approx(0.8 * math.sqrt(100 / math.pi) * 1.5)
    m = CollabFusion(C, RNG, strategy='topk', budget_bytes=600, fusion=dict(type='MeanFusion'))
    assert not list(m.fusion.parameters())
    bev, nbs = _maps()
    out, _ = m(bev, _batch(), nbs)
    assert not torch.equal(out, bev)


# -------------------------------------------------------------- the configs' stages
def test_base_config_builds_the_stages_it_names():
    import os
    root = os.path.join(os.path.dirname(__file__), '..')
    cfg = Config.fromfile(os.path.join(root, 'configs', 'ablations', 'collab_common.py'))
    m = MODELS.build(cfg.model.collab)
    assert (m.strategy, m.budget_bytes, m.codec.quant) == ('tome', 20000, 'fp16')
    assert m.compressor.select_ratio == 0.5 and m.compressor.merge_radius == 4.0
    assert type(m.fusion).__name__ == 'LocalTokenAttention' and m.link.drop_prob == 0.0
    # the link is a simulation: nothing of it is in the weights
    assert not any(k.startswith('link') for k in m.state_dict())


def test_checkpoint_with_the_old_attention_name_loads():
    m = CollabFusion(C, RNG, strategy='topk', fusion=dict(type='LocalTokenAttention', zero_init=False))
    old = {k.replace('fusion.', 'attn.', 1): v for k, v in m.state_dict().items()}
    fresh = CollabFusion(C, RNG, strategy='topk')
    fresh.load_state_dict(old)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), m.state_dict().values()))


def test_named_compressor_variant_merges_inside_the_confident_cells():
    from occ.models.collab import ToMeCompressor
    from occ.models.collab.message import decode
    m = CollabFusion(C, RNG, strategy='tome4', budget_bytes=400, confidence='norm',
                     compressors=dict(tome4=dict(type='tome', cells_per_token=4)))
    assert isinstance(m.compressor, ToMeCompressor) and m.compressor.cells_per_token == 4
    bev = torch.randn(C, X, Y, generator=torch.Generator().manual_seed(1))
    data, _ = m.make_message(bev, (0.0, 0.0, 0.0))
    msg = decode(data)
    n = msg.feat.shape[0]
    assert len(data) <= 400 and 2 <= n and 4 * n < X * Y
    assert float(msg.size.sum()) == 4 * n                      # exactly the 4n most confident cells, merged
    # those cells are the most confident: every merged position lies among them (their convex hull)
    norms = bev.reshape(C, -1).norm(dim=0)
    top = torch.topk(norms, 4 * n).indices
    cells = bev_cell_centres(X, Y, RNG)[top]
    lo, hi = cells.min(0).values - 1e-3, cells.max(0).values + 1e-3
    assert ((msg.pos >= lo) & (msg.pos <= hi)).all()
    with pytest.raises(ValueError, match='cells_per_token'):
        CollabFusion(C, RNG, strategy='t', compressors=dict(t=dict(type='tome', cells_per_token=0.5)))


def test_a_compressor_must_implement_forward_and_a_cell_selector_pick():
    from occ.models.collab.compressors import CellSelector
    with pytest.raises(TypeError, match='forward'):
        type('NoForward', (Compressor,), {})()
    with pytest.raises(TypeError, match='pick'):
        type('NoPick', (CellSelector,), {})()
