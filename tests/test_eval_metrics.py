"""Voxel mIoU/IoU (Occ3D), forecasting (OccWorld + fix) and OccMetric against slow loop references."""
import glob
import math
import os
import pickle

import numpy as np
import pytest
import torch

from occ.constants import CLASS_NAMES, FREE
from occ.data.occ3d_io import load_occ3d_labels
from occ.evaluation import (ConfusionAccumulator, OccEvaluator, OccMetric, confusion_matrices,
                            forecast_metrics, future_hists, iou_from_hist)
from occ.registry import METRICS

REAL = sorted(glob.glob(os.path.join(os.path.dirname(__file__), 'fixtures', 'occ3d-sample',
                                     '*', 'labels.npz')))


def _frame(rng, shape=(7, 6, 5), p_free=0.6):
    """Random labels with many free voxels; shape chosen so the voxel count is not a multiple of 4."""
    def labels():
        return np.where(rng.random(shape) < p_free, FREE, rng.integers(0, 17, shape)).astype(np.uint8)
    return dict(pred=labels(), gt=labels(),
                mask_camera=(rng.random(shape) < 0.4).astype(np.uint8),
                mask_lidar=(rng.random(shape) < 0.5).astype(np.uint8))


def _ref_hist(pred, gt, mask):
    """Plain loops: hist[g, p] over voxels with mask set and GT label in 0..17."""
    h = [[0] * 18 for _ in range(18)]
    for p, g, m in zip(pred.ravel().tolist(), gt.ravel().tolist(), mask.ravel().tolist()):
        if m and g < 18:
            h[g][p] += 1
    return np.array(h)


def _ref_metrics(h):
    """Per-class IoU, mIoU over 0..16 skipping 0/0, geometry IoU -- written out by hand."""
    ious = []
    for c in range(18):
        tp = h[c][c]
        fn = sum(h[c][p] for p in range(18)) - tp
        fp = sum(h[g][c] for g in range(18)) - tp
        ious.append(tp / (tp + fn + fp) if tp + fn + fp else None)
    sem = [v for v in ious[:17] if v is not None]
    tp = sum(h[g][p] for g in range(17) for p in range(17))
    fn = sum(h[g][17] for g in range(17))
    fp = sum(h[17][p] for p in range(17))
    return ious, (sum(sem) / len(sem) if sem else None), (tp / (tp + fn + fp) if tp + fn + fp else None)


def test_confusion_matrices_match_loop_reference_for_every_mask():
    rng = np.random.default_rng(0)
    f = _frame(rng)
    f['gt'][0, 0, :3] = 255                       # ignored GT labels
    h = confusion_matrices(f['pred'], f['gt'], f['mask_camera'], f['mask_lidar'])
    ones = np.ones_like(f['gt'])
    for i, m in enumerate((f['mask_camera'], f['mask_lidar'], ones)):
        np.testing.assert_array_equal(h[i], _ref_hist(f['pred'], f['gt'], m))
    # computing a subset of the masks (single-mask fast path) gives the same matrices
    for subset in (('camera',), ('lidar', 'none')):
        hs = confusion_matrices(f['pred'], f['gt'], f['mask_camera'], f['mask_lidar'], masks=subset)
        for i, name in enumerate(('camera', 'lidar', 'none')):
            np.testing.assert_array_equal(hs[i], h[i] if name in subset else 0)
    # masks given as bool or as other nonzero values count the same voxels
    h_bool = confusion_matrices(f['pred'], f['gt'], f['mask_camera'].astype(bool),
                                f['mask_lidar'] * np.uint8(7))
    np.testing.assert_array_equal(h_bool, h)
    # a free-only block pattern plus a tail (size % 8 != 0) is still counted exactly
    free = np.full((3, 3, 3), FREE, np.uint8)
    hf = confusion_matrices(free, free, np.zeros_like(free), np.zeros_like(free))
    assert hf[2, FREE, FREE] == 27 and hf[:2].sum() == 0 and hf.sum() == 27


def test_iou_definitions_match_loop_reference_incl_absent_classes():
    rng = np.random.default_rng(1)
    f = _frame(rng)
    f['gt'][f['gt'] == 5] = FREE                  # 5: absent everywhere -> NaN, not averaged
    f['pred'][f['pred'] == 5] = FREE
    f['gt'][f['gt'] == 6] = 4                     # 6: predicted, never in GT -> IoU 0, averaged
    f['pred'][0, 0, 0] = 6
    m = np.ones_like(f['gt'])
    h = _ref_hist(f['pred'], f['gt'], m)
    ref_ious, ref_miou, ref_iou = _ref_metrics(h)
    got = iou_from_hist(h)
    assert math.isnan(got['per_class'][5]) and ref_ious[5] is None
    assert got['per_class'][6] == 0.0
    for c in range(18):
        if ref_ious[c] is not None:
            assert got['per_class'][c] == pytest.approx(ref_ious[c])
    assert got['miou'] == pytest.approx(ref_miou)
    assert got['iou'] == pytest.approx(ref_iou)


