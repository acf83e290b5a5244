"""Temporal fusion: training (recomputed history) vs streaming memory, resets, validity."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from occ.geometry import planar_pose, relative_pose
from occ.models.temporal import TemporalFusion, TemporalSelfAttention

PC = (-40.0, -40.0, -1.0, 40.0, 40.0, 5.4)
C, N = 8, 12
FUSIONS = [dict(type='ConcatConvFusion'), dict(type='TemporalSelfAttention', num_heads=2, num_points=3),
           dict(type='ConvGRUFusion')]


def pose(x, y, yaw):
    return planar_pose(x, y, yaw)


def make_scene(seed, n_frames):
    """Random BEV maps, poses of a car driving and turning, a BEV aug per frame."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n_frames, C, N, N, generator=g)
    poses, x, y, yaw = [], 500.0 + seed, -300.0, 0.2
    augs = []
    for k in range(n_frames):
        poses.append(pose(x, y, yaw))
        augs.append(pose(0.0, 0.0, 0.1 * (k % 3)) @ torch.diag(torch.tensor([1.0, (-1.0) ** k, 1.0, 1.0])))
        x, y, yaw = x + 5.0 * math.cos(yaw), y + 5.0 * math.sin(yaw), yaw + 0.15
    return dict(feat=feats, ego2global=torch.stack(poses), bev_aug=torch.stack(augs))


def make_batch(scenes, samples, t_hist, stride=1):
    """Batch of (scene name, frame index) samples with T history slots ``stride`` apart (most recent last)."""
    cur = {k: [] for k in ('feat', 'ego2global', 'bev_aug')}
    hist = {k: [] for k in ('feat', 'ego2global', 'bev_aug', 'valid')}
    for name, k in samples:
        s = scenes[name]
        for key in cur:
            cur[key].append(s[key][k])
        idx = [k - (t_hist - i) * stride for i in range(t_hist)]
        for key in cur:
            # missing frames are filled with the oldest frame's data, flagged invalid
            hist[key].append(torch.stack([s[key][max(i, 0)] for i in idx]))
        hist['valid'].append(torch.tensor([i >= 0 for i in idx]))
    batch = {k: torch.stack(v) for k, v in cur.items()}
    batch['history'] = {k: torch.stack(v) for k, v in hist.items()}
    batch['scene_token'] = [name for name, _ in samples]
    batch['frame_idx'] = torch.tensor([k for _, k in samples])
    return batch


def bev_fn(b):
    return b['feat']


def build(fusion, t, **kw):
    torch.manual_seed(0)
    m = TemporalFusion(fusion=dict(fusion, channels=C), num_history=t, pc_range=PC, **kw).eval()
    for p in m.parameters():        # non-trivial weights, also for zero-initialised parts
        p.data.add_(0.05 * torch.randn_like(p))
    return m


@pytest.mark.parametrize('fusion', FUSIONS, ids=lambda f: f['type'])
def test_streaming_equals_recomputed_history(fusion):
    # the recurrent memory sees the whole scene when streaming, so give the
    # recomputed version a history that covers it (T >= frames - 1)
    t = 5 if fusion['type'] == 'ConvGRUFusion' else 2
    scenes = {'a': make_scene(1, 6), 'b': make_scene(2, 3)}
    m = build(fusion, t)
    order = [('a', 0), ('a', 1), ('a', 2), ('b', 0), ('a', 3), ('b', 1), ('a', 4), ('b', 2), ('a', 5)]
    state = None
    with torch.no_grad():
        for name, k in order:
            batch = make_batch(scenes, [(name, k)], t)
            streamed, state = m.forward_stream(batch['feat'], batch, state)
            recomputed = m.forward_train(bev_fn, batch['feat'], batch)
            assert torch.allclose(streamed, recomputed, atol=1e-5), (name, k)
            if k > 0:   # history actually changes the result
                no_hist = dict(batch, history=dict(batch['history'], valid=torch.zeros(1, t, dtype=torch.bool)))
                assert not torch.allclose(streamed, m.forward_train(bev_fn, batch['feat'], no_hist), atol=1e-3)


