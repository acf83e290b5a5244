"""World model: causality, tokenizer/quantizer accounting, restarts, sampling, ego-motion warp, dataset."""
import math
import os
import pickle

import numpy as np
import pytest
import torch

from occ.constants import FREE, IGNORE_INDEX, NUM_CLASSES
from occ.data import occ_collate
from occ.geometry import OccGrid, warp_labels
from occ.models.world import (CopyLastForecaster, OccSequenceDataset, OccTokenizer, OccWorldModel, TokenForecaster,
                              VectorQuantizer, causal_mask, step_poses)

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


def test_normalized_quantizer_keeps_unit_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=8, dim=4, ema=True, decay=0.5, normalize=True, restart_threshold=0.5,
                         restart_every=2).train()
    z = 3.0 * torch.randn(2, 4, 3, 3)
    for _ in range(4):
        out = vq(z)
    assert torch.allclose(vq.codebook.norm(dim=1), torch.ones(8), atol=1e-5)
    # Nearest code of the normalised input; the output is that unit code.
    flat = torch.nn.functional.normalize(z.movedim(1, -1).reshape(-1, 4), dim=1)
    ref = ((flat[:, None] - vq.codebook[None]) ** 2).sum(-1).argmin(1)
    vq.eval()
    out = vq(z)
    assert torch.equal(out['indices'].reshape(-1), ref)
    assert torch.allclose(out['quantized'].norm(dim=1), torch.ones(2, 3, 3), atol=1e-5)


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
    out = warp_labels(lab, torch.eye(4).expand(2, 4, 4), OccGrid((-3, -3, -1, 3, 3, 2), 1.0))
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


def test_residual_world_configs_build():
    from occ.engine import load_config
    from occ.registry import MODELS
    root = os.path.join(os.path.dirname(__file__), '..', 'configs')
    built = {}
    for name in ('world_residual_tokenizer_cpu', 'world_residual_forecaster_cpu', 'world_residual_camera_tokenizer_cpu',
                 'world_residual_camera_cpu', 'world_copy_last_camera', 'world_ego_warp_camera'):
        cfg = load_config(os.path.join(root, name + '.py'))
        assert cfg.train_dataloader.dataset.info_file == 'data/demo/occ_infos_train.pkl'
        assert cfg.test_dataloader.dataset.info_file == 'data/demo/occ_infos_val.pkl'
        built[name] = (cfg, MODELS.build(cfg.model))
    tok = built['world_residual_tokenizer_cpu'][1]
    assert isinstance(tok.tokenizer, ConditionalOccTokenizer) and tok.conditional and tok.stage == 'tokenizer'
    fc = built['world_residual_forecaster_cpu'][1]
    assert fc.stage == 'forecaster' and fc.context_source == 'gt' and fc.forecaster.anchor_adapter is not None
    cam_cfg, cam = built['world_residual_camera_cpu']
    assert cam.context_source == 'camera' and cam.forecaster.bev_adapter.in_channels == 64
    assert cam_cfg.test_dataloader.dataset.camera_cache == cam_cfg.train_dataloader.dataset.camera_cache
    assert built['world_residual_camera_tokenizer_cpu'][1].camera_anchor_prob > 0
    base = built['world_ego_warp_camera'][1]
    assert base.ego_warp and base.source_key == 'context_camera_semantics'


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


# ------------------------------------------------------------------ residual (conditional) world model
from occ.models.world import (ConditionalOccTokenizer, anchor_bev, anchor_prior, anchor_sources,  # noqa: E402
                              warp_sequence)
from occ.models.world.camera_cache import cache_camera_outputs, load_camera_frame  # noqa: E402



def _ctok(**kw):
    torch.manual_seed(0)
    return ConditionalOccTokenizer(grid_shape=GRID, embed_dim=4, channels=8, num_down=2, code_dim=8,
                                   num_codes=16, **kw)


def _res_world(stage='forecaster', camera=False, **kw):
    torch.manual_seed(0)
    fc = dict(type='TokenForecaster', num_codes=16, token_shape=(4, 4), dim=16, depth=1, num_heads=2,
              max_frames=8, anchor_channels=19 * GRID[2], anchor_stride=1)
    if camera:
        fc.update(bev_channels=5, bev_stride=4)
    return OccWorldModel(
        tokenizer=dict(type='ConditionalOccTokenizer', grid_shape=GRID, embed_dim=4, channels=8, code_dim=8,
                       num_codes=16),
        forecaster=fc, stage=stage, num_future=3, pc_range=(-8.0, -8.0, -1.0, 8.0, 8.0, 3.0), voxel_size=1.0,
        context_source='camera' if camera else 'gt', **kw)


