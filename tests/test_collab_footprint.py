"""Merged tokens with footprints (occ/models/collab/footprint.py): footprints and unmerge against a
loop reference on a hand-made case, the message unmerged onto exactly the merged cells, bytes
within budget at every budget, determinism, the straight-through order, other strategies'
messages unchanged by the codec, clear errors."""
import math

import numpy as np
import pytest
import torch

from occ.geometry import planar_pose, pose2d
from occ.models.collab import CollabFusion, FootprintCodec, MessageError, WireCodec
from occ.models.collab.footprint import FootprintPayload, footprints, unmerge_cells
from occ.models.collab.message import HEADER, message_nbytes
from occ.models.collab.tokens import bev_cell_centres

C, X, Y = 8, 10, 10
RNG = (-8.0, -8.0, -1.0, 8.0, 8.0, 5.4)      # 1.6 m cells
POSE = (12.0, -3.0, 0.4)


def _module(budget=2000, quant='fp32', strategy='tome4fp', codec='FootprintCodec', **kw):
    torch.manual_seed(0)
    return CollabFusion(C, RNG, strategy=strategy, budget_bytes=budget, confidence='norm',
                        compressors=dict(tome4fp=dict(type='tome_fp', cells_per_token=4),
                                         tome4=dict(type='tome', cells_per_token=4)),
                        codec=dict(type=codec, quant=quant),
                        fusion=dict(type='LocalTokenAttention', zero_init=False), **kw)


def _bev(seed=1):
    g = torch.Generator().manual_seed(seed)
    # spatially smooth features, as a BEV encoder's, so merging has neighbours worth merging
    return torch.nn.functional.avg_pool2d(torch.randn(1, C, X, Y, generator=g), 3, 1, 1)[0]


# Hand-made: 4 tokens on a 6 x 5 grid; an L, a single cell, a box with a hole, a wide pair.
HAND_Y = 5
HAND_TOKENS = [[(0, 0), (0, 1), (1, 1)], [(3, 2)], [(2, 4), (4, 4)], [(5, 0), (5, 4)]]


def _hand_case():
    cells, assign = [], []
    for t, members in enumerate(HAND_TOKENS):
        for i, j in members:
            cells.append(i * HAND_Y + j)
            assign.append(t)
    perm = torch.randperm(len(cells), generator=torch.Generator().manual_seed(0))   # any input order
    return torch.tensor(cells)[perm], torch.tensor(assign)[perm]


