"""CollabFusion: re-posing geometry, exact ego fallback, local attention vs a loop reference,
byte accounting, robustness knobs (seeded), gradients."""
import math

import pytest
import torch

from occ.geometry import perturb_pose, planar_pose, pose2d
from occ.models.collab import CollabFusion, LocalTokenAttention
from occ.models.collab.tokens import bev_cell_centres, points_to_cells
from occ.registry import MODELS

C, X, Y = 8, 10, 10
RNG = (-8.0, -8.0, -1.0, 8.0, 8.0, 5.4)      # 1.6 m cells
CELL = 1.6


def _e2g(x, y, yaw_deg):
    return planar_pose(x, y, math.radians(yaw_deg))


def _batch(ego_pose=(0, 0, 0), nb_poses=((0, 0, 0),), valid=None, b=1):
    k = len(nb_poses)
    return dict(ego2global=torch.stack([_e2g(*ego_pose)] * b),
                neighbors=dict(ego2global=torch.stack([torch.stack([_e2g(*p) for p in nb_poses])] * b),
                               valid=torch.ones(b, k, dtype=torch.bool) if valid is None else valid))


def _maps(b=1, k=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, C, X, Y, generator=g), torch.randn(b, k, C, X, Y, generator=g)


def _module(fusion=None, **kw):
    kw.setdefault('pc_range', RNG)
    # a zero-initialised fusion would pass "equals ego" trivially
    fusion = dict(dict(type='LocalTokenAttention', zero_init=False), **(fusion or {}))
    torch.manual_seed(0)
    return CollabFusion(C, fusion=fusion, **kw)


def test_fusion_changes_ego_when_a_message_arrives():
    bev, nbs = _maps()
    out, nbytes = _module(strategy='topk', budget_bytes=600)(bev, _batch(), nbs)
    assert nbytes.item() > 0 and not torch.equal(out, bev)


@pytest.mark.parametrize('case', ['no_neighbours', 'invalid', 'tiny_budget', 'strategy_none', 'dropped',
                                  'far_away', 'out_of_comm_range'])
def test_ego_bev_returned_exactly_without_usable_message(case):
    bev, nbs = _maps()
    kw, batch, nb_in = dict(strategy='topk', budget_bytes=600), _batch(), nbs
    if case == 'no_neighbours':
        nb_in = None
    elif case == 'invalid':
        batch = _batch(valid=torch.zeros(1, 1, dtype=torch.bool))
    elif case == 'tiny_budget':
        kw['budget_bytes'] = 40          # shorter than the header: nothing is sent
    elif case == 'strategy_none':
        kw['strategy'] = 'none'
    elif case == 'dropped':
        kw['link'] = dict(type='SimulatedLink', drop_prob=1.0)
    elif case == 'far_away':
        batch = _batch(nb_poses=((500.0, 0, 0),))
    elif case == 'out_of_comm_range':
        batch, kw['link'] = _batch(nb_poses=((5.0, 0, 0),)), dict(type='SimulatedLink', comm_range=4.0)
    out, nbytes = _module(**kw)(bev, batch, nb_in)
    assert torch.equal(out, bev)
    expect_sent = case in ('dropped', 'far_away')      # sent but lost / landing off the ego grid
    assert (nbytes.item() > 0) == expect_sent


def test_reposed_token_lands_in_the_right_ego_cell():
    # One hot sender cell; the sender stands at (3.2, -1.6) m yawed +90 deg relative to the ego.
    ego = (100.0, 50.0, 30.0)
    rel = (3.2, -1.6, 90.0)
    a = math.radians(ego[2])
    sender = (ego[0] + math.cos(a) * rel[0] - math.sin(a) * rel[1],
              ego[1] + math.sin(a) * rel[0] + math.cos(a) * rel[1], ego[2] + rel[2])
    bev = torch.zeros(1, C, X, Y)
    nbs = torch.zeros(1, 1, C, X, Y)
    si, sj = 7, 2
    nbs[0, 0, :, si, sj] = 5.0
    m = _module(strategy='topk', budget_bytes=90, fusion=dict(radius=0.1, reach_scale=1.0))
    out, _ = m(bev, _batch(ego, (sender,)), nbs)
    # Independent expectation: sender cell centre, rotate by the relative yaw, translate.
    ps = (-8 + (si + 0.5) * CELL, -8 + (sj + 0.5) * CELL)
    r = math.radians(rel[2])
    pe = (math.cos(r) * ps[0] - math.sin(r) * ps[1] + rel[0], math.sin(r) * ps[0] + math.cos(r) * ps[1] + rel[1])
    ei, ej = math.floor((pe[0] + 8) / CELL), math.floor((pe[1] + 8) / CELL)
    changed = (out[0] != 0).any(0).nonzero().tolist()
    assert changed == [[ei, ej]]