@pytest.mark.parametrize('fusion', FUSIONS, ids=lambda f: f['type'])
def test_streaming_with_history_stride(fusion):
    t, stride = 3, 2
    scenes = {'a': make_scene(12, 7)}
    m = build(fusion, t, history_stride=stride)
    state = None
    with torch.no_grad():
        for k in range(7):
            batch = make_batch(scenes, [('a', k)], t, stride)
            streamed, state = m.forward_stream(batch['feat'], batch, state)
            assert torch.allclose(streamed, m.forward_train(bev_fn, batch['feat'], batch), atol=1e-5), k


@pytest.mark.parametrize('fusion', FUSIONS, ids=lambda f: f['type'])
def test_streaming_batch_with_consecutive_frames_and_two_scenes(fusion):
    t = 3
    scenes = {'a': make_scene(3, 4), 'b': make_scene(4, 4)}
    m = build(fusion, t)
    state = None
    with torch.no_grad():
        for samples in ([('a', 0), ('a', 1), ('b', 0)], [('b', 1), ('a', 2), ('a', 3)]):
            batch = make_batch(scenes, samples, t)
            streamed, state = m.forward_stream(batch['feat'], batch, state)
            assert torch.allclose(streamed, m.forward_train(bev_fn, batch['feat'], batch), atol=1e-5)


@pytest.mark.parametrize('fusion', FUSIONS, ids=lambda f: f['type'])
def test_scene_boundary_and_gap_reset(fusion):
    t = 2
    scenes = {'a': make_scene(5, 5), 'b': make_scene(6, 5)}
    m = build(fusion, t)

    def fresh(name, k):
        """Output with no history at all."""
        batch = make_batch(scenes, [(name, k)], t)
        batch['history']['valid'][:] = False
        return m.forward_train(bev_fn, batch['feat'], batch)

    with torch.no_grad():
        state = None
        for k in range(3):
            batch = make_batch(scenes, [('a', k)], t)
            _, state = m.forward_stream(batch['feat'], batch, state)
        # a new scene token starts from an empty memory
        batch = make_batch(scenes, [('b', 3)], t)
        out, state = m.forward_stream(batch['feat'], batch, state)
        assert torch.allclose(out, fresh('b', 3), atol=1e-6)
        # a frame gap in scene a (2 -> 4): frame 3 is missing
        batch = make_batch(scenes, [('a', 4)], t)
        out, state = m.forward_stream(batch['feat'], batch, state)
        if fusion['type'] == 'ConvGRUFusion':
            assert torch.allclose(out, fresh('a', 4), atol=1e-6)
        else:   # frame 2 is still within T; frame 3's slot is invalid
            batch['history']['valid'][:, -1] = False
            assert torch.allclose(out, m.forward_train(bev_fn, batch['feat'], batch), atol=1e-5)
            assert not torch.allclose(out, fresh('a', 4), atol=1e-3)
        # replaying a scene from its start (frame index goes back) resets
        batch = make_batch(scenes, [('a', 1)], t)
        out, state = m.forward_stream(batch['feat'], batch, state)
        assert torch.allclose(out, fresh('a', 1), atol=1e-6)


def test_streaming_memory_is_bounded():
    m = build(FUSIONS[0], 2, max_scenes=2)
    scenes = {s: make_scene(i, 3) for i, s in enumerate('abcd')}
    state = None
    with torch.no_grad():
        for s in 'abcd':
            for k in range(3):
                batch = make_batch(scenes, [(s, k)], 2)
                _, state = m.forward_stream(batch['feat'], batch, state)
    assert list(state) == ['c', 'd'] and all(len(v) == 2 for v in state.values())


