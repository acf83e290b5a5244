"""World model: causality, tokenizer/quantizer accounting, restarts, sampling, ego-motion warp, dataset."""
import math
import os
import pickle

import numpy as np
import pytest
import torch

from occ.constants import FREE, IGNORE_INDEX, NUM_CLASSES
from occ.data import occ_collate
from occ.models.world import (CopyLastForecaster, OccSequenceDataset, OccTokenizer, OccWorldModel, TokenForecaster,
                              VectorQuantizer, causal_mask, step_poses, warp_labels)

GRID = (16, 16, 4)


def _forecaster(**kw):
    torch.manual_seed(0)
    f = TokenForecaster(num_codes=32, token_shape=(4, 4), dim=32, depth=2, num_heads=2, max_frames=8, **kw)
    return f.eval()


def _pose(x=0.0, y=0.0, yaw=0.0):
    m = torch.eye(4)
    c, s = math.cos(yaw), math.sin(yaw)
    m[:2, :2] = torch.tensor([[c, -s], [s, c]])
    m[0, 3], m[1, 3] = x, y
    return m


# ------------------------------------------------------------------ causality
def test_causal_mask_forbids_only_later_frames():
    m = causal_mask(4)
    for q in range(4):
        for k in range(4):
            assert bool(m[q, k]) == (k > q)


def test_forecaster_future_tokens_do_not_reach_earlier_predictions():
    f = _forecaster()
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 32, (2, 6, 4, 4), generator=g)
    ego = torch.randn(2, 6, 4, generator=g)
    base = f(tokens, ego)                        # entry s predicts frame s+1
    t = 3
    pert = tokens.clone()
    pert[:, t] = (pert[:, t] + 7) % 32           # change frame t (and nothing before it)
    ego2 = ego.clone()
    ego2[:, t] += 5.0                            # and the motion after frame t
    out = f(pert, ego2)
    # Predictions of frames 1..t only saw frames < t: bit-identical.
    assert torch.equal(out[:, :t], base[:, :t])
    # The prediction from frame t on does depend on it (the test can fail).
    assert not torch.allclose(out[:, t:], base[:, t:])


def test_forecaster_camera_context_is_causal_too():
    f = _forecaster(bev_channels=6, bev_stride=2)
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(1, 3, 6, 8, 8, generator=g)
    tokens = torch.randint(0, 32, (1, 2, 4, 4), generator=g)
    ego = torch.randn(1, 5, 4, generator=g)
    base = f(tokens, ego, context_feats=feats)
    assert base.shape == (1, 5, 32, 4, 4)
    pert = feats.clone()
    pert[:, 2] += 1.0
    out = f(tokens, ego, context_feats=pert)
    assert torch.equal(out[:, :2], base[:, :2])
    assert not torch.allclose(out[:, 2:], base[:, 2:])


def test_forecaster_rejects_wrong_bev_size():
    f = _forecaster(bev_channels=6, bev_stride=2)
    with pytest.raises(ValueError, match='token grid'):
        f(None, torch.zeros(1, 1, 4), context_feats=torch.zeros(1, 1, 6, 10, 10))


def test_generate_is_deterministic_with_a_seed():
    f = _forecaster()
    tokens = torch.randint(0, 32, (2, 3, 4, 4), generator=torch.Generator().manual_seed(3))
    ego = torch.zeros(2, 6, 4)
    run = [f.generate(ego, 3, tokens=tokens, temperature=1.0, generator=torch.Generator().manual_seed(s))[0]
           for s in (7, 7, 8)]
    assert run[0].shape == (2, 3, 4, 4)
    assert torch.equal(run[0], run[1])
    assert not torch.equal(run[0], run[2])
    # Greedy rollout: the first generated frame is the argmax of the teacher-forced prediction.
    greedy, logits = f.generate(ego, 2, tokens=tokens)
    assert torch.equal(greedy[:, 0], f(tokens, ego[:, :3])[:, -1].argmax(1))
    assert torch.equal(greedy[:, 1], f(torch.cat([tokens, greedy[:, :1]], 1), ego[:, :4])[:, -1].argmax(1))


