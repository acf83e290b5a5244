"""Collaboration messages: real bytes, exact lengths, budgets, quantisation bounds, bad input."""
import struct

import numpy as np
import pytest
import torch

from occ.models.collab.message import (HEADER, MessageError, decode, encode_dense, encode_tokens,
                                       max_tokens_for_budget, message_nbytes)
from occ.models.collab.tokens import bev_cell_centres

POSE = (1234.5678, -987.125, 0.3)


def _tokens(n=50, c=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    feat = torch.randn(n, c, generator=g) * torch.linspace(0.01, 5, c)   # channels of very different scale
    pos = torch.rand(n, 2, generator=g) * 80 - 40
    size = torch.randint(1, 300, (n,), generator=g).float()
    return feat, pos, size


def test_fp32_round_trip_is_exact_and_length_is_reported():
    feat, pos, size = _tokens()
    data = encode_tokens(feat, pos, size, POSE, 'fp32')
    assert isinstance(data, bytes)
    assert len(data) == message_nbytes('tokens', 'fp32', 16, 50, True)
    msg = decode(data)
    assert msg.nbytes == len(data) and msg.kind == 'tokens'
    assert torch.equal(msg.feat, feat)
    assert torch.equal(msg.size, size)
    # Positions: int16 centimetres -> error at most half a centimetre.
    assert (msg.pos - pos).abs().max() <= 0.005 + 1e-6
    assert msg.pose[0] == POSE[0] and msg.pose[1] == POSE[1]   # float64 on the wire
    assert abs(msg.pose[2] - POSE[2]) < 1e-7


def test_fp16_round_trip_within_half_precision():
    feat, pos, _ = _tokens()
    msg = decode(encode_tokens(feat, pos, None, POSE, 'fp16'))
    # Round-to-nearest fp16 (10 explicit mantissa bits): relative error <= 2^-11 for normal numbers.
    bound = feat.abs() * 2.0 ** -11 + 2.0 ** -25
    assert ((msg.feat - feat).abs() <= bound).all()
    assert torch.equal(msg.size, torch.ones(50))


def test_int8_round_trip_within_half_a_step_per_channel():
    feat, pos, size = _tokens()
    msg = decode(encode_tokens(feat, pos, size, POSE, 'int8'))
    scale = feat.abs().amax(0) / 127.0        # per-channel step, derived independently
    err = (msg.feat - feat).abs()
    assert (err <= scale / 2 * (1 + 1e-5) + 1e-7).all()
    # The bound is tight enough to matter: a single global scale would break it on small channels.
    assert (err[:, 0] <= scale[0] / 2 + 1e-7).all() and scale[0] < scale[-1] / 100


def test_message_never_exceeds_budget_and_length_equals_reported():
    c = 32
    for quant in ('fp32', 'fp16', 'int8'):
        for has_sizes in (False, True):
            for budget in (0, 50, HEADER.size, 200, 1000, 4096, 12345, 65536):
                n = max_tokens_for_budget(budget, c, quant, has_sizes)
                if n == 0:
                    # Not even one token fits; one more byte-free token would not either.
                    assert message_nbytes('tokens', quant, c, 1, has_sizes) > budget
                    continue
                feat, pos, size = _tokens(n, c, seed=n)
                data = encode_tokens(feat, pos, size if has_sizes else None, POSE, quant)
                assert len(data) == message_nbytes('tokens', quant, c, n, has_sizes) <= budget
                # n is the largest count that fits.
                assert message_nbytes('tokens', quant, c, n + 1, has_sizes) > budget


def test_dense_round_trip_positions_implied_by_grid():
    bev = torch.randn(8, 10, 12)
    rng = (-40.0, -48.0, -1.0, 40.0, 48.0, 5.4)
    data = encode_dense(bev, POSE, rng, 'fp32')
    assert len(data) == message_nbytes('dense', 'fp32', 8, 120)
    msg = decode(data)
    assert msg.kind == 'dense' and torch.equal(msg.feat, bev.reshape(8, -1).t())
    torch.testing.assert_close(msg.pos, bev_cell_centres(10, 12, rng))
    with pytest.raises(ValueError, match='square'):
        encode_dense(bev, POSE, (-40, -40, -1, 40, 40, 5.4), 'fp32')


def test_positions_beyond_int16_centimetres_stretch_the_unit():
    feat, _, _ = _tokens(4, 2)
    pos = torch.tensor([[1000.0, -2000.0], [0.0, 0.5], [-999.0, 3.0], [12.0, 1999.0]])
    msg = decode(encode_tokens(feat, pos, None, POSE, 'fp32'))
    assert (msg.pos - pos).abs().max() <= msg.pos_unit / 2 + 1e-3


def test_corrupt_messages_raise_with_source_and_reason():
    feat, pos, size = _tokens(5, 4)
    data = encode_tokens(feat, pos, size, POSE, 'int8')
    with pytest.raises(MessageError, match='agent 3.*shorter than'):
        decode(data[:10], 'agent 3')
    with pytest.raises(MessageError, match='agent 3.*header says'):
        decode(data[:-1], 'agent 3')
    with pytest.raises(MessageError, match='bad magic'):
        decode(b'XXXX' + data[4:], 'agent 3')
    bad = bytearray(data)
    struct.pack_into('<B', bad, 4, 99)          # version byte
    with pytest.raises(MessageError, match='version 99'):
        decode(bytes(bad), 'agent 3')


def test_sizes_switch_to_uint32_for_huge_maps():
    feat, pos, _ = _tokens(3, 2)
    size = torch.tensor([70000.0, 1.0, 2.0])
    assert len(encode_tokens(feat, pos, torch.tensor([65535.0, 1, 2]), POSE, 'fp16')) == \
        message_nbytes('tokens', 'fp16', 2, 3, True, size_itemsize=2)
    data = encode_tokens(feat, pos, size, POSE, 'fp16')
    assert len(data) == message_nbytes('tokens', 'fp16', 2, 3, True, size_itemsize=4)
    assert torch.equal(decode(data).size, size)
    np.testing.assert_array_equal(decode(encode_tokens(feat, pos, None, POSE, 'fp16')).size.numpy(), 1)
