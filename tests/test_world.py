"""World model: causality, tokenizer/quantizer accounting, restarts, sampling, ego-motion warp, dataset,
the two stages (OccTokenizerModel, OccForecasterModel) and their parts (anchors, context, frames)."""
import math
import os
import pickle

import numpy as np
import pytest
import torch

from occ.constants import FREE, IGNORE_INDEX, NUM_CLASSES
from occ.data import OccSequenceDataset, occ_collate
from occ.geometry import OccGrid, warp_labels
from occ.models.world import (CopyLastForecaster, EgoWarpForecaster, OccForecasterModel, OccTokenizer,
                              OccTokenizerModel, TokenForecaster, VectorQuantizer, causal_mask, step_poses)

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
    with pytest.raises(ValueError, match='takes no anchor'):
        tok(labels, labels)


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
    model = EgoWarpForecaster(num_future=1, pc_range=pc_range, voxel_size=v)
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


_TOK = dict(type='OccTokenizer', grid_shape=GRID, embed_dim=4, channels=8, code_dim=8, num_codes=16)
_FC = dict(type='TokenForecaster', num_codes=16, token_shape=(4, 4), dim=16, depth=1, num_heads=2, max_frames=8)


def _world(stage, **kw):
    torch.manual_seed(0)
    if stage == 'tokenizer':
        return OccTokenizerModel(tokenizer=_TOK, **kw)
    return OccForecasterModel(tokenizer=_TOK, forecaster=_FC, num_future=3, **kw)


def test_world_model_stages_train_the_right_parts(tmp_path):
    tokm = _world('tokenizer')
    losses = tokm(**tokm.data_preprocessor(_batch(), True), mode='loss')
    assert {'loss_rec_weightedce', 'loss_vq', 'perplexity', 'code_usage'} <= set(losses)
    rec = tokm.eval()(**tokm.data_preprocessor(_batch(), False), mode='predict')
    assert rec[0]['semantics'].shape == GRID and rec[0]['tokens'].shape == (4, 4)
    ckpt = tmp_path / 'tok.pth'
    torch.save({'state_dict': tokm.state_dict()}, ckpt)

    # The tokenizer checkpoint loads when the Runner initialises the weights, not at build time.
    m = _world('forecaster', tokenizer_ckpt=str(ckpt)).train()
    assert not torch.equal(m.tokenizer.quantizer.codebook, tokm.tokenizer.quantizer.codebook)
    m.init_weights()
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
    np.testing.assert_array_equal(preds[0]['semantics'], _batch()['voxel_semantics'][0].numpy())


def test_forecaster_stage_errors_name_the_tokenizer_checkpoint(tmp_path):
    m = _world('forecaster', tokenizer_ckpt=str(tmp_path / 'missing'))
    with pytest.raises(FileNotFoundError, match='missing'):
        m.init_weights()
    torch.save({'state_dict': {'forecaster.head.weight': torch.zeros(1)}}, tmp_path / 'fc.pth')
    m = _world('forecaster', tokenizer_ckpt=str(tmp_path / 'fc.pth'))
    with pytest.raises(RuntimeError, match='no tokenizer'):
        m.init_weights()


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


def test_evaluate_models_scores_copy_baselines():
    from occ.evaluation import evaluate_models, forecast_table
    rng = (-8.0, -8.0, -1.0, 8.0, 8.0, 3.0)
    b = _batch()
    static = _batch()
    # A world that does not change: copy-last is perfect at every horizon.
    static['future_semantics'] = static['voxel_semantics'][:, None].repeat(1, 3, 1, 1, 1)
    res = evaluate_models({'copy': CopyLastForecaster(num_future=3, pc_range=rng, voxel_size=1.0)}, [static], rng)
    s = res['copy']['summary']
    assert s['num_frames'] == 2 and s['miou'] == 100.0          # the current frame is the input
    assert all(s['forecast'][h]['miou'] == 100.0 and s['forecast'][h]['iou'] == 100.0
               for h in ('0.5s', '1s', '1.5s'))
    assert s['forecast']['avg']['horizons'] == ['1s'] and 'forecast_split' in s
    assert res['copy']['frames'].tokens == ['a', 'b'] and res['copy']['frames'].table['future'].shape[0] == 2
    # Against random futures it is imperfect, and the future frame past the scene end is skipped.
    res = evaluate_models({'copy': CopyLastForecaster(num_future=3, pc_range=rng, voxel_size=1.0)}, [b], rng)
    assert res['copy']['summary']['forecast']['1s']['miou'] < 20
    table = forecast_table(res)
    assert table.count('\n') == 2 and '| copy |' in table
    assert '| copy |' in forecast_table(res, ('static_miou', 'dynamic_miou', 'moving_miou'), split=True)