# ------------------------------------------------------------------ quantizer / tokenizer
def test_quantizer_nearest_code_and_straight_through():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=8, dim=3, ema=False, restart_threshold=0).eval()
    z = torch.randn(2, 3, 2, 2, requires_grad=True)
    out = vq(z)
    cb = vq.codebook.detach()
    for b in range(2):
        for i in range(2):
            for j in range(2):
                v = z[b, :, i, j].detach()
                ref = min(range(8), key=lambda k: float(((cb[k] - v) ** 2).sum()))
                assert int(out['indices'][b, i, j]) == ref
                assert torch.allclose(out['quantized'][b, :, i, j], cb[ref])
    # Straight-through: d(sum quantized)/dz = 1 everywhere (+ the commitment term's gradient).
    out['quantized'].sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))


def test_usage_stats_against_loop():
    idx = torch.tensor([0, 0, 1, 3, 3, 3, 3, 5])
    s = VectorQuantizer.usage_stats(idx, 8)
    counts = [0] * 8
    for i in idx.tolist():
        counts[i] += 1
    h = -sum(c / 8 * math.log(c / 8) for c in counts if c)
    assert math.isclose(float(s['perplexity']), math.exp(h), rel_tol=1e-5)
    assert math.isclose(float(s['code_usage']), 4 / 8)


def test_ema_update_with_zero_decay_is_the_cluster_mean():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=4, dim=2, ema=True, decay=0.0, eps=0.0, restart_threshold=0).train()
    vq.codebook.copy_(torch.tensor([[0., 0.], [10., 0.], [0., 10.], [10., 10.]]))
    pts = torch.tensor([[1., 1.], [-1., 0.], [9., 1.], [11., -1.], [12., 0.]])
    vq(pts.t().reshape(1, 2, 5, 1))
    assert torch.allclose(vq.codebook[0], torch.tensor([0., 0.5]))
    assert torch.allclose(vq.codebook[1], torch.tensor([32 / 3, 0.]))
    assert torch.allclose(vq.usage, torch.tensor([2., 3., 0., 0.]))


def test_dead_code_restart_changes_only_unused_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=6, dim=4, ema=True, restart_threshold=0.5, restart_every=0)
    vq.usage.copy_(torch.tensor([3., 0., 2., 0., 0.1, 1.]))
    before = vq.codebook.clone()
    recent = torch.randn(50, 4) + 100.0            # far from every initial code
    n = vq.restart_dead_codes(recent, generator=torch.Generator().manual_seed(0))
    dead = torch.tensor([False, True, False, True, True, False])
    assert n == 3
    assert torch.equal(vq.codebook[~dead], before[~dead])
    assert (vq.codebook[dead] - before[dead]).abs().min() > 50          # moved onto the encoder outputs
    assert (vq.codebook[dead] > 90).all()
    assert torch.equal(vq.ema_sum[dead], vq.codebook[dead])
    assert (vq.usage[dead] == 1.0).all() and not vq.dead_codes().any()


def test_automatic_restart_during_training():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=16, dim=2, ema=True, decay=0.5, restart_threshold=0.5, restart_every=3).train()
    z = torch.full((1, 2, 4, 4), 5.0) + 0.01 * torch.randn(1, 2, 4, 4)
    first = vq.codebook.clone()
    for _ in range(3):
        out = vq(z)
    # All points go to one code: the other 15 decay below the threshold and restart on the data.
    moved = (vq.codebook - first).norm(dim=1) > 1.0
    assert int(moved.sum()) >= 14
    assert float(out['code_usage']) == 1 / 16


def test_tokenizer_shapes_and_decode_paths():
    torch.manual_seed(0)
    tok = OccTokenizer(grid_shape=GRID, embed_dim=4, channels=8, num_down=2, code_dim=8, num_codes=16).eval()
    labels = torch.randint(0, NUM_CLASSES, (2,) + GRID, dtype=torch.uint8)
    labels[0, 0, 0, 0] = IGNORE_INDEX
    out = tok(labels)
    assert tok.token_shape == (4, 4)
    assert out['indices'].shape == (2, 4, 4) and out['indices'].dtype == torch.long
    assert out['logits'].shape == (2, NUM_CLASSES) + GRID
    assert torch.allclose(tok.decode_indices(out['indices']), out['logits'], atol=1e-5)
    onehot = torch.nn.functional.one_hot(out['indices'], 16).permute(0, 3, 1, 2).float()
    assert torch.allclose(tok.decode_probs(onehot), out['logits'], atol=1e-5)
    with pytest.raises(ValueError, match='do not match grid'):
        tok(torch.zeros(1, 8, 8, 4, dtype=torch.uint8))