def test_ego_bev_augmentation_is_applied_to_received_tokens():
    m = _module(strategy='topk', budget_bytes=90)
    nbs = torch.zeros(1, 1, C, X, Y)
    nbs[0, 0, :, 6, 1] = 3.0
    data, _ = m.make_message(nbs[0, 0], (0.0, 0.0, 0.0))
    flip = torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0], dtype=torch.float64))   # y flip
    from occ.geometry import bev_aug_2d
    _, pos, _, _, _ = m.receive(data, (0.0, 0.0, 0.0), bev_aug_2d(flip), CELL)
    cells, inside = points_to_cells(pos, (X, Y), RNG)
    assert inside.all() and cells.tolist() == [[6, Y - 1 - 1]]


def _reference_attention(att, query, qpos, feat, pos, size, reach):
    """Per-query loop: self slot + k nearest tokens within reach, multi-head softmax with +log(size)."""
    c, h = att.embed_dims, att.num_heads
    d = c // h
    out = query.clone()
    for qi in range(query.shape[0]):
        dist = [(math.dist(qpos[qi].tolist(), pos[t].tolist()), t) for t in range(pos.shape[0])]
        near = [t for dd, t in sorted(dist)[:att.k] if dd <= reach[t]]
        if not near:
            continue
        keys, vals, bias = [], [], [0.0]
        kv = att.kv(query[qi]) + att.pe(torch.zeros(2))
        keys.append(kv[:c]), vals.append(kv[c:])
        for t in near:
            kv = att.kv(feat[t]) + att.pe((pos[t] - qpos[qi]) / att.radius)
            keys.append(kv[:c]), vals.append(kv[c:])
            bias.append(math.log(float(size[t])))
        q = att.q(query[qi])
        fused = []
        for hd in range(h):
            sl = slice(hd * d, (hd + 1) * d)
            logits = torch.stack([q[sl] @ k_[sl] / math.sqrt(d) for k_ in keys]) + torch.tensor(bias)
            w = logits.softmax(0)
            fused.append(sum(w[i] * vals[i][sl] for i in range(len(vals))))
        out[qi] = query[qi] + att.out(torch.cat(fused))
    return out


def test_local_attention_matches_loop_reference():
    torch.manual_seed(0)
    att = LocalTokenAttention(C, num_heads=2, k=3, radius=2.0, zero_init=False)
    qpos = bev_cell_centres(4, 4, (-4, -4, 4, 4))
    query = torch.randn(16, C)
    feat, pos = torch.randn(7, C), torch.rand(7, 2) * 10 - 5
    size = torch.tensor([1.0, 3, 1, 8, 2, 1, 5])
    reach = torch.tensor([2.0, 2.5, 2.0, 4.0, 2.0, 0.5, 3.0])
    with torch.no_grad():
        got = att(query, qpos, feat, pos, size, reach)
        ref = _reference_attention(att, query, qpos, feat, pos, size, reach)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert not torch.equal(got, query)


@pytest.mark.parametrize('strategy,quant', [('tome', 'fp16'), ('topk', 'int8'), ('random', 'fp16'),
                                            ('full', 'fp32')])
def test_bytes_sent_is_the_sum_of_message_lengths_within_budget(strategy, quant):
    bev, nbs = _maps(b=2, k=2)
    m = _module(strategy=strategy, budget_bytes=700, codec=dict(type='WireCodec', quant=quant),
                compressors=dict(tome=dict(select_ratio=0.5)))
    batch = _batch(nb_poses=((1.0, 0, 10), (-2.0, 1.0, -20)), b=2)
    out, nbytes = m(bev, batch, nbs)
    lengths = [len(m.make_message(nbs[b, k], pose2d(batch['neighbors']['ego2global'][b, k]))[0])
               for b in range(2) for k in range(2)]
    assert nbytes.tolist() == [float(lengths[0] + lengths[1]), float(lengths[2] + lengths[3])]
    if strategy == 'full':
        assert lengths[0] > 4 * X * Y * C            # the whole map, fp32
    else:
        assert max(lengths) <= 700 and min(lengths) > 700 - 2 * (C * 4 + 6)
    assert out.shape == bev.shape and m.last_stats['messages'] == 4