def _cam_batch(seed=0):
    b = _batch(seed=seed)
    g = torch.Generator().manual_seed(seed + 10)
    b['context_bev'] = torch.randn(2, 3, 5, 16, 16, generator=g)
    b['context_camera_semantics'] = torch.randint(0, NUM_CLASSES, (2, 3) + GRID, generator=g).to(torch.uint8)
    return b


def test_conditional_tokenizer_shapes_usage_and_zero_residual_copies_the_anchor():
    tok = _ctok().eval()
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, NUM_CLASSES, (2,) + GRID, generator=g).to(torch.uint8)
    anchor = torch.randint(0, NUM_CLASSES, (2,) + GRID, generator=g).to(torch.uint8)
    anchor[:, -3:] = IGNORE_INDEX                           # cells that entered the grid: unknown
    out = tok(labels, anchor)
    assert out['indices'].shape == (2, 4, 4) and out['logits'].shape == (2, NUM_CLASSES) + GRID
    assert 0 < float(out['code_usage']) <= 1 and float(out['perplexity']) >= 1
    assert torch.allclose(tok.decode_indices(out['indices'], anchor), out['logits'], atol=1e-5)
    onehot = torch.nn.functional.one_hot(out['indices'], 16).permute(0, 3, 1, 2).float()
    assert torch.allclose(tok.decode_probs(onehot, anchor), out['logits'], atol=1e-5)
    # The residual layer starts at zero: the decoded frame is the anchor, unknown cells free
    # (exactly the ego-warp baseline), whatever the tokens say.
    expect = torch.where(anchor == IGNORE_INDEX, torch.full_like(anchor, FREE), anchor)
    assert torch.equal(out['logits'].argmax(1).to(torch.uint8), expect)
    assert torch.equal(anchor_prior(anchor).argmax(1).to(torch.uint8), expect)
    # ... and a non-zero residual changes it (the test can fail).
    torch.nn.init.normal_(tok.residual.weight, std=5.0)
    torch.nn.init.normal_(tok.change[-1].weight, std=5.0)
    assert not torch.equal(tok.decode_indices(out['indices'], anchor).argmax(1).to(torch.uint8), expect)
    with pytest.raises(ValueError, match='anchor'):
        tok.encode(labels)


def test_conditional_tokenizer_token_noise_only_in_training():
    tok = _ctok(token_noise=0.5)
    torch.nn.init.normal_(tok.change[-1].weight, std=1.0)
    labels = torch.randint(0, NUM_CLASSES, (1,) + GRID, generator=torch.Generator().manual_seed(1)).to(torch.uint8)
    q = tok.eval().encode(labels, labels)['quantized']
    assert torch.equal(tok.decode(q, labels), tok.decode(q, labels))
    tok.train()
    torch.manual_seed(0)
    assert not torch.equal(tok.decode(q, labels), tok.eval().decode(q, labels))


def test_anchor_bev_against_one_hot_pooling():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, NUM_CLASSES, (2,) + GRID, generator=g).to(torch.uint8)
    a[0, :2] = IGNORE_INDEX
    f = anchor_bev(a, 4)
    lab = torch.where(a == IGNORE_INDEX, torch.full_like(a, NUM_CLASSES), a).long()
    ref = torch.nn.functional.one_hot(lab, NUM_CLASSES + 1).permute(0, 4, 3, 1, 2).reshape(2, -1, 16, 16).float()
    assert f.shape == (2, 19 * GRID[2], 4, 4)
    assert torch.allclose(f, torch.nn.functional.avg_pool2d(ref, 4))