def test_footprints_and_unmerge_match_a_loop_reference():
    cells, assign = _hand_case()
    boxes, masks, order = footprints(cells, assign, HAND_Y, len(HAND_TOKENS))
    # loop reference: the bounding box of each token's members, mask bits row-major in the box
    ref_masks = []
    for t, members in enumerate(HAND_TOKENS):
        i0, j0 = min(i for i, _ in members), min(j for _, j in members)
        w, h = max(i for i, _ in members) - i0 + 1, max(j for _, j in members) - j0 + 1
        assert boxes[t].tolist() == [i0, j0, w, h]
        bits = [0] * (8 * math.ceil(w * h / 8))
        for i, j in members:
            bits[(i - i0) * h + (j - j0)] = 1
        ref_masks += [sum(b << k for k, b in enumerate(bits[s:s + 8])) for s in range(0, len(bits), 8)]
    assert masks.tolist() == ref_masks
    token, i, j = unmerge_cells(boxes.numpy(), masks)
    got = [(int(t), int(a), int(b)) for t, a, b in zip(token, i, j)]
    assert got == [(t, a, b) for t, members in enumerate(HAND_TOKENS) for a, b in sorted(members)]
    # ``order`` sorts the input cells into that decoded order
    assert [(int(assign[o]), int(cells[o]) // HAND_Y, int(cells[o]) % HAND_Y) for o in order] == got


def test_codec_unmerges_each_token_onto_exactly_its_member_cells():
    cells, assign = _hand_case()
    boxes, masks, order = footprints(cells, assign, HAND_Y, len(HAND_TOKENS))
    token_feat = torch.randn(len(HAND_TOKENS), 3)
    x00, y00, cell = -4.0, -3.0, 0.5
    payload = FootprintPayload(feat=token_feat[assign[order]], pos=torch.zeros(len(HAND_TOKENS), 2),
                               token_feat=token_feat, boxes=boxes, masks=masks, grid=(x00, y00, cell))
    codec = FootprintCodec('fp32')
    data = codec.encode(payload, POSE, None)
    assert len(data) == codec.footprint_message_nbytes(3, boxes)
    msg = codec.decode(data)
    assert msg.nbytes == len(data) and msg.pose == pytest.approx(POSE) and torch.equal(msg.size, torch.ones(8))
    # loop reference: the unmerged map, each member cell holding its token's value, nothing else
    ref = {}
    for t, members in enumerate(HAND_TOKENS):
        for i, j in members:
            ref[(i, j)] = token_feat[t]
    got = {}
    for f, p in zip(msg.feat, msg.pos):
        key = (round((float(p[0]) - x00) / cell), round((float(p[1]) - y00) / cell))
        assert key not in got
        got[key] = f
        torch.testing.assert_close(p, torch.tensor([x00 + key[0] * cell, y00 + key[1] * cell]))
    assert got.keys() == ref.keys()
    for key in ref:
        assert torch.equal(got[key], ref[key])
    # the payload's per-cell features are in the decoded order (the straight-through estimate)
    assert torch.equal(msg.feat, payload.feat)


def test_compressor_message_unmerges_onto_the_merged_confident_cells():
    m = _module(budget=700)
    bev = _bev()
    data, sent = m.make_message(bev, POSE)
    msg = m.codec.decode(data)
    ntok = (len(data) - message_nbytes('tokens', 'fp32', C, 0)) // (4 * C + 4)   # a lower bound on tokens
    assert ntok >= 2
    # the decoded cells are exactly the most confident ones (4 per token), each once
    cells = bev_cell_centres(X, Y, RNG)
    idx = torch.cdist(msg.pos, cells).argmin(1)
    torch.testing.assert_close(msg.pos, cells[idx])
    assert len(set(idx.tolist())) == idx.numel() < X * Y
    norms = bev.reshape(C, -1).norm(dim=0)
    assert set(idx.tolist()) == set(torch.topk(norms, idx.numel()).indices.tolist())
    # each token's value is the mean of the features of the cells it is spread over (ToMe's unmerge)
    feats = bev.reshape(C, -1).t()
    values = {}
    for f, i in zip(msg.feat, idx):
        values.setdefault(tuple(f.tolist()), []).append(int(i))
    assert 2 <= len(values) < idx.numel()                  # merged: fewer values than cells
    for value, members in values.items():
        torch.testing.assert_close(torch.tensor(value), feats[members].mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sent.detach(), msg.feat)   # fp32: payload order = decoded order


@pytest.mark.parametrize('quant', ['fp32', 'fp16', 'int8'])
def test_bytes_within_budget_at_every_budget(quant):
    bev = _bev(2)
    m = _module(quant=quant)
    plain = message_nbytes('tokens', quant, C, X * Y)
    for budget in (0, 40, 100, 150, 300, 500, 800, 1200, 2000, 3000, 5000, plain - 1, plain, 10 ** 6):
        m.budget_bytes = budget
        data, _ = m.make_message(bev, POSE)
        if data is None:
            assert budget < message_nbytes('tokens', quant, C, 1) + 30   # not even one token with a footprint
            continue
        assert len(data) <= budget
        msg = m.codec.decode(data)
        assert msg.nbytes == len(data)
        if budget >= plain:                                 # every cell fits as it is
            assert msg.feat.shape[0] == X * Y and len(data) == plain
        else:
            assert HEADER.unpack_from(data)[8] < X * Y        # merged tokens on the wire
            per_token = C * {'fp32': 4, 'fp16': 2, 'int8': 1}[quant] + 8
            # the budget is used: the first plan guesses 2 mask bytes a token, so a few percent
            # may stay unused when the footprints are smaller
            assert len(data) > 0.95 * budget - 2 * per_token


def test_bytes_sent_is_the_sum_of_message_lengths_and_runs_are_deterministic():
    g = torch.Generator().manual_seed(3)
    bev = torch.randn(2, C, X, Y, generator=g)
    nbs = torch.nn.functional.avg_pool2d(torch.randn(4, C, X, Y, generator=g), 3, 1, 1).reshape(2, 2, C, X, Y)
    poses = ((1.0, 0.0, 10.0), (-2.0, 1.0, -20.0))
    e2g = lambda p: planar_pose(p[0], p[1], math.radians(p[2]))  # noqa: E731
    batch = dict(ego2global=torch.stack([e2g((0, 0, 0))] * 2),
                 neighbors=dict(ego2global=torch.stack([torch.stack([e2g(p) for p in poses])] * 2),
                                valid=torch.ones(2, 2, dtype=torch.bool)))
    outs = []
    for _ in range(2):
        m = _module(budget=900, quant='fp16').eval()
        with torch.no_grad():
            out, nbytes = m(bev, batch, nbs)
        outs.append(out)
        lengths = [len(m.make_message(nbs[b, k], pose2d(batch['neighbors']['ego2global'][b, k]))[0])
                   for b in range(2) for k in range(2)]
        assert nbytes.tolist() == [float(lengths[0] + lengths[1]), float(lengths[2] + lengths[3])]
        assert max(lengths) <= 900 and not torch.equal(out, bev)
    assert torch.equal(outs[0], outs[1])


def test_training_gradient_reaches_the_sender_through_the_unmerged_cells():
    m = _module(budget=900).train()
    bev = torch.zeros(1, C, X, Y)
    nbs = _bev(4).reshape(1, 1, C, X, Y).requires_grad_(True)
    batch = dict(ego2global=planar_pose(0, 0, 0)[None],
                 neighbors=dict(ego2global=planar_pose(1.0, 0.5, 0.1)[None, None],
                                valid=torch.ones(1, 1, dtype=torch.bool)))
    out, _ = m(bev, batch, nbs)
    out.sum().backward()
    assert nbs.grad is not None and nbs.grad.abs().sum() > 0


@pytest.mark.parametrize('strategy', ['topk', 'random', 'tome4', 'full'])
def test_other_strategies_send_the_same_bytes_as_the_plain_codec(strategy):
    bev = _bev(5)
    a = _module(budget=1500, quant='fp16', strategy=strategy).make_message(bev, POSE)[0]
    b = _module(budget=1500, quant='fp16', strategy=strategy, codec='WireCodec').make_message(bev, POSE)[0]
    assert a == b
    ma, mb = FootprintCodec('fp16').decode(a), WireCodec('fp16').decode(b)
    assert torch.equal(ma.feat, mb.feat) and torch.equal(ma.pos, mb.pos) and torch.equal(ma.size, mb.size)


def test_clear_errors():
    with pytest.raises(ValueError, match='FootprintCodec'):
        _module(codec='WireCodec').make_message(_bev(), POSE)
    with pytest.raises(ValueError, match='cells_per_token'):
        CollabFusion(C, RNG, strategy='t', compressors=dict(t=dict(type='tome_fp', cells_per_token=0.5)))
    m = _module(budget=700)
    data, _ = m.make_message(_bev(), POSE)
    with pytest.raises(MessageError, match='footprint'):
        m.codec.decode(data[:-1], 'msg-x')
    with pytest.raises(MessageError, match='msg-x'):
        m.codec.decode(data + b'\x00', 'msg-x')
    # a plain decoder refuses a footprint message rather than misreading it
    with pytest.raises(MessageError):
        WireCodec('fp32').decode(data)
    bad = bytearray(data)
    bad[-1] |= 0x80                                    # a padding / non-member bit set
    with pytest.raises(MessageError):
        m.codec.decode(bytes(bad))


def test_unmerge_rejects_an_empty_footprint():
    with pytest.raises(MessageError, match='no member'):
        unmerge_cells(np.array([[0, 0, 1, 2]]), np.zeros(1, np.uint8))
