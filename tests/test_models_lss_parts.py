"""Backbone, neck, LiftSplat and dense head: shapes, checkpoints, depth loss vs a loop reference."""
import warnings

import pytest
import torch
import torchvision

import occ.models  # noqa: F401  (registers parts)
from occ.models.backbones import FPNNeck, ResNetBackbone
from occ.models.heads import DenseOccHead
from occ.models.losses import loss_key
from occ.models.view_transforms import LiftSplat
from occ.models.view_transforms.lift_splat import depth_to_bins, downsample_depth
from occ.utils.benchmark import random_batch


@pytest.mark.parametrize('depth,channels', [(18, [64, 128, 256, 512]), (50, [256, 512, 1024, 2048])])
def test_resnet_strides_and_channels(depth, channels):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        net = ResNetBackbone(depth=depth, out_indices=(1, 2, 3, 4)).eval()
    outs = net(torch.randn(2, 3, 64, 96))
    assert [o.shape for o in outs] == [torch.Size([2, c, 64 // s, 96 // s]) for c, s in zip(channels, (4, 8, 16, 32))]
    assert net.out_channels == channels and net.strides == [4, 8, 16, 32]


def test_resnet_builds_only_needed_layers_and_warns_on_random_init():
    with pytest.warns(UserWarning, match='random init'):
        net = ResNetBackbone(depth=18, out_indices=(2, 3))
    assert len(net.layers) == 3
    assert [o.shape[1] for o in net(torch.randn(1, 3, 32, 32))] == [128, 256]


def test_resnet_frozen_stages():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        net = ResNetBackbone(depth=18, out_indices=(3,), frozen_stages=1, norm='FrozenBN')
    assert not any(p.requires_grad for p in net.stem.parameters())
    assert not any(p.requires_grad for p in net.layers[0].parameters())
    assert all(p.requires_grad for p in net.layers[1].parameters())


def test_resnet_pretrained_local_checkpoint(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / 'r18.pth'
    torch.save(ref.state_dict(), path)
    net = ResNetBackbone(depth=18, out_indices=(2, 3), pretrained=str(path))
    torch.testing.assert_close(net.layers[1][0].conv1.weight, ref.layer2[0].conv1.weight)
    torch.testing.assert_close(net.stem[0].weight, ref.conv1.weight)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        ResNetBackbone(depth=18, pretrained=str(tmp_path / 'missing.pth'))
    with pytest.raises(RuntimeError, match='r18.pth.*does not match'):
        ResNetBackbone(depth=34, out_indices=(2,), pretrained=str(path))
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(RuntimeError, match='bad.pth'):
        ResNetBackbone(depth=18, pretrained=str(bad))


def test_fpn_shapes_and_top_down():
    neck = FPNNeck([8, 16, 32], 12, out_ids=(0, 1)).eval()
    feats = [torch.randn(1, 8, 16, 16), torch.randn(1, 16, 8, 8), torch.randn(1, 32, 4, 4)]
    outs = neck(feats)
    assert [o.shape for o in outs] == [torch.Size([1, 12, 16, 16]), torch.Size([1, 12, 8, 8])]
    # the coarsest input reaches the stride-16 output through the top-down path
    feats2 = [feats[0], feats[1], feats[2] + 1.0]
    assert not torch.allclose(neck(feats2)[1], outs[1])
    with pytest.raises(ValueError, match='expects 3 maps'):
        neck(feats[:2])


def test_depth_bins_and_downsample_vs_loop():
    d = torch.tensor([0.0, 0.5, 1.0, 1.99, 2.0, 44.99, 45.0, 50.0])
    assert depth_to_bins(d, (1.0, 45.0, 1.0)).tolist() == [-1, -1, 0, 0, 1, 43, -1, -1]
    g = torch.Generator().manual_seed(0)
    depth = torch.rand(1, 2, 8, 12, generator=g) * 10
    depth[torch.rand(depth.shape, generator=g) < 0.6] = 0
    out = downsample_depth(depth, 4)
    for n in range(2):
        for i in range(2):
            for j in range(3):
                block = depth[0, n, 4 * i:4 * i + 4, 4 * j:4 * j + 4]
                pos = block[block > 0]
                assert out[0, n, i, j] == (pos.min() if pos.numel() else 0)


def test_lift_splat_shapes_cache_and_depth_loss_reference():
    torch.manual_seed(0)
    vt = LiftSplat(in_channels=8, out_channels=6, depth_bins=(1.0, 41.0, 4.0), downsample=16, voxel_size=3.2)
    batch = random_batch(2, 3, (32, 64), grid_shape=(25, 25, 2), with_depth=True)
    batch['cam2ego'][1, 0, 0, 3] += 0.5          # the two samples have different geometry
    feats = [torch.randn(6, 8, 2, 4)]
    out = vt(feats, batch)
    assert out['bev'].shape == (2, 6, 25, 25) and out['depth'].shape == (2, 3, 10, 2, 4)
    assert out['bev'].abs().sum() > 0
    vt(feats, batch)
    assert vt.plan_cache.misses == 1 and vt.plan_cache.hits == 1
    batch['img_aug'] = batch['img_aug'].clone()
    batch['img_aug'][0, 0, 0, 3] = 3.0
    vt(feats, batch)
    assert vt.plan_cache.misses == 2
    # depth loss against a per-cell loop
    logits = out['depth']
    loss = vt.loss_depth(logits, batch['depth'])
    cells = downsample_depth(batch['depth'], 16)
    total, count = 0.0, 0
    for b in range(2):
        for n in range(3):
            for i in range(2):
                for j in range(4):
                    d = float(cells[b, n, i, j])
                    k = int((d - 1.0) // 4.0)
                    if d <= 0 or not 0 <= k < 10:
                        continue
                    p = logits[b, n, :, i, j].detach().double().softmax(0)
                    y = torch.zeros(10, dtype=torch.float64)
                    y[k] = 1
                    total += float(-(y * p.log() + (1 - y) * (1 - p).log()).sum())
                    count += 1
    assert count > 0
    assert abs(float(loss) - total / count) < 1e-4 * max(1.0, total / count)
    with pytest.raises(ValueError, match='not the image'):
        vt([torch.randn(6, 8, 4, 4)], batch)


def test_dense_head_channel_to_height_layout():
    head = DenseOccHead(in_channels=6, mid_channels=8, num_z=3, num_classes=5,
                        encoder=dict(num_blocks=1, num_down_blocks=1, fuse_kernel=1)).eval()
    captured = {}
    head.predictor.register_forward_hook(lambda m, i, o: captured.setdefault('x', o))
    logits = head(torch.randn(2, 6, 10, 12))['logits']
    assert logits.shape == (2, 5, 10, 12, 3)
    x = captured['x']                                   # [B, classes * Z, X, Y]
    for c in range(5):
        for z in range(3):
            torch.testing.assert_close(logits[:, c, :, :, z], x[:, c * 3 + z])


def test_loss_keys():
    assert loss_key('WeightedCELoss') == 'loss_weighted_ce'
    assert loss_key('LovaszSoftmaxLoss') == 'loss_lovasz_softmax'
    assert loss_key('FocalLoss') == 'loss_focal'
    head = DenseOccHead(4, 4, num_z=2, losses=[dict(type='FocalLoss'), dict(type='FocalLoss'),
                                                 dict(type='WeightedCELoss', name='loss_ce')])
    assert head.loss_names == ['loss_focal', 'loss_focal_1', 'loss_ce']