def test_streaming_equals_all_at_once_and_is_order_free():
    rng = np.random.default_rng(2)
    frames = [_frame(rng) for _ in range(5)]
    acc = ConfusionAccumulator()
    for f in frames:
        acc.add(f['pred'], f['gt'], f['mask_camera'], f['mask_lidar'])
    cat = {k: np.concatenate([f[k] for f in frames]) for k in frames[0]}
    whole = confusion_matrices(cat['pred'], cat['gt'], cat['mask_camera'], cat['mask_lidar'])
    np.testing.assert_array_equal(acc.hist, whole)
    # two workers' accumulators merged in another order give the same sums
    a, b = ConfusionAccumulator(), ConfusionAccumulator()
    for i, f in enumerate(frames[::-1]):
        (a if i % 2 else b).add(f['pred'], f['gt'], f['mask_camera'], f['mask_lidar'])
    a.merge(b)
    np.testing.assert_array_equal(a.hist, acc.hist)
    assert a.num_frames == 5
    for mask in ('camera', 'lidar', 'none'):
        assert acc.metrics(mask)['miou'] == pytest.approx(
            _ref_metrics(whole[('camera', 'lidar', 'none').index(mask)])[1])


def test_bad_predictions_are_rejected():
    gt = np.zeros((2, 2, 2), np.uint8)
    with pytest.raises(ValueError, match='outside'):
        confusion_matrices(np.full((2, 2, 2), 18, np.uint8), gt)
    with pytest.raises(ValueError, match='shape'):
        confusion_matrices(np.zeros((2, 2, 3), np.uint8), gt)
    with pytest.raises(TypeError, match='uint8'):
        confusion_matrices(np.zeros((2, 2, 2), np.int64), gt)


@pytest.mark.skipif(not REAL, reason='real Occ3D fixture missing')
def test_real_frame_against_itself_is_100_over_present_classes():
    z = load_occ3d_labels(REAL[0], (200, 200, 16))
    ev = OccEvaluator(ray_iou=False)
    ev.add(z['semantics'], z['semantics'], z['mask_camera'], z['mask_lidar'])
    s = ev.summary('camera')
    assert s['miou'] == 100.0 and s['iou'] == 100.0
    present = set(np.unique(z['semantics'][z['mask_camera'] > 0]).tolist()) - {FREE}
    for c, name in enumerate(CLASS_NAMES[:FREE]):
        assert (s['per_class'][name] == 100.0) if c in present else s['per_class'][name] is None
    # a shifted prediction scores lower, and the masks give different numbers
    ev2 = OccEvaluator(ray_iou=False)
    ev2.add(np.roll(z['semantics'], 2, 0), z['semantics'], z['mask_camera'], z['mask_lidar'])
    s2 = ev2.summary('camera')
    assert 0 < s2['miou'] < 100 and s2['by_mask']['none']['miou'] != s2['by_mask']['camera']['miou']


# ---------------------------------------------------------------- forecasting
def _ref_forecast(pred_f, gt_f):
    """OccWorld's counting (seen / correct / positive over all voxels), absent-both classes skipped."""
    out = []
    for h in range(len(pred_f)):
        p, g = pred_f[h].ravel().tolist(), gt_f[h].ravel().tolist()
        ious = []
        for c in range(17):
            seen = sum(1 for x in g if x == c)
            pos = sum(1 for x in p if x == c)
            cor = sum(1 for x, y in zip(p, g) if x == c and y == c)
            if seen + pos:
                ious.append(cor / (seen + pos - cor))
        tp = sum(1 for x, y in zip(p, g) if x != FREE and y != FREE)
        union = sum(1 for x, y in zip(p, g) if x != FREE or y != FREE)
        out.append((sum(ious) / len(ious), tp / union))
    return out


def test_forecast_matches_occworld_counting_with_absent_class_fix():
    rng = np.random.default_rng(3)
    H, shape = 6, (6, 5, 4)
    frames = []
    for _ in range(3):
        gt = np.where(rng.random((H,) + shape) < 0.5, FREE,
                      rng.integers(0, 17, (H,) + shape)).astype(np.uint8)
        pred = gt.copy()
        flip = rng.random(gt.shape) < 0.3
        pred[flip] = rng.integers(0, 18, int(flip.sum()))
        frames.append((pred, gt))
    hists = sum(future_hists(p, g) for p, g in frames)
    got = forecast_metrics(hists)
    ref = _ref_forecast(np.concatenate([p for p, _ in frames], 1),
                        np.concatenate([g for _, g in frames], 1))
    names = ['0.5s', '1s', '1.5s', '2s', '2.5s', '3s']
    for h, name in enumerate(names):
        assert got[name]['miou'] == pytest.approx(ref[h][0])
        assert got[name]['iou'] == pytest.approx(ref[h][1])
    assert got['avg']['miou'] == pytest.approx(np.mean([ref[1][0], ref[3][0], ref[5][0]]))
    assert got['avg']['horizons'] == ['1s', '2s', '3s']