def test_world_configs_build():
    from mmengine.config import Config

    from occ.registry import MODELS
    root = os.path.join(os.path.dirname(__file__), '..', 'configs')
    built = {}
    for name in ('world_tokenizer_cpu', 'world_forecaster_cpu', 'world_copy_last', 'world_ego_warp',
                 'world_residual_tokenizer_cpu', 'world_residual_forecaster_cpu', 'world_residual_camera_tokenizer_cpu',
                 'world_residual_camera_cpu', 'world_copy_last_camera', 'world_ego_warp_camera'):
        cfg = Config.fromfile(os.path.join(root, name + '.py'))         # stock mmengine
        assert cfg.test_dataloader.dataset.type == 'OccSequenceDataset'
        assert cfg.test_dataloader.dataset.info_file == 'data/demo/occ_infos_val.pkl'
        built[name] = (cfg, MODELS.build(cfg.model))
    kinds = {'world_tokenizer_cpu': OccTokenizerModel, 'world_forecaster_cpu': OccForecasterModel,
             'world_copy_last': CopyLastForecaster, 'world_ego_warp': EgoWarpForecaster}
    for name, kind in kinds.items():
        assert type(built[name][1]) is kind
    tok = built['world_residual_tokenizer_cpu'][1]
    assert isinstance(tok.tokenizer, ConditionalOccTokenizer) and isinstance(tok.frames, AnchoredPairs)
    fc_cfg, fc = built['world_residual_forecaster_cpu']
    assert isinstance(fc.context, GroundTruthContext) and fc.forecaster.anchor_adapter is not None
    assert fc.anchors.prior_boost == 16 and fc.anchors.band_from_previous
    assert fc_cfg.model.tokenizer == built['world_residual_tokenizer_cpu'][0].model.tokenizer
    cam_cfg, cam = built['world_residual_camera_cpu']
    assert isinstance(cam.context, CameraContext) and cam.forecaster.bev_adapter.in_channels == 64
    assert cam_cfg.test_dataloader.dataset.camera_cache == cam_cfg.train_dataloader.dataset.camera_cache
    assert built['world_residual_camera_tokenizer_cpu'][1].frames.camera_anchor_prob > 0
    base = built['world_ego_warp_camera'][1]
    assert type(base) is EgoWarpForecaster and base.source_key == 'context_camera_semantics'


def test_world_model_camera_driven_mode():
    torch.manual_seed(0)
    m = OccForecasterModel(tokenizer=_TOK, forecaster=dict(_FC, bev_channels=5, bev_stride=4),
                           context=dict(type='CameraContext'), num_future=3)
    b = _batch()
    b['context_bev'] = torch.randn(2, 3, 5, 16, 16)
    b['context_camera_semantics'] = torch.randint(0, NUM_CLASSES, (2, 3) + GRID).to(torch.uint8)
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
from occ.data.camera_cache import cache_camera_outputs, load_camera_frame  # noqa: E402
from occ.models.world import (AnchoredPairs, CameraContext, ConditionalOccTokenizer, EgoWarpAnchors,  # noqa: E402
                              GroundTruthContext, TokenizerOracle, anchor_bev, anchor_prior, anchor_sources)



def _ctok(**kw):
    torch.manual_seed(0)
    return ConditionalOccTokenizer(grid_shape=GRID, embed_dim=4, channels=8, num_down=2, code_dim=8,
                                   num_codes=16, **kw)


RES_RANGE = (-8.0, -8.0, -1.0, 8.0, 8.0, 3.0)
_CTOK = dict(type='ConditionalOccTokenizer', grid_shape=GRID, embed_dim=4, channels=8, code_dim=8, num_codes=16)