# ------------------------------------------------------------------ ego motion
def test_step_poses_translation_and_yaw():
    poses = torch.stack([_pose(0, 0, 0), _pose(2, 0, 0), _pose(2, 0, math.pi / 2), _pose(2, 3, math.pi / 2)])[None]
    f = step_poses(poses)[0]
    assert torch.allclose(f[0], torch.tensor([2., 0., 0., 1.]), atol=1e-5)
    assert torch.allclose(f[1], torch.tensor([0., 0., 1., 0.]), atol=1e-5)
    assert torch.allclose(f[2], torch.tensor([3., 0., 0., 1.]), atol=1e-5)     # +3 m along y = forward after 90 deg
    assert torch.allclose(f[3], torch.tensor([0., 0., 0., 1.]))


def _warp_reference(lab, dst2src, lo, v):
    """Loop over destination voxels."""
    nx, ny, nz = lab.shape
    out = np.full_like(lab, FREE)
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                p = np.array([lo[0] + (i + .5) * v, lo[1] + (j + .5) * v, lo[2] + (k + .5) * v, 1.0])
                q = dst2src @ p
                s = np.floor((q[:3] - np.array(lo)) / v).astype(int)
                if (s >= 0).all() and (s < np.array(lab.shape)).all():
                    out[i, j, k] = lab[tuple(s)]
    return out


def test_ego_warp_on_a_hand_built_moving_grid():
    pc_range, v = (-5.0, -5.0, -1.0, 5.0, 5.0, 1.0), 1.0
    lab = np.full((10, 10, 2), FREE, np.uint8)
    lab[6, 5, 0] = 4                     # a car 1.5 m ahead
    lab[:, :, 0][lab[:, :, 0] == FREE] = 11
    lab[9, :, 1] = 15                    # a wall at the far front edge
    cur, fut = _pose(100, 50, 0), _pose(102, 50, 0)        # the ego drives 2 m forward
    model = CopyLastForecaster(num_future=1, ego_warp=True, pc_range=pc_range, voxel_size=v)
    out = model.forecast(torch.from_numpy(lab)[None], cur[None], fut[None, None])[0, 0].numpy()
    assert out[4, 5, 0] == 4 and (out[:, :, 0] == 4).sum() == 1      # 2 cells closer
    assert (out[7, :, 1] == 15).all()
    assert (out[8:, :, :] == FREE).all()                              # came from outside the grid
    # A turn and a shift against the loop reference.
    fut = _pose(101.3, 49.2, 0.4)
    dst2src = np.linalg.inv(cur.numpy().astype(np.float64)) @ fut.numpy().astype(np.float64)
    out = model.forecast(torch.from_numpy(lab)[None], cur[None], fut[None, None])[0, 0].numpy()
    np.testing.assert_array_equal(out, _warp_reference(lab, dst2src, pc_range[:3], v))
    # Without the warp the last frame is copied to every horizon.
    copy = CopyLastForecaster(num_future=3).forecast(torch.from_numpy(lab)[None])
    assert copy.shape == (1, 3, 10, 10, 2) and all(np.array_equal(copy[0, h].numpy(), lab) for h in range(3))


def test_warp_labels_identity():
    lab = torch.randint(0, 18, (2, 6, 6, 3))
    out = warp_labels(lab, torch.eye(4).expand(2, 4, 4), (-3, -3, -1, 3, 3, 2), 1.0)
    assert torch.equal(out, lab)