def test_anchor_sources_and_warp_sequence():
    assert anchor_sources(8, 3) == [0, 0, 1, 2, 2, 2, 2, 2]    # future frames all on the current frame (2)
    lab = torch.randint(0, NUM_CLASSES, (1, 3) + GRID, generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    poses = torch.stack([_pose(0, 0, 0), _pose(1, 0, 0), _pose(3, 0, 0), _pose(4, 0, 0)])[None]
    rng = (-8.0, -8.0, -1.0, 8.0, 8.0, 3.0)
    out = warp_sequence(lab, poses, anchor_sources(4, 3), rng, 1.0)
    assert out.shape == (1, 4) + GRID
    assert torch.equal(out[:, 0], lab[:, 0])
    # Frame 3 is anchored on frame 2 moved 1 m forward: one cell closer, the front row unknown.
    assert torch.equal(out[0, 3, :-1], lab[0, 2, 1:]) and (out[0, 3, -1] == IGNORE_INDEX).all()
    assert torch.equal(out[0, 2, :-2], lab[0, 1, 2:])


def test_residual_rollout_with_zero_residual_is_the_ego_warp_baseline():
    m = _res_world().eval()
    b = _batch()
    pred = np.stack([p['semantics_future'] for p in m(**m.data_preprocessor(b, False), mode='predict')])
    base = CopyLastForecaster(num_future=3, ego_warp=True, pc_range=m.pc_range, voxel_size=1.0)
    ref = base.forecast(b['voxel_semantics'], b['ego2global'], b['future_ego2global']).numpy()
    np.testing.assert_array_equal(pred, ref)


def test_residual_model_trains_and_predicts_without_reading_the_future():
    tokm = _res_world('tokenizer', pairs_per_sample=2)
    losses = tokm(**tokm.data_preprocessor(_batch(), True), mode='loss')
    assert {'loss_rec_weightedce', 'loss_vq', 'perplexity', 'code_usage'} <= set(losses)
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    assert tokm.tokenizer.residual.weight.grad.abs().sum() > 0

    m = _res_world()
    torch.nn.init.normal_(m.tokenizer.residual.weight, std=1.0)     # a decoder that does something
    torch.nn.init.normal_(m.tokenizer.change[-1].weight, std=1.0)
    losses = m(**m.data_preprocessor(_batch(), True), mode='loss')
    assert {'loss_token', 'loss_occ_weightedce', 'token_acc'} <= set(losses)
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    assert m.forecaster.anchor_adapter.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.tokenizer.parameters())
    m.eval()
    b = _batch()
    p1 = m(**m.data_preprocessor(b, False), mode='predict')
    b['future_semantics'] = torch.randint(0, NUM_CLASSES, b['future_semantics'].shape,
                                          generator=torch.Generator().manual_seed(9)).to(torch.uint8)
    p2 = m(**m.data_preprocessor(b, False), mode='predict')
    for a, c in zip(p1, p2):
        np.testing.assert_array_equal(a['semantics_future'], c['semantics_future'])
    # The current pose does matter (the anchor is warped by it): the test can fail.
    b['future_ego2global'] = b['future_ego2global'].clone()
    b['future_ego2global'][:, :, 0, 3] += 3.0
    p3 = m(**m.data_preprocessor(b, False), mode='predict')
    assert not np.array_equal(p1[0]['semantics_future'], p3[0]['semantics_future'])


def test_residual_teacher_forcing_is_causal_through_the_anchors():
    m = _res_world().eval()
    torch.nn.init.normal_(m.tokenizer.residual.weight, std=1.0)
    torch.nn.init.normal_(m.tokenizer.change[-1].weight, std=1.0)
    b = _batch()
    base = m.teacher_forced(m.data_preprocessor(b, False)['inputs'])['logits']   # S = 6 frames, 5 outputs
    s = 4                                          # perturb frame 4 (the 2nd future frame)
    b2 = _batch()
    b2['future_semantics'][:, s - 3] = (b2['future_semantics'][:, s - 3] + 5) % NUM_CLASSES
    out = m.teacher_forced(m.data_preprocessor(b2, False)['inputs'])['logits']
    assert torch.equal(out[:, :s], base[:, :s])              # predictions of frames <= 4 saw frames < 4
    assert not torch.allclose(out[:, s:], base[:, s:])
    # A context frame moves every later anchor: predictions before it are unchanged.
    b3 = _batch()
    b3['history']['voxel_semantics'][:, 1] = (b3['history']['voxel_semantics'][:, 1] + 5) % NUM_CLASSES
    out = m.teacher_forced(m.data_preprocessor(b3, False)['inputs'])['logits']
    assert torch.equal(out[:, :1], base[:, :1]) and not torch.allclose(out[:, 1:], base[:, 1:])


def test_residual_sampling_is_seeded():
    outs = []
    for seed in (4, 4, 5):
        m = _res_world(temperature=1.0, sample_seed=seed).eval()
        torch.nn.init.normal_(m.tokenizer.residual.weight, std=1.0)
        torch.nn.init.normal_(m.tokenizer.change[-1].weight, std=1.0)
        outs.append(m(**m.data_preprocessor(_batch(), False), mode='predict')[0]['semantics_future'])
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])