def _anchors(**kw):
    return dict(type='EgoWarpAnchors', pc_range=RES_RANGE, voxel_size=1.0, **kw)


def _res_world(stage='forecaster', camera=False, anchors=None, **kw):
    torch.manual_seed(0)
    if stage == 'tokenizer':
        return OccTokenizerModel(tokenizer=_CTOK, frames=dict(type='AnchoredPairs', anchors=_anchors(), max_gap=3,
                                                              **kw))
    fc = dict(_FC, anchor_channels=19 * GRID[2], anchor_stride=1)
    if camera:
        fc.update(bev_channels=5, bev_stride=4)
    return OccForecasterModel(tokenizer=_CTOK, forecaster=fc, anchors=_anchors(**(anchors or {})),
                              context=dict(type='CameraContext' if camera else 'GroundTruthContext'),
                              num_future=3, **kw)


def _perturb_decoder(m):
    """A decoder that does something (the residual layers start at zero)."""
    torch.nn.init.normal_(m.tokenizer.residual.weight, std=1.0)
    torch.nn.init.normal_(m.tokenizer.change[-1].weight, std=1.0)


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


def test_anchor_sources_and_ego_warp_anchors():
    assert anchor_sources(8, 3) == [0, 0, 1, 2, 2, 2, 2, 2]    # future frames all on the current frame (2)
    lab = torch.randint(0, NUM_CLASSES, (1, 3) + GRID, generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    poses = torch.stack([_pose(0, 0, 0), _pose(1, 0, 0), _pose(3, 0, 0), _pose(4, 0, 0)])[None]
    anchors = EgoWarpAnchors(RES_RANGE, 1.0)
    out = anchors.sequence(lab, poses)
    assert out.shape == (1, 4) + GRID
    assert torch.equal(out[:, 0], lab[:, 0])
    # Frame 3 is anchored on frame 2 moved 1 m forward: one cell closer, the front row unknown.
    assert torch.equal(out[0, 3, :-1], lab[0, 2, 1:]) and (out[0, 3, -1] == IGNORE_INDEX).all()
    assert torch.equal(out[0, 2, :-2], lab[0, 1, 2:])
    assert torch.equal(anchors.current(lab, poses), out[:, 2])
    # calibration: + boost on the one-hot of known anchor cells only
    logits = torch.zeros((1, NUM_CLASSES) + GRID)
    boosted = EgoWarpAnchors(RES_RANGE, 1.0, prior_boost=2.0).calibrate(logits, out[:, 3])
    known = out[0, 3] != IGNORE_INDEX
    assert torch.equal(boosted[0].argmax(0)[known], out[0, 3][known].long())
    assert (boosted[0][:, ~known] == 0).all() and float(boosted.sum()) == 2.0 * int(known.sum())
    # band: only unknown cells are filled, from the previous forecast moved one step
    prev = torch.full((1,) + GRID, 4, dtype=torch.uint8)
    step = torch.eye(4)[None]
    assert torch.equal(anchors.band(out[:, 3], prev, step), out[:, 3])             # option off
    banded = EgoWarpAnchors(RES_RANGE, 1.0, band_from_previous=True).band(out[:, 3], prev, step)
    assert (banded[0, -1] == 4).all() and torch.equal(banded[0, :-1], out[0, 3, :-1])


def test_anchored_pairs_draw_valid_pairs_and_drop_boxes():
    torch.manual_seed(0)
    pairs = AnchoredPairs(_anchors(dropout=1.0), pairs_per_sample=3, max_gap=3)
    labels, anchor = pairs.train_pairs(_batch())
    assert labels.shape == (6,) + GRID and anchor.shape == (6,) + GRID
    assert ((anchor == IGNORE_INDEX).flatten(1).sum(1) > 0).all()            # a blanked box in every anchor
    cur, a = pairs.eval_pair(_batch())
    assert torch.equal(cur, _batch()['voxel_semantics'])
    b = _batch()
    ref = EgoWarpAnchors(RES_RANGE, 1.0).warp(b['history']['voxel_semantics'][:, -1], b['ego2global'],
                                             b['history']['ego2global'][:, -1])
    assert torch.equal(a, ref)


def test_residual_rollout_with_zero_residual_is_the_ego_warp_baseline():
    m = _res_world().eval()
    b = _batch()
    pred = np.stack([p['semantics_future'] for p in m(**m.data_preprocessor(b, False), mode='predict')])
    base = EgoWarpForecaster(num_future=3, pc_range=RES_RANGE, voxel_size=1.0)
    ref = base.forecast(b['voxel_semantics'], b['ego2global'], b['future_ego2global']).numpy()
    np.testing.assert_array_equal(pred, ref)


def test_residual_model_trains_and_predicts_without_reading_the_future():
    tokm = _res_world('tokenizer', pairs_per_sample=2)
    losses = tokm(**tokm.data_preprocessor(_batch(), True), mode='loss')
    assert tokm.eval()(**tokm.data_preprocessor(_batch(), False), mode='predict')[0]['semantics'].shape == GRID
    tokm.train()
    assert {'loss_rec_weightedce', 'loss_vq', 'perplexity', 'code_usage'} <= set(losses)
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    assert tokm.tokenizer.residual.weight.grad.abs().sum() > 0

    m = _res_world()
    _perturb_decoder(m)
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
    _perturb_decoder(m)
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
        _perturb_decoder(m)
        outs.append(m(**m.data_preprocessor(_batch(), False), mode='predict')[0]['semantics_future'])
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])


