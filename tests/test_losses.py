"""Occupancy losses against independent slow references (values and gradients)."""
import itertools
import math

import numpy as np
import pytest
import torch
import torchvision

from occ.models.losses import (OCC3D_CLASS_COUNTS, FocalLoss, LovaszSoftmaxLoss, SigmoidFocalLoss,
                               WeightedCELoss, class_weights_from_counts)
from occ.registry import MODELS


def _case(seed=0, b=2, c=5, shape=(3, 4, 2), ignore=True, with_mask=True):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, *shape, generator=g, dtype=torch.float64) * 2
    target = torch.randint(0, c, (b, *shape), generator=g)
    if ignore:
        target[torch.rand(target.shape, generator=g) < 0.2] = 255
    mask = (torch.rand(target.shape, generator=g) < 0.7) if with_mask else None
    return logits, target, mask


def _valid_list(logits, target, mask):
    """Python list of (logit row, class) for valid voxels, by explicit iteration."""
    b, c = logits.shape[:2]
    rows = []
    for idx in itertools.product(*[range(s) for s in target.shape]):
        t = int(target[idx])
        if t == 255 or (mask is not None and not bool(mask[idx])):
            continue
        rows.append((torch.stack([logits[(idx[0], k) + idx[1:]] for k in range(c)]), t))
    return rows


# ---------------------------------------------------------------- sigmoid focal
@pytest.mark.parametrize('alpha,gamma,reduction', [(0.25, 2.0, 'mean'), (-1, 0.0, 'sum'), (0.6, 1.5, 'mean')])
def test_sigmoid_focal_matches_torchvision(alpha, gamma, reduction):
    logits, target, mask = _case()
    x1 = logits.clone().requires_grad_(True)
    ours = SigmoidFocalLoss(alpha=alpha, gamma=gamma, reduction=reduction, loss_weight=1.0)(x1, target, mask)
    x2 = logits.clone().requires_grad_(True)
    valid = (target != 255) & mask
    flat = x2.permute(0, 2, 3, 4, 1)[valid]
    onehot = torch.nn.functional.one_hot(target[valid], logits.shape[1]).double()
    ref = torchvision.ops.sigmoid_focal_loss(flat, onehot, alpha=alpha, gamma=gamma, reduction=reduction)
    torch.testing.assert_close(ours, ref)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_sigmoid_focal_matches_elementwise_loop():
    logits, target, mask = _case(seed=1, shape=(2, 3))
    alpha, gamma = 0.3, 2.0
    total, count = 0.0, 0
    for row, t in _valid_list(logits, target, mask):
        for k, x in enumerate(row.tolist()):
            y = 1.0 if k == t else 0.0
            p = 1 / (1 + math.exp(-x))
            pt = p if y else 1 - p
            at = alpha if y else 1 - alpha
            total += -at * (1 - pt) ** gamma * math.log(pt)
            count += 1
    ours = SigmoidFocalLoss(alpha=alpha, gamma=gamma, loss_weight=2.0)(logits, target, mask)
    assert ours.item() == pytest.approx(2.0 * total / count, rel=1e-10)


# ---------------------------------------------------------------- softmax focal
def test_focal_matches_loop_values_and_gradients():
    logits, target, mask = _case(seed=2, shape=(2, 3))
    alpha = [0.5, 1.0, 2.0, 0.25, 3.0]
    gamma = 1.7
    x1 = logits.clone().requires_grad_(True)
    ours = FocalLoss(gamma=gamma, alpha=alpha, loss_weight=0.5)(x1, target, mask)
    x2 = logits.clone().requires_grad_(True)
    terms = []
    for row, t in _valid_list(x2, target, mask):
        p = torch.exp(row[t]) / torch.exp(row).sum()
        terms.append(-alpha[t] * (1 - p) ** gamma * torch.log(p))
    ref = 0.5 * torch.stack(terms).sum() / len(terms)
    torch.testing.assert_close(ours, ref)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_focal_gamma0_is_cross_entropy_and_sum_reduction():
    logits, target, mask = _case(seed=3, with_mask=False)
    ce = torch.nn.functional.cross_entropy(logits, target, ignore_index=255)
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, target, None), ce)
    n = int((target != 255).sum())
    torch.testing.assert_close(FocalLoss(gamma=0.0, reduction='sum')(logits, target, None), ce * n)