def test_camera_mode_never_reads_ground_truth_context_or_current_labels():
    m = _res_world(camera=True)
    torch.nn.init.normal_(m.tokenizer.residual.weight, std=1.0)
    torch.nn.init.normal_(m.tokenizer.change[-1].weight, std=1.0)
    losses = m(**m.data_preprocessor(_cam_batch(), True), mode='loss')
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    assert m.forecaster.bev_adapter.weight.grad.abs().sum() > 0
    m.eval()
    b = _cam_batch()
    p1 = m(**m.data_preprocessor(b, False), mode='predict')
    np.testing.assert_array_equal(p1[0]['semantics'], b['context_camera_semantics'][0, -1].numpy())
    b['voxel_semantics'] = torch.randint(0, NUM_CLASSES, b['voxel_semantics'].shape).to(torch.uint8)
    b['history']['voxel_semantics'] = torch.randint(0, NUM_CLASSES, b['history']['voxel_semantics'].shape
                                                    ).to(torch.uint8)
    b['future_semantics'].zero_()
    p2 = m(**m.data_preprocessor(b, False), mode='predict')
    for a, c in zip(p1, p2):
        np.testing.assert_array_equal(a['semantics_future'], c['semantics_future'])
        np.testing.assert_array_equal(a['semantics'], c['semantics'])
    # ... while the camera's own prediction is read (the test can fail).
    b['context_camera_semantics'] = (b['context_camera_semantics'] + 3) % NUM_CLASSES
    p3 = m(**m.data_preprocessor(b, False), mode='predict')
    assert not np.array_equal(p1[0]['semantics_future'], p3[0]['semantics_future'])
    del b['context_camera_semantics']
    with pytest.raises(KeyError, match='context_camera_semantics'):
        m(**m.data_preprocessor(b, False), mode='predict')


def test_camera_baselines_copy_the_camera_prediction():
    b = _cam_batch()
    m = CopyLastForecaster(num_future=3, source_key='context_camera_semantics')
    out = m(**m.data_preprocessor(b, False), mode='predict')
    np.testing.assert_array_equal(out[1]['semantics_future'][2], b['context_camera_semantics'][1, -1].numpy())
    np.testing.assert_array_equal(out[1]['semantics'], b['context_camera_semantics'][1, -1].numpy())


class _FakeCamera(torch.nn.Module):
    """Stands in for OccNet: BEV = the frame index, logits favour class (frame index % 18)."""

    def __init__(self):
        super().__init__()
        from occ.models.occ_net import OccDataPreprocessor
        self.data_preprocessor = OccDataPreprocessor()
        self.calls = []

    def forward_features(self, batch):
        f = int(batch['sample_token'][0][1:])
        self.calls.append(f)
        logits = torch.zeros(1, NUM_CLASSES, 100, 100, 8)
        logits[:, f % NUM_CLASSES] = 1.0
        return {'bev': torch.full((1, 3, 100, 100), float(f)), 'logits': logits}


def test_camera_cache_round_trip_into_sequences(tmp_path):
    info = _fake_world(tmp_path)
    ds = OccSequenceDataset(info, num_history=2, num_future=2)
    cam = _FakeCamera()
    assert cache_camera_outputs(cam, ds, str(tmp_path / 'cache'), log=None) == 5
    assert cam.calls == [0, 1, 2, 3, 4]
    fr = load_camera_frame(str(tmp_path / 'cache'), 't3')
    assert fr['bev'].shape == (3, 100, 100) and fr['bev'].dtype == np.float32 and (fr['semantics'] == 3).all()
    seq = OccSequenceDataset(info, num_history=2, num_future=2, camera_cache=str(tmp_path / 'cache'))
    s = seq[3]
    assert s['context_bev'].shape == (3, 3, 100, 100)
    assert s['context_bev'][:, 0, 0, 0].tolist() == [1.0, 2.0, 3.0]              # history then current
    assert s['context_camera_semantics'].shape == (3, 100, 100, 8)
    assert [int(s['context_camera_semantics'][i, 0, 0, 0]) for i in range(3)] == [1, 2, 3]
    with pytest.raises(FileNotFoundError, match='no cached camera output'):
        load_camera_frame(str(tmp_path / 'cache'), 'nope')


def test_soft_decoding_and_band_from_previous_read_no_future():
    m = _res_world(decode_soft=True, band_from_previous=True, decode_prior_boost=16.0).eval()
    b = _batch()
    zero = np.stack([p['semantics_future'] for p in m(**m.data_preprocessor(b, False), mode='predict')])
    ref = CopyLastForecaster(num_future=3, ego_warp=True, pc_range=m.pc_range, voxel_size=1.0).forecast(
        b['voxel_semantics'], b['ego2global'], b['future_ego2global']).numpy()
    np.testing.assert_array_equal(zero[:, 0], ref[:, 0])        # zero residual, first step: ego-warp
    torch.nn.init.normal_(m.tokenizer.residual.weight, std=1.0)
    torch.nn.init.normal_(m.tokenizer.change[-1].weight, std=1.0)
    p1 = m(**m.data_preprocessor(b, False), mode='predict')
    b['future_semantics'] = (b['future_semantics'] + 1) % NUM_CLASSES
    p2 = m(**m.data_preprocessor(b, False), mode='predict')
    for a, c in zip(p1, p2):
        np.testing.assert_array_equal(a['semantics_future'], c['semantics_future'])
    m.band_from_previous = False                              # the option does something (can fail)
    p3 = m(**m.data_preprocessor(b, False), mode='predict')
    assert any(not np.array_equal(a['semantics_future'], c['semantics_future']) for a, c in zip(p1, p3))