def test_camera_mode_never_reads_ground_truth_context_or_current_labels():
    m = _res_world(camera=True)
    _perturb_decoder(m)
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


def test_band_from_previous_reads_no_future_and_oracle_reads_it():
    m = _res_world(anchors=dict(band_from_previous=True, prior_boost=16.0)).eval()
    b = _batch()
    zero = np.stack([p['semantics_future'] for p in m(**m.data_preprocessor(b, False), mode='predict')])
    ref = EgoWarpForecaster(num_future=3, pc_range=RES_RANGE, voxel_size=1.0).forecast(
        b['voxel_semantics'], b['ego2global'], b['future_ego2global']).numpy()
    np.testing.assert_array_equal(zero[:, 0], ref[:, 0])        # zero residual, first step: ego-warp
    _perturb_decoder(m)
    p1 = m(**m.data_preprocessor(b, False), mode='predict')
    b['future_semantics'] = (b['future_semantics'] + 1) % NUM_CLASSES
    p2 = m(**m.data_preprocessor(b, False), mode='predict')
    for a, c in zip(p1, p2):
        np.testing.assert_array_equal(a['semantics_future'], c['semantics_future'])
    m.anchors.band_from_previous = False                      # the option does something (can fail)
    p3 = m(**m.data_preprocessor(b, False), mode='predict')
    assert any(not np.array_equal(a['semantics_future'], c['semantics_future']) for a, c in zip(p1, p3))
    # The oracle decodes the future frames' own tokens: zero residual = ego-warp, and it reads the future.
    torch.manual_seed(0)
    oracle = TokenizerOracle(tokenizer=_CTOK, anchors=_anchors(), num_future=3).eval()
    b = _batch()
    out = np.stack([p['semantics_future'] for p in oracle(**oracle.data_preprocessor(b, False), mode='predict')])
    np.testing.assert_array_equal(out, ref)
    _perturb_decoder(oracle)
    o1 = oracle(**oracle.data_preprocessor(b, False), mode='predict')[0]['semantics_future']
    b['future_semantics'] = (b['future_semantics'] + 1) % NUM_CLASSES
    o2 = oracle(**oracle.data_preprocessor(b, False), mode='predict')[0]['semantics_future']
    assert not np.array_equal(o1, o2)


# ------------------------------------------------------------------ both stages with stock mmengine
@pytest.fixture(scope='module')
def seq_root(tmp_path_factory):
    """2 scenes x 12 keyframes (one each for train and val): 4 past + current + 6 future frames fit."""
    from fixtures_data import load_tool, write_micro_nuscenes
    root = write_micro_nuscenes(str(tmp_path_factory.mktemp('world_seq')), scenes=2, frames=12)
    assert load_tool('create_data').main(['--root', root, '--no-progress']) == 0
    return root