# ---------------------------------------------------------------- Lovász
def _jaccard_set_loss(mispredicted: set, fg: set) -> float:
    union = fg | mispredicted
    return len(mispredicted) / len(union) if union else 0.0


def _lovasz_reference(probs, target, classes='present'):
    """Lovász extension written from its definition with Python sets: sort
    errors, grow the mispredicted set one voxel at a time, weight each error
    by the increase of the Jaccard set loss."""
    n, c = probs.shape
    losses = []
    for k in range(c):
        fg = {i for i in range(n) if int(target[i]) == k}
        if classes == 'present' and not fg:
            continue
        errors = [((1.0 if i in fg else 0.0) - probs[i, k]).abs() for i in range(n)]
        order = sorted(range(n), key=lambda i: -errors[i].detach().item())
        prefix, prev, total = set(), 0.0, probs.new_zeros(())
        for i in order:
            prefix.add(i)
            cur = _jaccard_set_loss(prefix, fg)
            total = total + errors[i] * (cur - prev)
            prev = cur
        losses.append(total)
    return torch.stack(losses).mean()


@pytest.mark.parametrize('classes', ['present', 'all'])
def test_lovasz_matches_set_reference_values_and_gradients(classes):
    logits, target, mask = _case(seed=4, c=4, shape=(3, 3))
    target[target == 3] = 0          # class 3 absent: 'present' and 'all' differ
    x1 = logits.clone().requires_grad_(True)
    ours = LovaszSoftmaxLoss(classes=classes)(x1, target, mask)
    x2 = logits.clone().requires_grad_(True)
    rows = _valid_list(x2, target, mask)
    probs = torch.softmax(torch.stack([r for r, _ in rows]), dim=1)
    ref = _lovasz_reference(probs, torch.tensor([t for _, t in rows]), classes)
    torch.testing.assert_close(ours, ref)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_lovasz_is_jaccard_at_vertices_and_its_integral_form():
    # At binary errors the extension is the set function itself; in between it
    # is ∫_0^1 Δ({i : m_i >= s}) ds (the Lovász extension's threshold form).
    from occ.models.losses.lovasz_softmax import jaccard_increments
    g = torch.Generator().manual_seed(5)
    fg = (torch.rand(12, generator=g) < 0.4).double()
    fg_set = {i for i in range(12) if fg[i] > 0}
    m = torch.rand(12, generator=g, dtype=torch.float64)
    m_sorted, order = torch.sort(m, descending=True)
    ext = float(torch.dot(m_sorted, jaccard_increments(fg[order])))
    levels = [0.0] + sorted(m.tolist()) + [1.0]
    integral = 0.0
    for lo, hi in zip(levels[:-1], levels[1:]):
        s = 0.5 * (lo + hi)
        integral += (hi - lo) * _jaccard_set_loss({i for i in range(12) if m[i] >= s}, fg_set)
    assert ext == pytest.approx(integral, rel=1e-12)
    binary = (torch.rand(12, generator=g) < 0.5).double()
    b_sorted, order = torch.sort(binary, descending=True, stable=True)
    ext = float(torch.dot(b_sorted, jaccard_increments(fg[order])))
    assert ext == pytest.approx(_jaccard_set_loss({i for i in range(12) if binary[i] > 0}, fg_set))


def test_lovasz_perfect_prediction_is_zero():
    target = torch.randint(0, 3, (1, 4, 4))
    logits = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).double() * 50
    assert LovaszSoftmaxLoss()(logits, target, None).item() == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- weighted CE
