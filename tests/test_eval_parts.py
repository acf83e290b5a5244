"""OccEvaluator's metric parts: a new metric is one registered class; regions and per-frame tables."""
import math

import numpy as np
import pytest
import torch

from occ.constants import FREE
from occ.evaluation import (DEFAULT_PARTS, MetricPart, OccEvaluator, OccMetric, load_frame_table,
                            select_frames)
from occ.registry import METRIC_PARTS

SMALL_RANGE = (-4.0, -4.0, -1.0, 4.0, 4.0, 2.2)     # 20 x 20 x 8 voxels of 0.4 m
SHAPE = (20, 20, 8)


def _frame(rng):
    gt = np.where(rng.random(SHAPE) < 0.6, FREE, rng.integers(0, 17, SHAPE)).astype(np.uint8)
    pred = gt.copy()
    flip = rng.random(SHAPE) < 0.3
    pred[flip] = rng.integers(0, 18, int(flip.sum()))
    cam = (rng.random(SHAPE) < 0.4).astype(np.uint8)
    hist = (cam | (rng.random(SHAPE) < 0.3)).astype(np.uint8)     # visible now or in the past
    return dict(pred=pred, gt=gt, mask_camera=cam, mask_lidar=(rng.random(SHAPE) < 0.5).astype(np.uint8),
                mask_camera_history=hist)


def _loop_region_metrics(frames, region):
    """mIoU / geometry IoU / occupied recall inside ``region(frame)``, pooled over frames by loops."""
    h = [[0] * 18 for _ in range(18)]
    for f in frames:
        r = region(f)
        for p, g, m in zip(f['pred'].ravel().tolist(), f['gt'].ravel().tolist(), r.ravel().tolist()):
            if m and g < 18:
                h[g][p] += 1
    ious = []
    for c in range(17):
        tp, row, col = h[c][c], sum(h[c]), sum(h[g][c] for g in range(18))
        if row + col - tp:
            ious.append(tp / (row + col - tp))
    tp = sum(h[g][p] for g in range(17) for p in range(17))
    fn = sum(h[g][17] for g in range(17))
    fp = sum(h[17][p] for p in range(17))
    return 100 * sum(ious) / len(ious), 100 * tp / (tp + fn + fp), 100 * tp / (tp + fn)


def test_history_only_and_occluded_regions_match_loops():
    rng = np.random.default_rng(0)
    frames = [_frame(rng) for _ in range(3)]
    ev = OccEvaluator(ray_iou=False, pc_range=SMALL_RANGE, parts=[*DEFAULT_PARTS, 'OccludedRegion'])
    for f in frames:
        ev.add(**f)
    s = ev.summary('camera')
    flat = ev.flat_metrics('camera')
    for name, region in (('history_only', lambda f: (f['mask_camera_history'] > 0) & (f['mask_camera'] == 0)),
                         ('occluded', lambda f: (f['gt'] < FREE) & (f['mask_camera'] == 0))):
        miou, iou, recall = _loop_region_metrics(frames, region)
        assert s[name]['miou'] == pytest.approx(miou)
        assert s[name]['iou'] == pytest.approx(iou)
        assert s[name]['occupied_recall'] == pytest.approx(recall)
        assert s[name]['voxels'] == sum(int((region(f) & (f['gt'] < 18)).sum()) for f in frames)
        assert flat[f'miou_{name}'] == pytest.approx(miou) and flat[f'recall_{name}'] == pytest.approx(recall)


def test_region_absent_input_leaves_every_other_number_unchanged():
    rng = np.random.default_rng(1)
    frames = [_frame(rng) for _ in range(2)]
    with_hist, without = OccEvaluator(ray_iou=False), OccEvaluator(ray_iou=False)
    for f in frames:
        with_hist.add(**f)
        without.add(**{k: v for k, v in f.items() if k != 'mask_camera_history'})
    a, b = with_hist.flat_metrics(), without.flat_metrics()
    assert 'miou_history_only' in a and not any('history_only' in k for k in b)
    assert {k: v for k, v in a.items() if 'history_only' not in k} == b


# a metric written for this test only: the share of GT car voxels predicted as car, everywhere
class _CarRecall(MetricPart):
    name = 'car_recall'
    inputs = ('pred', 'gt')

    def frame(self, f):
        car = f['gt'] == 4
        return np.array([int((car & (f['pred'] == 4)).sum()), int(car.sum())], np.int64)

    def summary(self, total, frames, mask):
        return {'car_recall': 100.0 * total[0] / total[1] if total[1] else None}

    def flat(self, s):
        return {'car_recall': float('nan') if s['car_recall'] is None else s['car_recall']}


