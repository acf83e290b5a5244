"""ForecastMotionSplit: per-horizon static / dynamic / moving-voxel forecast metrics against a loop reference."""
import math

import numpy as np
import pytest
import torch

from occ.constants import DYNAMIC_CLASSES, FREE
from occ.evaluation import OccEvaluator, OccMetric, moving_voxels
from occ.geometry import OccGrid

RANGE = (-6.0, -6.0, -1.0, 6.0, 6.0, 3.0)          # 12 x 12 x 4 voxels of 1 m
SHAPE = (12, 12, 4)
H = 3


def _pose(x, y, yaw):
    m = np.eye(4)
    m[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    m[:2, 3] = x, y
    return m


def _sample(rng):
    """Current GT, H future GTs (a drifting scene with dynamic classes), predictions, poses."""
    def frame():
        f = np.where(rng.random(SHAPE) < 0.5, FREE, rng.integers(0, 17, SHAPE)).astype(np.uint8)
        f[rng.random(SHAPE) < 0.15] = rng.choice(DYNAMIC_CLASSES)
        return f
    cur = frame()
    fut = np.stack([np.where(rng.random(SHAPE) < 0.7, np.roll(cur, h + 1, 0), frame()) for h in range(H)])
    fut[-1, :2] = 255                                          # unknown voxels are never scored
    pred = np.stack([np.where(rng.random(SHAPE) < 0.6, fut[h] % 18, rng.integers(0, 18, SHAPE)) for h in range(H)])
    x, y, yaw = rng.normal(0, 50, 2).tolist() + [float(rng.normal(0, 1))]
    pose = _pose(x, y, yaw)
    futp = np.stack([pose @ _pose(1.3 * (h + 1), 0.4 * h, 0.1 * (h + 1)) for h in range(H)])
    return dict(gt=cur, gt_future=fut, pred_future=pred.astype(np.uint8), ego2global=pose, future_ego2global=futp)


def _loop_moving(cur, fut, fut2cur):
    """Moving voxels of one future frame, voxel by voxel."""
    out = np.zeros(SHAPE, bool)
    for i in range(SHAPE[0]):
        for j in range(SHAPE[1]):
            for k in range(SHAPE[2]):
                p = fut2cur @ np.array([RANGE[0] + i + .5, RANGE[1] + j + .5, RANGE[2] + k + .5, 1.0])
                s = np.floor(p[:3] - np.array(RANGE[:3])).astype(int)
                if (s < 0).any() or (s >= np.array(SHAPE)).any() or fut[i, j, k] >= 18:
                    continue
                a, b = int(cur[tuple(s)]), int(fut[i, j, k])
                out[i, j, k] = a != b and (a in DYNAMIC_CLASSES or b in DYNAMIC_CLASSES)
    return out


def _loop_ious(pairs):
    """Per-class IoU (None where the class is absent from both) and geometry IoU from (pred, gt) pairs."""
    tp, fp, fn = [0] * 18, [0] * 18, [0] * 18
    gtp = gfp = gfn = 0
    for p, g in pairs:
        if g >= 18:
            continue
        if p == g:
            tp[g] += 1
        else:
            fp[p] += 1
            fn[g] += 1
        gtp += (p < FREE) and (g < FREE)
        gfp += (p < FREE) and (g == FREE)
        gfn += (p == FREE) and (g < FREE)
    per = [tp[c] / (tp[c] + fp[c] + fn[c]) if tp[c] + fp[c] + fn[c] else None for c in range(18)]
    return per, (gtp / (gtp + gfp + gfn) if gtp + gfp + gfn else None)


def _mean(per, classes):
    v = [per[c] for c in classes if per[c] is not None]
    return 100 * sum(v) / len(v) if v else None


def test_moving_voxels_and_split_metrics_match_loops():
    rng = np.random.default_rng(0)
    samples = [_sample(rng) for _ in range(3)]
    ev = OccEvaluator(ray_iou=False, pc_range=RANGE, parts=['ForecastIoU', 'ForecastMotionSplit'])
    for s in samples:
        ev.add(pred=s['gt'], gt=s['gt'], **{k: v for k, v in s.items() if k != 'gt'})
    got = ev.summary('none')['forecast_split']
    static = [c for c in range(17) if c not in DYNAMIC_CLASSES]
    grid = OccGrid(RANGE, 1.0)
    ref_avg = {}
    for h in range(H):
        whole, moving = [], []
        for s in samples:
            fut2cur = np.linalg.inv(s['ego2global']) @ s['future_ego2global'][h]
            region = _loop_moving(s['gt'], s['gt_future'][h], fut2cur)
            np.testing.assert_array_equal(moving_voxels(s['gt'], s['gt_future'][h], fut2cur, grid), region)
            p, g = s['pred_future'][h].ravel().tolist(), s['gt_future'][h].ravel().tolist()
            whole += list(zip(p, g))
            moving += [pg for pg, m in zip(zip(p, g), region.ravel().tolist()) if m]
        per, _ = _loop_ious(whole)
        mper, miou_geo = _loop_ious(moving)
        name = f'{(h + 1) * 0.5:g}s'
        ref = {'static_miou': _mean(per, static), 'dynamic_miou': _mean(per, DYNAMIC_CLASSES),
               'moving_miou': _mean(mper, range(17)), 'moving_iou': 100 * miou_geo}
        for k, v in ref.items():
            assert got[name][k] == pytest.approx(v), (name, k)
        assert got[name]['moving_voxels'] == len([1 for _, g in moving if g < 18])
        assert 0 < got[name]['moving_voxels'] < len(whole) // 2       # a real, strict subset
        if name in ('1s',):
            ref_avg = ref
    assert got['avg']['horizons'] == ['1s'] and got['avg']['dynamic_miou'] == pytest.approx(ref_avg['dynamic_miou'])


def test_static_world_has_no_moving_voxels_and_ego_warp_is_perfect_there():
    """The current frame moved by a whole number of voxels: ego-warp of it is the future exactly."""
    rng = np.random.default_rng(1)
    cur = np.where(rng.random(SHAPE) < 0.5, FREE, rng.integers(0, 17, SHAPE)).astype(np.uint8)
    pose, fut_pose = _pose(10, 5, 0), _pose(12, 5, 0)           # 2 m forward
    fut = np.full(SHAPE, FREE, np.uint8)
    fut[:-2] = cur[2:]
    region = moving_voxels(cur, fut, np.linalg.inv(pose) @ fut_pose, OccGrid(RANGE, 1.0))
    assert not region.any()
    moved = fut.copy()
    moved[3, 3, 1] = 4 if fut[3, 3, 1] != 4 else 7            # a car (or pedestrian) appears
    region = moving_voxels(cur, moved, np.linalg.inv(pose) @ fut_pose, OccGrid(RANGE, 1.0))
    assert region.sum() == 1 and region[3, 3, 1]


def test_occ_metric_reads_the_poses_from_the_batch():
    rng = np.random.default_rng(2)
    s = _sample(rng)
    metric = OccMetric(mask='none', ray_iou=False, pc_range=RANGE, parts=['VoxelIoU', 'ForecastMotionSplit'])
    batch = {'voxel_semantics': torch.from_numpy(s['gt'])[None],
             'future_semantics': torch.from_numpy(s['gt_future'])[None],
             'ego2global': torch.from_numpy(s['ego2global'])[None],
             'future_ego2global': torch.from_numpy(s['future_ego2global'])[None], 'sample_token': ['t0']}
    metric.process(batch, [{'sample_token': 't0', 'semantics': s['gt'], 'semantics_future': s['pred_future']}])
    flat = metric.compute_metrics(metric.results)
    ev = OccEvaluator(ray_iou=False, pc_range=RANGE, parts=['ForecastMotionSplit'])
    ev.add(pred=s['gt'], **s)
    ref = ev.flat_metrics('none')
    assert flat['forecast_dynamic_miou_1s'] == pytest.approx(ref['forecast_dynamic_miou_1s'])
    assert math.isfinite(flat['forecast_moving_miou_0.5s'])


def test_moving_voxels_are_where_the_ego_warp_baseline_is_wrong():
    """Why ego-warp scores exactly 0 moving-voxel mIoU (docs/WORLD.md): the region is, by definition,
    where the current frame moved by the ego motion disagrees with the future. The baseline model
    (``EgoWarpForecaster``, the same warp) is wrong on every voxel of it, the true future right on
    every one, and a forecast that leaves known anchor cells unchanged scores 0 there too."""
    from occ.models.world import EgoWarpForecaster
    rng = np.random.default_rng(3)
    s = _sample(rng)
    model = EgoWarpForecaster(num_future=H, pc_range=RANGE, voxel_size=1.0)
    warp = model.forecast(torch.from_numpy(s['gt'])[None], torch.from_numpy(s['ego2global'])[None],
                          torch.from_numpy(s['future_ego2global'])[None])[0].numpy()
    grid = OccGrid(RANGE, 1.0)
    for h in range(H):
        fut2cur = np.linalg.inv(s['ego2global']) @ s['future_ego2global'][h]
        region = moving_voxels(s['gt'], s['gt_future'][h], fut2cur, grid)
        assert region.sum() > 0
        assert (warp[h][region] != s['gt_future'][h][region]).all()
    scores = {}
    for name, pred in (('ego_warp', warp), ('truth', np.where(s['gt_future'] < 18, s['gt_future'], FREE))):
        ev = OccEvaluator(ray_iou=False, pc_range=RANGE, parts=['ForecastMotionSplit'])
        ev.add(pred=s['gt'], **dict(s, pred_future=pred.astype(np.uint8)))
        scores[name] = ev.summary('none')['forecast_split']
    for h in ('0.5s', '1s', '1.5s'):
        assert scores['ego_warp'][h]['moving_miou'] == 0.0
        assert scores['truth'][h]['moving_miou'] == pytest.approx(100.0)
        assert scores['truth'][h]['moving_iou'] in (None, pytest.approx(100.0))