@pytest.mark.parametrize('fusion', FUSIONS[:2], ids=lambda f: f['type'])
def test_invalid_frames_and_cells_do_not_leak(fusion):
    t = 2
    scenes = {'a': make_scene(7, 4)}
    m = build(fusion, t)
    batch = make_batch(scenes, [('a', 1)], t)     # slot 0 is invalid (frame -1)
    with torch.no_grad():
        ref = m.forward_train(bev_fn, batch['feat'], batch)
        poisoned = dict(batch, history=dict(batch['history']))
        poisoned['history']['feat'] = batch['history']['feat'].clone()
        poisoned['history']['feat'][:, 0] = 1e6
        assert torch.allclose(m.forward_train(bev_fn, batch['feat'], poisoned), ref)
        # a past frame 300 m away lies wholly outside the map: its cells are all invalid
        far = dict(batch, history=dict(batch['history']))
        far['history']['ego2global'] = batch['history']['ego2global'].clone()
        far['history']['ego2global'][:, :, 0, 3] += 300.0
        far['history']['feat'] = batch['history']['feat'] * 0 + 1e6
        out_far = m.forward_train(bev_fn, batch['feat'], far)
        none = dict(batch, history=dict(batch['history'], valid=torch.zeros(1, t, dtype=torch.bool)))
        assert torch.allclose(out_far, m.forward_train(bev_fn, batch['feat'], none), atol=1e-4)


def test_history_grad_switch_and_encoder_calls():
    scenes = {'a': make_scene(8, 4)}
    batch = make_batch(scenes, [('a', 1), ('a', 3)], 3)   # 1 + 3 valid history frames
    enc = nn.Conv2d(C, C, 1)
    calls = []

    def fn(b):
        calls.append(b['feat'].shape[0])
        return {'bev': enc(b['feat'])}

    for grad in (False, True):
        m = build(FUSIONS[0], 3, history_grad=grad).train()
        enc.zero_grad()
        out = m.fuse(enc(batch['feat']), batch, fn)[0]
        out.square().mean().backward()
        g_cur = enc.weight.grad.clone()
        enc.zero_grad()
        m.fuse(enc(batch['feat']).detach(), batch, fn)[0].square().mean().backward()
        if grad:
            assert enc.weight.grad is not None and enc.weight.grad.abs().sum() > 0
        else:
            assert enc.weight.grad is None or enc.weight.grad.abs().sum() == 0
            assert g_cur.abs().sum() > 0
    assert calls == [4, 4, 4, 4]   # only the valid history frames are encoded


def test_fuse_needs_history_in_training_and_checks_config():
    m = build(FUSIONS[0], 2).train()
    batch = make_batch({'a': make_scene(9, 2)}, [('a', 1)], 2)
    del batch['history']
    with pytest.raises(KeyError, match='num_history'):
        m.fuse(batch['feat'], batch, bev_fn)
    with pytest.raises(ValueError, match='fusion type'):
        TemporalFusion(fusion=dict(type='Nope', channels=C), num_history=1, pc_range=PC)
    with pytest.raises(ValueError, match='num_history >= 1'):
        TemporalFusion(fusion=dict(type='ConcatConvFusion', channels=C), num_history=0, pc_range=PC)
    m.eval()
    batch.pop('scene_token')
    with pytest.raises(KeyError, match='scene_token'):
        m.fuse(batch['feat'], batch, bev_fn)


def test_any_registered_fusion_can_be_used_from_config():
    """No allow-list: a fusion registered in TEMPORAL_FUSIONS (here, from a test) is built by type name."""
    from occ.geometry import warp_bev
    from occ.models.temporal import TEMPORAL_FUSIONS

    @TEMPORAL_FUSIONS.register_module(force=True)
    class MeanOfAlignedFrames(nn.Module):
        recurrent = False

        def __init__(self, channels, num_frames, pc_range):
            super().__init__()
            self.pc_range = pc_range

        def forward(self, bev, frames):
            warped = [warp_bev(f['feat'], f['cur2past'], self.pc_range)[0] for f in frames]
            return torch.stack([bev, *warped]).mean(0)

    m = TemporalFusion(fusion=dict(type='MeanOfAlignedFrames', channels=C), num_history=2, pc_range=PC).train()
    assert isinstance(m.fusion, MeanOfAlignedFrames) and m.fusion.pc_range == PC
    scene = make_scene(3, 3)
    batch = make_batch({'a': scene}, [('a', 2)], 2)
    out = m.fuse(batch['feat'], batch, bev_fn)[0]
    want = (batch['feat'] + sum(warp_bev(scene['feat'][k][None], relative_pose(
        batch['ego2global'], scene['ego2global'][k][None], batch['bev_aug'], scene['bev_aug'][k][None]), PC)[0]
        for k in (0, 1))) / 3
    torch.testing.assert_close(out, want)