def test_seeded_knobs_are_deterministic_and_matter():
    bev, nbs = _maps(k=3)
    batch = _batch(nb_poses=((1.0, 0, 0), (0, 1.0, 5), (-1.0, 0, 0)))
    kw = dict(strategy='random', budget_bytes=500,
              link=dict(type='SimulatedLink', drop_prob=0.5, pose_noise_m=0.5, pose_noise_deg=2.0))
    runs = []
    for seed in (3, 3, 4):
        m = _module(seed=seed, **kw)
        runs.append(torch.stack([m(bev, batch, nbs)[0] for _ in range(4)]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
    m = _module(seed=3, **kw)
    first = torch.stack([m(bev, batch, nbs)[0] for _ in range(4)])
    m.reset_state()
    assert torch.equal(torch.stack([m(bev, batch, nbs)[0] for _ in range(4)]), first)


def test_pose_noise_has_the_requested_spread():
    g = torch.Generator().manual_seed(0)
    draws = torch.tensor([perturb_pose((10.0, 20.0, 0.5), 0.3, 2.0, g) for _ in range(4000)], dtype=torch.float64)
    std = draws.std(0)
    assert abs(std[0] - 0.3) < 0.03 and abs(std[1] - 0.3) < 0.03
    assert abs(math.degrees(std[2]) - 2.0) < 0.2
    assert abs(draws[:, 0].mean() - 10.0) < 0.03


def test_latency_delivers_the_previous_frame_message():
    bev1, nbs1 = _maps(seed=1)
    bev2, nbs2 = _maps(seed=2)
    b1, b2 = _batch(nb_poses=((1.0, 0.0, 0.0),)), _batch(ego_pose=(0.5, 0.0, 0.0), nb_poses=((2.0, 0.5, 10.0),))
    late = _module(strategy='tome', budget_bytes=800, link=dict(type='SimulatedLink', latency=1))
    out1, sent1 = late(bev1, b1, nbs1)
    assert torch.equal(out1, bev1) and sent1.item() > 0        # nothing has arrived yet
    out2, _ = late(bev2, b2, nbs2)
    # The same as receiving frame 1's map, with frame 1's sender pose, at frame 2's ego pose.
    fresh = _module(strategy='tome', budget_bytes=800)
    fresh.load_state_dict(late.state_dict())
    stale_batch = dict(ego2global=b2['ego2global'], neighbors=b1['neighbors'])
    ref, _ = fresh(bev2, stale_batch, nbs1)
    torch.testing.assert_close(out2, ref)


def test_training_gradients_reach_sender_and_values_match_eval():
    bev, nbs = _maps(k=2)
    batch = _batch(nb_poses=((1.0, 0, 0), (0, -1.0, 30)))
    m = _module(strategy='tome', budget_bytes=900, compressors=dict(tome=dict(select_ratio=0.6)),
                confidence='learned')
    m.eval()
    with torch.no_grad():
        ref, _ = m(bev, batch, nbs)
    m.train()
    nbs = nbs.clone().requires_grad_(True)
    bev = bev.clone().requires_grad_(True)
    out, _ = m(bev, batch, nbs)
    torch.testing.assert_close(out.detach(), ref)
    out.square().sum().backward()
    assert nbs.grad.abs().sum() > 0 and bev.grad.abs().sum() > 0
    assert m.conf_head.weight.grad.abs().sum() > 0


def test_registry_build_and_bad_arguments():
    m = MODELS.build(dict(type='CollabFusion', embed_dims=C, pc_range=RNG, strategy='topk'))
    assert isinstance(m, CollabFusion)
    with pytest.raises(ValueError, match='strategy'):
        CollabFusion(C, strategy='gossip')
    bev, nbs = _maps()
    with pytest.raises(ValueError, match='neighbor_bevs'):
        m(bev, _batch(), nbs[:, :, :4])


def test_latency_is_keyed_by_scene_agent_and_frame():
    from occ.models.collab import CommChannel
    ch = CommChannel(latency=1)
    assert ch.transmit(('s1', 1), b'a', frame=0) is None
    assert ch.transmit(('s1', 1), b'b', frame=1) == b'a'
    assert ch.transmit(('s1', 1), b'b', frame=1) == b'a'         # a second receiver of the broadcast
    assert ch.transmit(('s2', 1), b'x', frame=2) is None          # another scene: nothing stale
    assert ch.transmit(('s1', 1), b'd', frame=3) is None          # frame 2 never sent
    assert ch.transmit(('s1', 1), b'e', frame=4) == b'd'
    # Through CollabFusion: the batch's scene_token / frame_idx / agent_id name the sender.
    bev, nbs = _maps()
    batch = _batch()
    batch['neighbors']['agent_id'] = torch.tensor([[7]])
    m = _module(strategy='topk', budget_bytes=600, link=dict(type='SimulatedLink', latency=1))
    outs = []
    for scene, frame in (('A', 0), ('B', 5), ('A', 1)):
        batch.update(scene_token=[scene], frame_idx=torch.tensor([frame]))
        outs.append(m(bev, batch, nbs)[0])
    assert torch.equal(outs[0], bev) and torch.equal(outs[1], bev) and not torch.equal(outs[2], bev)


def test_bucketed_neighbour_search_finds_the_same_tokens_in_reach():
    from occ.models.collab.attention import knn_bucketed, knn_exhaustive
    g = torch.Generator().manual_seed(5)
    qpos = bev_cell_centres(30, 30, (-12, -12, 12, 12))
    tpos = torch.cat([torch.rand(300, 2, generator=g) * 30 - 15, torch.rand(40, 2, generator=g) * 2])  # a dense clump
    reach = 0.5 + torch.rand(340, generator=g) * 1.5
    for k in (4, 12):
        ie, de = knn_exhaustive(qpos, tpos, k)
        ib, db = knn_bucketed(qpos, tpos, k, float(reach.max()))
        for q in range(qpos.shape[0]):
            exh = {int(i) for i, d in zip(ie[q], de[q]) if d <= reach[i]}
            buc = {int(i) for i, d in zip(ib[q], db[q]) if d <= reach[i]}
            assert exh == buc, q


def test_external_confidence_picks_the_sent_cells_and_augmented_neighbours_are_refused():
    from occ.models.collab.message import HEADER
    m = _module(strategy='topk', budget_bytes=HEADER.size + 2 * (C * 2 + 4))     # exactly 2 fp16 tokens
    nbs = torch.randn(1, 1, C, X, Y)
    conf = torch.zeros(1, 1, X, Y)
    conf[0, 0, 3, 4], conf[0, 0, 8, 1] = 5.0, 4.0
    data, _ = m.make_message(nbs[0, 0], (0.0, 0.0, 0.0), conf[0, 0])
    _, pos, _, _, _ = m.receive(data, (0.0, 0.0, 0.0), None, CELL)
    cells, _ = points_to_cells(pos, (X, Y), RNG)
    assert sorted(cells.tolist()) == [[3, 4], [8, 1]]
    batch = _batch()
    aug = torch.eye(4)
    aug[1, 1] = -1.0
    batch['neighbors']['bev_aug'] = aug[None, None]
    with pytest.raises(ValueError, match='without BEV augmentation'):
        m(torch.zeros(1, C, X, Y), batch, nbs)


def test_train_mix_draws_seeded_links_in_training_only():
    bev, nbs = _maps(b=1, k=1)
    mix = dict(strategies=('tome', 'topk', 'full'), budget_range=(300, 3000))
    m = _module(strategy='topk', budget_bytes=700, train_mix=mix)
    draws = [m.draw_training_link() for _ in range(200)]
    assert {s for s, _ in draws} == {'tome', 'topk', 'full'}
    budgets = [b for _, b in draws]
    assert 300 <= min(budgets) and max(budgets) <= 3000
    # log-uniform: about half the draws below the geometric mean sqrt(300 * 3000) ~ 949
    assert 0.35 < sum(b < math.sqrt(300 * 3000) for b in budgets) / len(budgets) < 0.65
    m.reset_state()
    assert [m.draw_training_link() for _ in range(200)] == draws          # seeded
    # Training: one drawn link per call, the configured one restored afterwards.
    m.reset_state()
    m.train()
    sizes = {m(bev, _batch(), nbs)[1].item() for _ in range(12)}
    assert len(sizes) > 3 and (m.strategy, m.budget_bytes) == ('topk', 700)
    # Eval: always the configured strategy and budget, bit for bit the module without a mix.
    m.eval()
    plain = _module(strategy='topk', budget_bytes=700).eval()
    plain.load_state_dict(m.state_dict())
    out, nbytes = m(bev, _batch(), nbs)
    out2, nbytes2 = plain(bev, _batch(), nbs)
    assert torch.equal(out, out2) and nbytes.item() == nbytes2.item() <= 700
    with pytest.raises(ValueError, match='train_mix'):
        _module(train_mix=dict(strategies=('none',), budget_range=(1, 2)))
    with pytest.raises(ValueError, match='budget_range'):
        _module(train_mix=dict(strategies=('tome',), budget_range=(0, 2)))