def test_a_new_metric_is_one_registered_class_and_reaches_occmetric():
    METRIC_PARTS.register_module(name='_CarRecall', module=_CarRecall, force=True)
    rng = np.random.default_rng(2)
    frames = [_frame(rng) for _ in range(4)]
    metric = OccMetric(ray_iou=False, pc_range=SMALL_RANGE, parts=[*DEFAULT_PARTS, '_CarRecall'])
    batch = {'voxel_semantics': torch.from_numpy(np.stack([f['gt'] for f in frames])),
             'mask_camera': torch.from_numpy(np.stack([f['mask_camera'] for f in frames])),
             'mask_lidar': torch.from_numpy(np.stack([f['mask_lidar'] for f in frames])),
             'mask_camera_history': torch.from_numpy(np.stack([f['mask_camera_history'] for f in frames])),
             'sample_token': [f't{i}' for i in range(4)]}
    metric.process(batch, [{'semantics': f['pred'], 'sample_token': f't{i}'} for i, f in enumerate(frames)])
    res = metric.compute_metrics(metric.results)
    car = sum(int(((f['gt'] == 4) & (f['pred'] == 4)).sum()) for f in frames)
    cars = sum(int((f['gt'] == 4).sum()) for f in frames)
    assert res['car_recall'] == pytest.approx(100.0 * car / cars)
    # the batch's mask_camera_history reached the history-only region
    ref = OccEvaluator(ray_iou=False, pc_range=SMALL_RANGE)
    for f in frames:
        ref.add(**f)
    want = ref.flat_metrics()
    for k, v in want.items():
        assert (math.isnan(v) and math.isnan(res[k])) or res[k] == v, k
    assert 'miou_history_only' in res


def test_frame_table_bootstrap_weights_equal_adding_the_drawn_frames(tmp_path):
    rng = np.random.default_rng(3)
    frames = [_frame(rng) for _ in range(5)]
    for i, f in enumerate(frames):
        if i % 2:                             # some frames forecast (2 or 3 horizons) or send bytes
            f['pred_future'] = np.stack([f['pred']] * (2 + i % 3))
            f['gt_future'] = np.stack([f['gt']] * 3)
            f['bytes_sent'] = float(100 * i)
    ev = OccEvaluator(pc_range=SMALL_RANGE)   # RayIoU included
    results = [ev.frame_result(**f) for f in frames]
    path = str(tmp_path / 'frames.npz')
    metric = OccMetric(pc_range=SMALL_RANGE, frame_stats=path)
    metric.compute_metrics([dict(r, token=f'tok{i}') for i, r in enumerate(results)])
    tokens, table, parts = load_frame_table(path)
    assert tokens == [f'tok{i}' for i in range(5)]
    assert parts == ['VoxelIoU', 'RayIoU', 'ForecastIoU', 'BytesSent', 'HistoryOnlyRegion']
    assert [p.name for p in OccEvaluator(parts=parts).parts] == [p.name for p in ev.parts]
    draw = np.array([4, 1, 1, 0, 3])                       # a bootstrap draw: frame 1 twice, 2 never
    ref = OccEvaluator(pc_range=SMALL_RANGE)
    for i in draw:
        ref.add(**frames[i])
    want = ref.flat_metrics()
    got = ev.metrics_from_table(table, np.bincount(draw, minlength=5))
    assert set(got) == set(want)
    for k, v in want.items():
        assert (math.isnan(v) and math.isnan(got[k])) or got[k] == pytest.approx(v, rel=1e-12), k
    # all frames once = the plain pooled numbers; a row selection = those frames only
    full = OccEvaluator(pc_range=SMALL_RANGE)
    for r in results:
        full.add_result(r)
    assert ev.metrics_from_table(table) == full.flat_metrics()
    sub = OccEvaluator(pc_range=SMALL_RANGE)
    for r in results[:2]:
        sub.add_result(r)
    assert ev.metrics_from_table(select_frames(table, np.arange(2))) == sub.flat_metrics()


def test_frame_table_file_errors_name_the_file(tmp_path):
    bad = tmp_path / 'bad.npz'
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(ValueError, match='bad.npz'):
        load_frame_table(str(bad))
    with pytest.raises(FileNotFoundError, match='missing.npz'):
        load_frame_table(str(tmp_path / 'missing.npz'))


def test_a_metric_part_must_implement_its_interface():
    from occ.evaluation.region_parts import RegionIoU

    class NoFlat(MetricPart):
        def frame(self, f):
            return None

        def summary(self, total, frames, mask):
            return {}

    with pytest.raises(TypeError, match='flat'):
        NoFlat()
    with pytest.raises(TypeError, match='region'):
        type('NoRegion', (RegionIoU,), {'name': 'x'})()