# ------------------------------------------------------------------ world model and dataset
def _batch(b=2, t=2, h=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    sem = lambda *s: torch.randint(0, NUM_CLASSES, s + GRID, generator=g).to(torch.uint8)  # noqa: E731
    poses = torch.stack([torch.stack([_pose(2.0 * k, 0.1 * i, 0.05 * k) for k in range(t + 1 + h)])
                         for i in range(b)])
    fut = sem(b, h)
    fut[1, -1] = IGNORE_INDEX
    return {'voxel_semantics': sem(b), 'ego2global': poses[:, t],
            'history': {'voxel_semantics': sem(b, t), 'ego2global': poses[:, :t],
                        'valid': torch.tensor([[False, True], [True, True]])},
            'future_semantics': fut, 'future_ego2global': poses[:, t + 1:],
            'future_valid': torch.tensor([[True] * h, [True] * (h - 1) + [False]]),
            'sample_token': ['a', 'b']}


def _world(stage, **kw):
    torch.manual_seed(0)
    return OccWorldModel(
        tokenizer=dict(type='OccTokenizer', grid_shape=GRID, embed_dim=4, channels=8, code_dim=8, num_codes=16),
        forecaster=dict(type='TokenForecaster', num_codes=16, token_shape=(4, 4), dim=16, depth=1, num_heads=2,
                        max_frames=8),
        stage=stage, num_future=3, **kw)


def test_world_model_stages_train_the_right_parts(tmp_path):
    tokm = _world('tokenizer', tokenizer_frames='context')
    losses = tokm(**tokm.data_preprocessor(_batch(), True), mode='loss')
    assert {'loss_rec_weightedce', 'loss_vq', 'perplexity', 'code_usage'} <= set(losses)
    ckpt = tmp_path / 'tok.pth'
    torch.save({'state_dict': tokm.state_dict()}, ckpt)

    m = _world('forecaster', tokenizer_ckpt=str(ckpt)).train()
    assert torch.equal(m.tokenizer.quantizer.codebook, tokm.tokenizer.quantizer.codebook)
    assert not m.tokenizer.training
    losses = m(**m.data_preprocessor(_batch(), True), mode='loss')
    assert {'loss_token', 'loss_occ_weightedce', 'token_acc'} <= set(losses)
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    assert all(p.grad is None for p in m.tokenizer.parameters())
    assert all(p.grad is not None for p in m.forecaster.head.parameters())

    m.eval()
    preds = m(**m.data_preprocessor(_batch(), False), mode='predict')
    assert [p['sample_token'] for p in preds] == ['a', 'b']
    assert preds[0]['semantics_future'].shape == (3,) + GRID and preds[0]['semantics_future'].dtype == np.uint8
    assert preds[0]['semantics'].shape == GRID


def test_world_model_sampling_is_seeded():
    outs = []
    for seed in (5, 5):
        m = _world('forecaster', temperature=1.0, sample_seed=seed).eval()
        outs.append(m(**m.data_preprocessor(_batch(), False), mode='predict')[1]['semantics_future'])
    np.testing.assert_array_equal(outs[0], outs[1])


def test_world_model_token_loss_skips_missing_frames():
    m = _world('forecaster', occ_loss_weight=0.0, context_loss=False)
    base = m(**m.data_preprocessor(_batch(), True), mode='loss')['loss_token']
    b = _batch()
    b['future_semantics'][1, -1] = 3                 # past the scene end: never a target
    assert torch.allclose(base, m(**m.data_preprocessor(b, True), mode='loss')['loss_token'])
    b = _batch()
    b['future_semantics'][1, 0] = 3                  # a real future frame: a target
    assert not torch.allclose(base, m(**m.data_preprocessor(b, True), mode='loss')['loss_token'])


def _fake_world(root, frames=5):
    """One scene of ``frames`` label frames on the 0.8 m grid, ego driving +2 m per frame."""
    infos = []
    for f in range(frames):
        sem = np.full((100, 100, 8), FREE, np.uint8)
        sem[:, :, 0] = 11
        sem[50 + f, 50, 1] = 4
        path = f'gts/s0/t{f}/labels.npz'
        os.makedirs(os.path.join(root, os.path.dirname(path)), exist_ok=True)
        np.savez(os.path.join(root, path), semantics=sem, mask_camera=np.ones_like(sem),
                 mask_lidar=np.ones_like(sem))
        pose = np.eye(4, dtype=np.float32)
        pose[0, 3] = 2.0 * f
        infos.append({'token': f't{f}', 'scene_token': 's0', 'scene_name': 'scene-0', 'frame_idx': f,
                      'timestamp': f * 500000, 'ego2global': pose, 'occ_path': path, 'cams': {},
                      'prev': '', 'next': ''})
    meta = {'version': 'v1.0-trainval', 'dataroot': str(root), 'splits_from': 'auto',
            'grid': {'pc_range': [-40, -40, -1, 40, 40, 5.4], 'voxel_size': 0.8}, 'has_occ': True}
    with open(os.path.join(root, 'occ_infos_train.pkl'), 'wb') as fh:
        pickle.dump({'metadata': meta, 'infos': infos}, fh)
    return os.path.join(root, 'occ_infos_train.pkl')


def test_sequence_dataset_history_future_and_padding(tmp_path):
    info = _fake_world(tmp_path)
    ds = OccSequenceDataset(info, num_history=2, num_future=3)
    assert len(ds) == 5
    s = ds[1]
    assert s['history']['valid'].tolist() == [False, True]
    assert torch.equal(s['history']['voxel_semantics'][0], s['history']['voxel_semantics'][1])   # padding repeats
    assert s['future_valid'].tolist() == [True, True, True]
    assert s['future_semantics'][0, 52, 50, 1] == 4 and s['voxel_semantics'][51, 50, 1] == 4
    last = ds[4]
    assert last['future_valid'].tolist() == [False, False, False]
    assert (last['future_semantics'] == IGNORE_INDEX).all()
    assert torch.equal(last['future_ego2global'][2], last['ego2global'])
    b = occ_collate([ds[2], ds[3]])
    assert b['history']['voxel_semantics'].shape == (2, 2, 100, 100, 8)
    assert b['future_semantics'].shape == (2, 3, 100, 100, 8)
    filtered = OccSequenceDataset(info, num_history=2, num_future=3, require_history=True, min_future=2)
    assert [filtered.infos[i]['frame_idx'] for i in filtered.indices] == [2]
    with pytest.raises(ValueError, match='no sample'):
        OccSequenceDataset(info, num_history=4, num_future=3, require_history=True, min_future=3)


def test_evaluate_forecasters_scores_copy_baselines():
    from occ.models.world import evaluate_forecasters, format_table
    b = _batch()
    static = _batch()
    # A world that does not change: copy-last is perfect at every horizon.
    static['future_semantics'] = static['voxel_semantics'][:, None].repeat(1, 3, 1, 1, 1)
    res = evaluate_forecasters({'copy': CopyLastForecaster(num_future=3)}, [static], 3)
    assert res['samples'] == 2
    assert all(res['copy'][h]['miou'] == 1.0 and res['copy'][h]['iou'] == 1.0 for h in ('0.5s', '1s', '1.5s'))
    assert res['copy']['avg']['horizons'] == ['1s']
    # Against random futures it is imperfect, and the future frame past the scene end is skipped.
    res = evaluate_forecasters({'copy': CopyLastForecaster(num_future=3)}, [b], 3)
    assert res['copy']['1s']['miou'] < 0.2
    table = format_table(res, 3)
    assert table.count('\n') == 2 and '| copy |' in table


def test_world_configs_build():
    from occ.engine import load_config
    from occ.registry import MODELS
    for name, kind in (('world_tokenizer_cpu', OccWorldModel), ('world_forecaster_cpu', OccWorldModel),
                       ('world_copy_last', CopyLastForecaster), ('world_ego_warp', CopyLastForecaster)):
        cfg = load_config(os.path.join(os.path.dirname(__file__), '..', 'configs', name + '.py'))
        model = MODELS.build(cfg.model)
        assert isinstance(model, kind)
        assert cfg.train_dataloader.dataset.type == 'OccSequenceDataset'
    assert model.ego_warp and cfg.model.voxel_size == 0.8


def test_world_model_camera_driven_mode():
    torch.manual_seed(0)
    m = OccWorldModel(
        tokenizer=dict(type='OccTokenizer', grid_shape=GRID, embed_dim=4, channels=8, code_dim=8, num_codes=16),
        forecaster=dict(type='TokenForecaster', num_codes=16, token_shape=(4, 4), dim=16, depth=1, num_heads=2,
                        max_frames=8, bev_channels=5, bev_stride=4),
        stage='forecaster', num_future=3)
    b = _batch()
    b['context_bev'] = torch.randn(2, 3, 5, 16, 16)
    losses = m(**m.data_preprocessor(b, True), mode='loss')
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    assert m.forecaster.bev_adapter.weight.grad is not None and m.forecaster.bev_adapter.weight.grad.abs().sum() > 0
    m.eval()
    p1 = m(**m.data_preprocessor(b, False), mode='predict')[0]['semantics_future']
    b['voxel_semantics'] = torch.zeros_like(b['voxel_semantics'])       # GT context is not read
    b['history']['voxel_semantics'].zero_()
    p2 = m(**m.data_preprocessor(b, False), mode='predict')[0]['semantics_future']
    np.testing.assert_array_equal(p1, p2)
    b['context_bev'] = b['context_bev'][:, :2]
    m.train()
    with pytest.raises(ValueError, match='context_bev'):
        m(**m.data_preprocessor(b, True), mode='loss')
