"""SparseOccHead: sparse decoding equals a dense conv3d reference when nothing is pruned."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('spconv.pytorch')

from occ.models.heads.sparse_occ_head import SparseOccHead, coarse_occupancy  # noqa: E402
from occ.registry import MODELS  # noqa: E402

GRID = (8, 8, 4)


def _head(**kw):
    torch.manual_seed(0)
    cfg = dict(in_channels=6, grid_shape=GRID, channels=(8, 6, 4), num_convs=1)
    cfg.update(kw)
    head = SparseOccHead(**cfg).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():   # non-trivial BN statistics so eval-mode normalisation is exercised
        for m in head.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g, dtype=torch.float64) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g, dtype=torch.float64) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g, dtype=torch.float64) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g, dtype=torch.float64) * 0.1)
    return head


def _dense_reference(head, bev):
    """The same network evaluated densely with F.conv3d / F.conv_transpose3d (eval mode)."""
    x = head.lift(bev)
    scores = []
    for level in range(head.num_splits + 1):
        for block in head.blocks[level]:
            w = block.conv.weight.permute(0, 4, 1, 2, 3)        # spconv [O, kx, ky, kz, I] -> [O, I, kx, ky, kz]
            x = F.conv3d(x, w, padding=1)
            bn = block.norm
            shape = (1, -1, 1, 1, 1)
            x = (x - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
            x = F.relu(x * bn.weight.view(shape) + bn.bias.view(shape))
        if level == head.num_splits:
            break
        pred = head.occ_preds[level]
        scores.append(torch.einsum('bcxyz,c->bxyz', x, pred.weight[0]) + pred.bias[0])
        lin = head.splits[level]
        co, ci = head.channels[level + 1], head.channels[level]
        w = lin.weight.view(2, 2, 2, co, ci).permute(4, 3, 0, 1, 2)   # [I, O, 2, 2, 2]
        up = F.conv_transpose3d(x, w, stride=2)
        bias = lin.bias.view(2, 2, 2, co)
        for dx, dy, dz in itertools.product((0, 1), repeat=3):
            up[:, :, dx::2, dy::2, dz::2] += bias[dx, dy, dz].view(1, co, 1, 1, 1)
        x = up
    logits = torch.einsum('bcxyz,kc->bkxyz', x, head.cls_pred.weight) + head.cls_pred.bias.view(1, -1, 1, 1, 1)
    return logits, scores


def test_sparse_equals_dense_reference_when_all_voxels_kept():
    head = _head(keep_threshold=0.0).eval()       # sigmoid > 0 everywhere: nothing pruned
    bev = torch.randn(2, 6, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = head(bev)
        ref_logits, ref_scores = _dense_reference(head, bev)
    assert out['sparse'][0].shape[0] == 2 * math.prod(GRID)
    torch.testing.assert_close(out['logits'], ref_logits, rtol=1e-9, atol=1e-9)
    for (idx, s), ref in zip(out['occ_levels'], ref_scores):
        i = idx.long()
        torch.testing.assert_close(s, ref[i[:, 0], i[:, 1], i[:, 2], i[:, 3]], rtol=1e-9, atol=1e-9)


def test_coarse_occupancy_matches_block_loop():
    g = torch.Generator().manual_seed(3)
    sem = torch.randint(0, 18, (2, 4, 4, 4), generator=g)
    sem[torch.rand(sem.shape, generator=g) < 0.5] = 17
    sem[torch.rand(sem.shape, generator=g) < 0.1] = 255
    mask = torch.rand(sem.shape, generator=g) < 0.7
    occ, valid = coarse_occupancy(sem, mask, 2)
    for b, x, y, z in itertools.product(range(2), range(2), range(2), range(2)):
        block = [(int(sem[b, 2 * x + i, 2 * y + j, 2 * z + k]), bool(mask[b, 2 * x + i, 2 * y + j, 2 * z + k]))
                 for i, j, k in itertools.product((0, 1), repeat=3)]
        assert bool(valid[b, x, y, z]) == any(m and s != 255 for s, m in block)
        assert bool(occ[b, x, y, z]) == any(m and s not in (255, 17) for s, m in block)


def _labels():
    sem = torch.full((2, *GRID), 17, dtype=torch.uint8)
    sem[:, 1:3, 2:6, 0] = 11
    sem[0, 5, 5, 2] = 7
    sem[1, 6, 1, 1:3] = 4
    sem[1, 0, 0, 0] = 255
    return sem


def test_pruning_keeps_gt_in_training_and_fills_free():
    head = _head(keep_threshold=0.999).train()       # scores alone keep ~1 voxel per sample
    sem = _labels()
    mask = torch.ones_like(sem, dtype=torch.bool)
    bev = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    out = head(bev, sem, mask)
    idx = out['sparse'][0].long()
    active = torch.zeros(2, *GRID, dtype=torch.bool)
    active[idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]] = True
    occupied = (sem != 17) & (sem != 255)
    assert bool(active[occupied].all())
    assert int(active.sum()) < active.numel() // 2
    fill = out['logits'].permute(0, 2, 3, 4, 1)[~active]
    assert bool((fill[:, 17] == head.free_logit).all()) and bool((fill[:, :17] == 0).all())
    losses = head.loss(out, sem, mask)
    assert set(losses) == {'loss_occ_l0', 'loss_occ_l1', 'loss_weighted_ce', 'loss_lovasz_softmax'}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for p in head.parameters())
    # in eval mode GT is not used: only score-kept voxels survive
    head.eval()
    with torch.no_grad():
        n_eval = head(bev, sem, mask)['sparse'][0].shape[0]
    assert n_eval < idx.shape[0]


def test_keep_ratio_bounds_active_set():
    head = _head(keep_ratio=0.25).eval()
    with torch.no_grad():
        out = head(torch.randn(2, 6, 8, 8, dtype=torch.float64))
    n0 = math.prod(s // 4 for s in GRID)                  # coarse voxels per sample
    k0 = math.ceil(0.25 * n0)
    idx1 = out['occ_levels'][1][0]
    assert idx1.shape[0] == 2 * 8 * k0
    assert out['sparse'][0].shape[0] == 2 * 8 * math.ceil(0.25 * 8 * k0)


def test_occupancy_loss_is_bce_on_level_targets():
    head = _head(keep_threshold=0.0, occ_pos_weight=1.0, losses=()).eval()
    sem = _labels()
    with torch.no_grad():
        out = head(torch.randn(2, 6, 8, 8, dtype=torch.float64))
    losses = head.loss(out, sem, None)
    idx, s = out['occ_levels'][0]
    terms = []
    for row, (b, x, y, z) in enumerate(idx.tolist()):
        block = sem[b, 4 * x:4 * x + 4, 4 * y:4 * y + 4, 4 * z:4 * z + 4]
        if bool((block == 255).all()):
            continue
        y_occ = float(((block != 17) & (block != 255)).any())
        p = torch.sigmoid(s[row])
        terms.append(-(y_occ * torch.log(p) + (1 - y_occ) * torch.log(1 - p)))
    torch.testing.assert_close(losses['loss_occ_l0'], torch.stack(terms).mean())


def test_registry_and_bad_grid():
    head = MODELS.build(dict(type='SparseOccHead', in_channels=4, grid_shape=(8, 8, 4), channels=(4, 4)))
    assert head.coarse_shape == (4, 4, 2)
    with pytest.raises(ValueError, match='divisible'):
        SparseOccHead(in_channels=4, grid_shape=(10, 10, 6), channels=(4, 4, 4))


@pytest.mark.slow
def test_overfits_one_scene_and_prunes_at_inference():
    # Trained with GT-kept voxels, the head must learn to keep the right voxels
    # on its own (eval mode, no labels) and label them: near-perfect IoU on one scene.
    torch.manual_seed(0)
    grid = (16, 16, 8)
    head = SparseOccHead(16, grid, channels=(32, 16, 16))
    bev = torch.randn(1, 16, 16, 16)
    sem = torch.full((1, *grid), 17, dtype=torch.uint8)
    sem[..., 0] = 11
    sem[0, 3:6, 3:9, 1:4] = 4
    sem[0, 10:12, 2:4, 1:5] = 7
    sem[0, 12:16, 10:16, 1:7] = 15
    opt = torch.optim.Adam(head.parameters(), 1e-2)
    for _ in range(100):
        head.train()
        losses = head.loss(head(bev, sem), sem)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    head.eval()
    with torch.no_grad():
        out = head(bev)
    pred = out['logits'].argmax(1)
    for c in (4, 7, 11, 15, 17):
        inter = int(((pred == c) & (sem == c)).sum())
        union = int(((pred == c) | (sem == c)).sum())
        assert inter / union > 0.9, (c, inter, union)
    assert out['sparse'][0].shape[0] < sem.numel() // 2          # it pruned