def test_forecast_absent_class_is_left_out_not_scored_one():
    gt = np.full((1, 4, 4, 2), FREE, np.uint8)
    gt[0, :2] = 4
    pred = gt.copy()
    pred[0, 0] = 11                  # half of the car voxels predicted as driveable surface
    m = forecast_metrics(future_hists(pred, gt))['0.5s']
    # car: 8 correct of 16 seen; driveable: 0 of 8 predicted; the 15 absent classes are skipped.
    assert m['miou'] == pytest.approx((8 / 16 + 0.0) / 2)
    occworld_would_give = (8 / 16 + 0.0 + 15 * 1.0) / 17
    assert m['miou'] != pytest.approx(occworld_would_give)


# ---------------------------------------------------------------- OccMetric
SMALL_RANGE = (-4.0, -4.0, -1.0, 4.0, 4.0, 2.2)     # 20 x 20 x 8 voxels of 0.4 m


def _batch(rng, B=3, H=2):
    shape = (20, 20, 8)
    sem = np.full((B,) + shape, FREE, np.uint8)
    sem[:, :, :, 0] = 11                               # ground
    sem[:, 15:, :, :6] = 15                            # a wall ahead
    sem[:, 8:10, 3:5, 1:4] = 4                         # a car
    pred = sem.copy()
    noise = rng.random(pred.shape) < 0.05
    pred[noise] = rng.integers(0, 18, int(noise.sum()))
    fut = np.stack([np.roll(sem, h + 1, 1) for h in range(H)], 1)
    batch = {'voxel_semantics': torch.from_numpy(sem),
             'mask_camera': torch.from_numpy((rng.random(sem.shape) < 0.5).astype(np.uint8)),
             'mask_lidar': torch.from_numpy((rng.random(sem.shape) < 0.5).astype(np.uint8)),
             'future_semantics': torch.from_numpy(fut),
             'sample_token': [f'tok{i}' for i in range(B)]}
    outs = [{'sample_token': f'tok{i}', 'semantics': pred[i],
             'semantics_future': np.roll(fut[i], 1, 2), 'bytes_sent': float(100 * (i + 1))}
            for i in range(B)]
    return batch, outs


def test_occmetric_matches_evaluator_and_keeps_results_small():
    rng = np.random.default_rng(4)
    metric = METRICS.build(dict(type='OccMetric', mask='camera', pc_range=SMALL_RANGE))
    assert isinstance(metric, OccMetric)
    ev = OccEvaluator(pc_range=SMALL_RANGE)
    for _ in range(2):
        batch, outs = _batch(rng)
        metric.process(batch, outs)
        for i, o in enumerate(outs):
            ev.add(o['semantics'], batch['voxel_semantics'][i].numpy(),
                   batch['mask_camera'][i].numpy(), batch['mask_lidar'][i].numpy(),
                   pred_future=o['semantics_future'],
                   gt_future=batch['future_semantics'][i].numpy(), bytes_sent=o['bytes_sent'])
    assert len(metric.results) == 6
    assert max(len(pickle.dumps(r)) for r in metric.results) < 6000   # counts, not voxels
    res = metric.compute_metrics(metric.results[::-1])
    ref = ev.flat_metrics('camera')
    assert set(res) == set(ref)
    for k in ref:
        assert (math.isnan(res[k]) and math.isnan(ref[k])) or res[k] == pytest.approx(ref[k]), k
    for k in ('miou', 'iou', 'IoU_car', 'ray_iou', 'ray_iou@1', 'forecast_miou_0.5s',
              'forecast_iou_1s', 'forecast_miou_avg', 'bytes_sent'):
        assert k in res and isinstance(res[k], float)
    assert res['bytes_sent'] == pytest.approx(200.0)
    assert 0 < res['miou'] < 100 and 0 < res['ray_iou'] <= 100


def test_occmetric_rejects_mismatched_tokens():
    rng = np.random.default_rng(5)
    batch, outs = _batch(rng, B=2)
    outs[1]['sample_token'] = 'other'
    metric = OccMetric(ray_iou=False, pc_range=SMALL_RANGE)
    with pytest.raises(ValueError, match='other'):
        metric.process(batch, outs)