def _stock(name, root, work_dir, iters=2):
    """``Config.fromfile`` as it is, the datasets moved to ``root``, a 2-iteration schedule."""
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(os.path.dirname(__file__), '..', 'configs', name))
    for key in ('train_dataloader', 'test_dataloader'):
        ds = cfg[key].dataset
        ds.data_root, ds.info_file = root, os.path.join(root, os.path.basename(ds.info_file))
        cfg[key].batch_size = 1
    cfg.train_cfg.max_iters = iters
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=iters)]
    cfg.work_dir = str(work_dir)
    return cfg


def test_both_stages_train_and_test_with_stock_mmengine(seq_root, tmp_path):
    from mmengine.runner import Runner
    r1 = Runner.from_cfg(_stock('world_residual_tokenizer_cpu.py', seq_root, tmp_path / 'tok'))
    r1.train()
    rec = r1.test()
    assert 0 <= rec['miou'] <= 100 and 'forecast_miou_1s' not in rec         # stage 1: reconstruction
    cfg = _stock('world_residual_forecaster_cpu.py', seq_root, tmp_path / 'fc')
    assert cfg.model.tokenizer_ckpt == 'work_dirs/world_residual_tokenizer_cpu'
    cfg.model.tokenizer_ckpt = str(tmp_path / 'tok')                          # stage 1's work dir
    r2 = Runner.from_cfg(cfg)
    r2.train()
    tok1 = r1.model.tokenizer.state_dict()
    assert all(torch.equal(v, tok1[k]) for k, v in r2.model.tokenizer.state_dict().items())   # frozen, loaded
    out = r2.test()
    for key in ('forecast_miou_1s', 'forecast_iou_3s', 'forecast_static_miou_avg', 'forecast_dynamic_miou_2s',
                'forecast_moving_miou_avg'):
        assert key in out
    assert math.isfinite(out['forecast_miou_avg'])


def test_world_report_pairs_models_on_the_same_frames(seq_root, tmp_path):
    """tools/eval_world.py's library: checkpoints from work dirs, baselines, oracle, paired intervals."""
    from occ.analysis.world import report
    from occ.engine import load_config
    from occ.registry import MODELS
    cfg = load_config(os.path.join(os.path.dirname(__file__), '..', 'configs', 'world_residual_forecaster_cpu.py'))
    model = MODELS.build(dict(cfg.model, tokenizer_ckpt=None))
    for k in range(2):                                   # two "seeds": the same untrained weights
        d = tmp_path / ('world_residual_forecaster_cpu' + ('' if k == 0 else f'__seed{k}'))
        d.mkdir()
        torch.save({'state_dict': model.state_dict(), 'meta': {}}, d / 'iter_1.pth')
        (d / 'last_checkpoint').write_text('iter_1.pth')
    root = os.path.join(os.path.dirname(__file__), '..', 'configs')
    text = report([os.path.join(root, c) for c in ('world_residual_forecaster_cpu.py', 'world_ego_warp.py',
                                                   'world_copy_last.py')],
                  str(tmp_path), seeds=2, baseline='world_ego_warp', data_root=seq_root, oracle=True, n_boot=20,
                  log=None, ratio_to='world_copy_last')
    assert '| world_residual_forecaster_cpu (2) |' in text and '| world_copy_last (1) |' in text
    assert 'world_residual_forecaster_cpu (tokenizer oracle)' in text
    assert 'forecast_dynamic_miou' in text and 'Paired differences to world_ego_warp' in text
    import json
    res = json.loads((tmp_path / 'world_eval.json').read_text())
    same = res['paired']['world_residual_forecaster_cpu (tokenizer oracle)']['forecast_miou_avg']
    assert same['replicates'] == 20 and same['lo'] <= same['diff'] <= same['hi']
    assert len(res['results']['world_residual_forecaster_cpu']) == 2
    # the ratio to copy-last: per seed the two models' own averages divided, both seeds the same weights
    r = res['ratios']['world_residual_forecaster_cpu']
    by_seed = [a['forecast_miou_avg'] / b['forecast_miou_avg'] for a, b in
               zip(res['results']['world_residual_forecaster_cpu'], res['results']['world_copy_last'] * 2)]
    assert r['ratio'] == pytest.approx(np.mean(by_seed)) and r['lo'] <= r['hi'] and r['seeds'] == 2
    assert 'over world_copy_last' in text and 'forecast_moving_iou' in text