def test_weighted_ce_matches_loop_with_mask_and_ignore():
    logits, target, mask = _case(seed=6, shape=(2, 3))
    w = [0.2, 1.0, 3.0, 0.7, 5.0]
    x1 = logits.clone().requires_grad_(True)
    ours = WeightedCELoss(class_weight=w, num_classes=5, loss_weight=1.5)(x1, target, mask)
    x2 = logits.clone().requires_grad_(True)
    num, den = 0.0, 0.0
    for row, t in _valid_list(x2, target, mask):
        num = num - w[t] * torch.log(torch.exp(row[t]) / torch.exp(row).sum())
        den += w[t]
    ref = 1.5 * num / den
    torch.testing.assert_close(ours, ref)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_auto_class_weights_follow_enet_formula_and_favour_rare_classes():
    counts = np.array(OCC3D_CLASS_COUNTS, dtype=np.float64)
    w = class_weights_from_counts(counts)
    raw = 1 / np.log(1.02 + counts / counts.sum())
    np.testing.assert_allclose(w, raw / raw.mean(), rtol=1e-6)
    pedestrian, barrier, driveable, free = 7, 1, 11, 17
    assert w[pedestrian] > 20 * w[free] and w[barrier] > 20 * w[free]
    assert w[pedestrian] > 3 * w[driveable]
    loss = WeightedCELoss()          # 'auto' by default
    np.testing.assert_allclose(loss.weight.numpy(), w)
    w2 = class_weights_from_counts([1, 4, 16], 'inv_sqrt')
    np.testing.assert_allclose(w2 / w2[-1], [4, 2, 1], rtol=1e-6)


# ---------------------------------------------------------------- shared behaviour
ALL = [dict(type='FocalLoss'), dict(type='SigmoidFocalLoss'), dict(type='LovaszSoftmaxLoss'),
       dict(type='WeightedCELoss', class_weight='auto', num_classes=5, class_counts=[5, 4, 3, 2, 1])]


@pytest.mark.parametrize('cfg', ALL, ids=[c['type'] for c in ALL])
def test_registry_ignore_mask_empty_and_bad_input(cfg):
    loss = MODELS.build(cfg)
    logits, target, mask = _case(seed=7, with_mask=True)
    base = loss(logits, target, mask)
    assert torch.isfinite(base)
    # changing ignored or masked-out voxels changes nothing
    t2, l2 = target.clone(), logits.clone()
    hidden = (target == 255) | ~mask
    t2[~mask & (target != 255)] = 0
    l2.permute(0, 2, 3, 4, 1)[hidden] = 100.0
    torch.testing.assert_close(loss(l2, t2, mask), base)
    # nothing valid -> exact zero that still backpropagates
    x = logits.clone().requires_grad_(True)
    z = loss(x, torch.full_like(target, 255), None)
    z.backward()
    assert z.item() == 0.0 and x.grad is not None and float(x.grad.abs().sum()) == 0.0
    with pytest.raises(ValueError, match=cfg['type']):
        loss(logits, target[:, :2], None)
    with pytest.raises(ValueError, match='outside'):
        loss(logits, torch.full_like(target, 7), None)


# ---------------------------------------------------------------- occupied-vs-free BCE
@pytest.mark.parametrize('pos_weight', [1.0, 0.5])
def test_occupancy_bce_matches_loop_values_and_gradients(pos_weight):
    from occ.models.losses import OccupancyBCELoss
    logits, target, mask = _case(seed=11, c=5, shape=(3, 2))
    x1 = logits.clone().requires_grad_(True)
    ours = OccupancyBCELoss(free_index=4, pos_weight=pos_weight, loss_weight=2.0)(x1, target, mask)
    x2 = logits.clone().requires_grad_(True)
    terms = []
    for row, t in _valid_list(x2, target, mask):
        p_free = torch.exp(row[4]) / torch.exp(row).sum()
        terms.append(-pos_weight * torch.log(1 - p_free) if t != 4 else -torch.log(p_free))
    ref = 2.0 * torch.stack(terms).mean()
    torch.testing.assert_close(ours, ref)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_occupancy_bce_is_stable_for_confident_logits_and_empty_masks():
    from occ.models.losses import OccupancyBCELoss
    loss = OccupancyBCELoss(free_index=2)
    logits = torch.tensor([[[100.0], [-100.0], [-100.0]]])       # [B=1, C=3, N=1]: sure of class 0
    assert torch.isfinite(loss(logits, torch.tensor([[2]]))).all()   # wrong and confident: large, finite
    assert loss(logits, torch.tensor([[0]])).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(logits, torch.tensor([[0]]), torch.tensor([[False]])).item() == 0.0