def _bilinear(f, x, y):
    """f [C, X, Y] at continuous cell index (x, y), clamped to the map (border)."""
    nx, ny = f.shape[1:]
    x, y = min(max(x, 0.0), nx - 1), min(max(y, 0.0), ny - 1)
    x0, y0 = int(math.floor(x)), int(math.floor(y))
    x1, y1 = min(x0 + 1, nx - 1), min(y0 + 1, ny - 1)
    a, b = x - x0, y - y0
    return (1 - a) * (1 - b) * f[:, x0, y0] + a * (1 - b) * f[:, x1, y0] + (1 - a) * b * f[:, x0, y1] + a * b * f[:, x1, y1]


def test_temporal_attention_matches_slow_reference():
    torch.manual_seed(11)
    n, c, h, p = 6, 4, 2, 3
    pc = (-12.0, -12.0, -1.0, 12.0, 12.0, 3.0)
    vox = 24.0 / n
    att = TemporalSelfAttention(c, 1, pc, num_heads=h, num_points=p, offset_scale=2.5).eval()
    for prm in att.parameters():
        prm.data.add_(0.3 * torch.randn_like(prm))
    cur, past = torch.randn(1, c, n, n), torch.randn(1, c, n, n)
    m = torch.from_numpy(np.linalg.inv(pose(3.0, 1.0, 0.3).numpy()) @ pose(5.5, 2.0, 0.5).numpy())[None].float()
    with torch.no_grad():
        out = att(cur, [dict(feat=past, cur2past=m, valid=torch.tensor([True]))])[0].double().numpy()
        # inputs to the reference: the module's own conv outputs (offset/weight
        # predictors and projections are plain 1x1 convs, not what is tested)
        from occ.geometry import warp_bev
        aligned = warp_bev(past, m, pc)[0]
        ctx = torch.cat([aligned, cur], 1)
        off = att.offsets(ctx)[0].view(2, h, p, 2, n, n).double().numpy()
        logit = att.weights(ctx)[0].view(2, h, p, n, n).double().numpy()
        vals = [att.value_proj(past)[0].double().numpy(), att.value_proj(cur)[0].double().numpy()]
        mats = [m[0].double().numpy(), np.eye(4)]
        wout, bout = att.out_proj.weight[:, :, 0, 0].double().numpy(), att.out_proj.bias.double().numpy()
    ref = np.zeros((c, n, n))
    for i in range(n):
        for j in range(n):
            head_out = []
            for hh in range(h):
                ws, vs = [], []
                for f in range(2):
                    for k in range(p):
                        q = np.array([-12 + (i + 0.5) * vox + off[f, hh, k, 0, i, j] * vox,
                                      -12 + (j + 0.5) * vox + off[f, hh, k, 1, i, j] * vox, 0, 1])
                        q = mats[f] @ q
                        if not (-12 <= q[0] <= 12 and -12 <= q[1] <= 12):
                            continue
                        ws.append(logit[f, hh, k, i, j])
                        vs.append(_bilinear(vals[f][hh * (c // h):(hh + 1) * (c // h)],
                                            (q[0] + 12) / vox - 0.5, (q[1] + 12) / vox - 0.5))
                if ws:
                    w = np.exp(np.array(ws) - max(ws))
                    w /= w.sum()
                    head_out.append((w[:, None] * np.stack(vs)).sum(0))
                else:
                    head_out.append(np.zeros(c // h))
            ref[:, i, j] = wout @ np.concatenate(head_out) + bout + cur[0, :, i, j].double().numpy()
    np.testing.assert_allclose(out, ref, atol=1e-4)
