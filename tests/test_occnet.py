"""OccNet: loss / predict / tensor modes on random contract batches, gradients, hooks, mmengine train_step."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

import occ.models  # noqa: F401
from occ.registry import MODELS
from occ.utils.benchmark import random_batch

GRID = (25, 25, 2)      # Occ3D range at 3.2 m voxels: tiny and fast


def tiny_cfg(**kw):
    cfg = dict(
        type='OccNet',
        backbone=dict(type='ResNetBackbone', depth=18, out_indices=(2, 3)),
        neck=dict(type='FPNNeck', in_channels=[128, 256], out_channels=16, out_ids=(1,)),
        view_transform=dict(type='LiftSplat', in_channels=16, out_channels=8, depth_bins=(1.0, 41.0, 4.0),
                            downsample=16, voxel_size=3.2),
        head=dict(type='DenseOccHead', in_channels=8, mid_channels=8, num_z=2,
                  encoder=dict(num_blocks=1, num_down_blocks=1, fuse_kernel=1),
                  losses=[dict(type='WeightedCELoss')]),
        depth_loss_weight=0.5)
    cfg.update(kw)
    return cfg


def build(**kw):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return MODELS.build(tiny_cfg(**kw))


def batch(**kw):
    kw.setdefault('with_depth', True)
    return random_batch(1, 6, (32, 64), grid_shape=GRID, **kw)


def test_loss_mode_and_all_grads_finite():
    model = build()
    data = model.data_preprocessor(batch(), True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_weighted_ce', 'loss_depth'}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    sum(losses.values()).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for name, p in trainable:
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    # every part learns: some gradient is non-zero in backbone, depth net and head
    for prefix in ('backbone.', 'view_transform.depth_net.', 'head.predictor.'):
        assert any(p.grad.abs().sum() > 0 for n, p in trainable if n.startswith(prefix)), prefix


def test_predict_and_tensor_modes():
    model = build().eval()
    b = batch()
    out = model(**model.data_preprocessor(b), mode='tensor')
    assert out['logits'].shape == (1, 18) + GRID
    assert out['bev'].shape == (1, 8, 25, 25) and out['depth'].shape == (1, 6, 10, 2, 4)
    preds = model(**model.data_preprocessor(b), mode='predict')
    assert len(preds) == 1 and preds[0]['sample_token'] == 'sample0'
    sem = preds[0]['semantics']
    assert isinstance(sem, np.ndarray) and sem.dtype == np.uint8 and sem.shape == GRID
    np.testing.assert_array_equal(sem, out['logits'][0].argmax(0).numpy())
    with pytest.raises(ValueError, match="mode must be"):
        model(b, mode='bogus')


def test_mask_camera_restricts_the_loss():
    model = build(depth_loss_weight=0.0).eval()      # eval: BN statistics fixed, same forward twice
    b = batch()
    l1 = model(b, mode='loss')['loss_weighted_ce']
    b2 = dict(b)
    b2['voxel_semantics'] = torch.where(b['mask_camera'].bool(), b['voxel_semantics'],
                                        (b['voxel_semantics'] + 1) % 18)
    assert torch.allclose(model(b2, mode='loss')['loss_weighted_ce'], l1)
    free = build(depth_loss_weight=0.0, use_mask_camera=False).eval()
    assert not torch.allclose(free(b2, mode='loss')['loss_weighted_ce'], free(b, mode='loss')['loss_weighted_ce'])


def test_depth_loss_needs_depth():
    model = build()
    with pytest.raises(KeyError, match='load_depth'):
        model(batch(with_depth=False), mode='loss')
    assert 'loss_depth' not in build(depth_loss_weight=0.0)(batch(with_depth=False), mode='loss')


@MODELS.register_module(force=True)
class _TestTemporal(nn.Module):
    """Adds the history's mean BEV (computed with the model's bev_fn) and counts calls in the state."""

    def forward(self, bev, batch, bev_fn=None, state=None):
        hist = batch['history']
        flat = {k: v.flatten(0, 1) for k, v in hist.items() if k != 'valid'}
        past = bev_fn(flat)['bev'].view(bev.shape[0], -1, *bev.shape[1:])
        return bev + past.mean(1), (state or 0) + 1


@MODELS.register_module(force=True)
class _TestCollab(nn.Module):
    def forward(self, bev, batch, neighbor_bevs):
        assert neighbor_bevs.shape == (bev.shape[0], 2) + bev.shape[1:]
        assert (neighbor_bevs[:, 1] == 0).all()            # invalid neighbour is not encoded
        assert neighbor_bevs[:, 0].abs().sum() > 0
        return bev + neighbor_bevs.sum(1), torch.full((bev.shape[0],), 123.0)


def test_temporal_and_collab_call_sites():
    model = build(temporal=dict(type='_TestTemporal'), collab=dict(type='_TestCollab')).eval()
    b = batch()
    frame = {k: b[k] for k in ('imgs', 'intrinsics', 'cam2ego', 'img_aug', 'bev_aug', 'ego2global')}
    b['history'] = {k: torch.stack([v, v], 1) for k, v in frame.items()}
    b['history']['valid'] = torch.ones(1, 2, dtype=torch.bool)
    nb = {k: torch.stack([v, v], 1) for k, v in frame.items() if k != 'bev_aug'}
    nb['valid'] = torch.tensor([[True, False]])
    b['neighbors'] = nb
    preds = model(b, mode='predict')
    assert preds[0]['bytes_sent'] == 123.0 and model._temporal_state == 1
    model(b, mode='predict')
    assert model._temporal_state == 2
    model.reset_temporal_state()
    assert model._temporal_state is None
    losses = build(temporal=dict(type='_TestTemporal'), collab=dict(type='_TestCollab'))(b, mode='loss')
    assert float(losses['bytes_sent']) == 123.0 and losses['bytes_sent'].requires_grad is False


@MODELS.register_module(force=True)
class _TestLabelHead(nn.Module):
    uses_labels_in_forward = True

    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(8, 18 * 2, 1)
        self.calls = []

    def forward(self, bev, voxel_semantics=None, mask=None):
        self.calls.append((voxel_semantics is not None, mask is not None))
        x = self.proj(bev)
        return dict(logits=x.view(x.shape[0], 18, 2, *x.shape[-2:]).permute(0, 1, 3, 4, 2))

    def loss(self, out, voxel_semantics, mask):
        return dict(loss_dummy=out['logits'].mean())


def test_labels_reach_heads_that_ask_for_them_only_in_training():
    model = build(head=dict(type='_TestLabelHead'), depth_loss_weight=0.0)
    b = batch(with_depth=False)
    model(b, mode='loss')
    model.eval()
    model(b, mode='predict')
    assert model.head.calls == [(True, True), (False, False)]


def test_mmengine_train_step_decreases_loss():
    from mmengine.optim import OptimWrapper
    model = build(depth_loss_weight=0.0)
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=3e-3))
    b = batch(with_depth=False, seed=1)
    first = None
    for _ in range(6):
        log = model.train_step(b, optim)
        first = first if first is not None else float(log['loss'].detach())
    assert float(log['loss'].detach()) < first
    with pytest.raises(TypeError, match='flat batch dict'):
        model.data_preprocessor([b])


def test_benchmark_tool_on_a_tiny_config(tmp_path, monkeypatch, capsys):
    import importlib.util
    import json
    import os
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(f'model = {tiny_cfg()!r}\nimg_size = (32, 64)\n')
    root = os.path.join(os.path.dirname(__file__), '..')
    spec = importlib.util.spec_from_file_location('bench_tool', os.path.join(root, 'tools', 'benchmark.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / 'r.json'
    monkeypatch.setattr('sys.argv', ['benchmark.py', str(cfg), '--repeat', '1', '--json', str(out)])
    tool.main()
    row = json.loads(out.read_text())[0]
    assert row['img_size'] == [32, 64] and row['grid'] == list(GRID)
    assert row['forward_s_per_frame'] > 0 and row['forward_backward_s_per_frame'] > 0 and row['peak_rss_mb'] > 0
    assert '| ' + str(cfg) in capsys.readouterr().out
