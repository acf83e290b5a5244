"""RayIoU (SparseOcc protocol): ray set, exact traversal vs a loop reference, known-answer scenes, origins."""
import math

import numpy as np
import pytest
import torch

from occ.constants import FREE
from occ.evaluation import (RayCaster, RayIoUAccumulator, cast_rays, lidar_pitch_angles,
                            lidar_ray_directions, origins_from_infos, select_origins)
from occ.geometry import OccGrid

GRID = OccGrid((-10.0, -10.0, -1.0, 10.0, 10.0, 5.0), 0.5)    # 40 x 40 x 12, 0.5 m voxels


def _ref_cast(sem, origin, d, grid):
    """One ray, plain Python: merge all plane crossings sorted by distance (z before y before x
    on ties, SparseOcc's rule), walk the voxels, return (label, exit distance in metres)."""
    o = [(origin[a] - grid.pc_range[a]) / grid.voxel_size for a in range(3)]
    shape = sem.shape
    events = []
    for a in range(3):
        if d[a] > 0:
            planes = range(math.floor(o[a]) + 1, shape[a] + 1)
        elif d[a] < 0:
            planes = range(math.floor(o[a]), -1, -1)
        else:
            planes = []
        events += [((p - o[a]) / d[a], -a, a) for p in planes]
    events.sort()
    v = [math.floor(x) for x in o]
    for t, _, a in events:
        if sem[v[0], v[1], v[2]] < FREE:
            return int(sem[v[0], v[1], v[2]]), t * grid.voxel_size
        v[a] += 1 if d[a] > 0 else -1
        if not (0 <= v[a] < shape[a]):
            return FREE, t * grid.voxel_size
    raise AssertionError('ray never left the grid')


def test_ray_set_is_sparseocc_39_by_360():
    p = lidar_pitch_angles()
    assert len(p) == 39
    assert p[0] == pytest.approx(-math.pi / 4) and p[1] == pytest.approx(-(math.pi / 2 - math.atan(2)))
    assert 0.21 <= p[-1] < 0.23 and p[-2] < 0.21
    np.testing.assert_allclose(np.diff(p[9:]), p[9] - p[8])   # constant spacing after k = 10
    d = lidar_ray_directions()
    assert d.shape == (39 * 360, 3)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(39 * 360, dtype=torch.float64))
    # pitch-major: the first 360 rays share pitch -45 degrees, azimuth 0 points along +x
    torch.testing.assert_close(d[0], torch.tensor([math.cos(math.pi / 4), 0, -math.sin(math.pi / 4)],
                                                  dtype=torch.float64))


def test_vectorised_cast_matches_loop_reference_on_random_scenes():
    rng = np.random.default_rng(0)
    sem = np.where(rng.random(GRID.shape) < 0.97, FREE, rng.integers(0, 17, GRID.shape)).astype(np.uint8)
    origins = rng.uniform([-8, -8, 0], [8, 8, 4], (3, 3))
    dirs = rng.normal(size=(60, 3))
    dirs = np.concatenate([dirs / np.linalg.norm(dirs, axis=1, keepdims=True),
                           [[1, 0, 0], [0, -1, 0], [0, 0, 1], [0.6, 0.8, 0]]])
    labels, depths = cast_rays(sem, origins, dirs, GRID)
    i = 0
    for o in origins:
        for d in dirs:
            lab, dep = _ref_cast(sem, o, d, GRID)
            assert labels[i].item() == lab and depths[i].item() == pytest.approx(dep, abs=1e-9), (o, d)
            i += 1
    # casting two grids in one walk equals casting them one by one
    other = np.roll(sem, 3, 0)
    (l1, d1), (l2, d2) = RayCaster(origins, dirs, GRID).cast(sem, other)
    l3, d3 = cast_rays(other, origins, dirs, GRID)
    assert torch.equal(l1, labels) and torch.equal(l2, l3) and torch.allclose(d2, d3)


def _wall(x_index, cls=15):
    sem = np.full(GRID.shape, FREE, np.uint8)
    sem[x_index] = cls                                      # a wall across all y, z
    return sem


def test_wall_at_known_distance():
    # Origin at x = 0.25 m; wall voxel x-index 30 spans [5, 5.5) m; the ray leaves it at 5.5 m.
    labels, depths = cast_rays(_wall(30), [[0.25, 0.25, 1.25]], [[1, 0, 0], [-1, 0, 0]], GRID)
    assert labels.tolist() == [15, FREE]
    assert depths[0].item() == pytest.approx(5.5 - 0.25)
    assert depths[1].item() == pytest.approx(0.25 + 10.0)   # leaves the grid at x = -10 m


def _ray_iou_of(pred, gt, dirs, origins=((0.25, 0.25, 1.25),)):
    acc = RayIoUAccumulator()
    acc.add(pred, gt, np.asarray(origins), GRID, directions=np.asarray(dirs, np.float64))
    return acc


def test_shift_of_1p5m_is_tp_at_2_and_4_m_but_not_1_m():
    acc = _ray_iou_of(_wall(33), _wall(30), [[1, 0, 0]])     # prediction 3 voxels = 1.5 m too far
    m = acc.metrics()
    assert acc.gt_cnt[15] == 1 and acc.pred_cnt[15] == 1
    assert acc.tp[:, 15].tolist() == [0, 1, 1]
    assert m['ray_iou@1'] == 0.0 and m['ray_iou@2'] == 1.0 and m['ray_iou@4'] == 1.0
    assert m['ray_iou'] == pytest.approx(2 / 3)
    assert m['per_class'][15] == pytest.approx(2 / 3) and np.isnan(m['per_class'][4])


def test_wrong_class_is_never_a_true_positive():
    acc = _ray_iou_of(_wall(30, cls=4), _wall(30, cls=15), [[1, 0, 0]])
    m = acc.metrics()
    assert acc.tp.sum() == 0 and acc.gt_cnt[15] == 1 and acc.pred_cnt[4] == 1
    assert m['ray_iou'] == 0.0                    # manmade 0 (missed), car 0 (false positive)


def test_rays_with_free_gt_are_dropped():
    gt = _wall(30)
    pred = gt.copy()
    pred[5] = 4                                   # an object behind the origin, where GT is free
    acc = _ray_iou_of(pred, gt, [[1, 0, 0], [-1, 0, 0], [0, 0, 1]])
    assert acc.gt_cnt.sum() == 1                  # only the +x ray hits something in GT
    assert acc.pred_cnt.sum() == 1 and acc.pred_cnt[4] == 0
    assert acc.metrics()['ray_iou'] == 1.0


def test_counts_pool_over_frames_before_the_mean():
    a = _ray_iou_of(_wall(33), _wall(30), [[1, 0, 0]])       # frame 1: off by 1.5 m
    a.add(_wall(30), _wall(30), np.array([[0.25, 0.25, 1.25]]), GRID,
          directions=np.array([[1.0, 0, 0], [0.8, 0.6, 0]]))  # frame 2: two exact rays
    # pooled: gt 3, pred 3; TP@1 = 2 -> 2/4, TP@2 = TP@4 = 3 -> 1
    assert a.metrics()['ray_iou'] == pytest.approx((0.5 + 1 + 1) / 3)


def test_standard_rays_on_a_scene_with_ground_and_walls():
    gt = np.full(GRID.shape, FREE, np.uint8)
    gt[:, :, 0] = 11
    gt[36:, :, :] = 15
    gt[:4, :, :] = 16
    (gl, _), (pl, _) = RayCaster([[0.0, 0.0, 1.8]], lidar_ray_directions(), GRID).cast(gt, gt)
    assert torch.equal(gl, pl)
    assert set(torch.unique(gl).tolist()) <= {11, 15, 16, FREE}
    acc = _ray_iou_of(gt, gt, lidar_ray_directions().numpy(), origins=[[0.0, 0.0, 1.8]])
    assert acc.metrics()['ray_iou'] == 1.0 and acc.gt_cnt[11] > 0


def test_origins_follow_sparseocc_selection():
    # 12 frames driving along +x at 10 m per frame; LiDAR 1 m ahead of and 2 m above the ego.
    infos = []
    for k in range(12):
        e2g = np.eye(4, dtype=np.float32)
        e2g[0, 3] = 100.0 + 10.0 * k
        l2e = np.eye(4, dtype=np.float32)
        l2e[:3, 3] = [1.0, 0.0, 2.0]
        infos.append(dict(token=f't{k}', scene_name='s', timestamp=k, ego2global=e2g, lidar2ego=l2e))
    grid = OccGrid()                                # +-40 m
    out = origins_from_infos(infos[::-1], grid)     # order of the list does not matter
    # frame 5 sees frames 2..8 (x = -29 .. 31 m; +-39 m keeps them), itself at the LiDAR position
    o5 = out['t5']
    np.testing.assert_allclose(o5[:, 0], [-29, -19, -9, 1, 11, 21, 31])
    np.testing.assert_allclose(o5[:, 1:], [[0, 2]] * 7)
    # more than 8 candidates are thinned evenly to 8
    many = np.stack([np.linspace(-35, 35, 15), np.zeros(15), np.full(15, 2.0)], 1)
    sel = select_origins(many, grid)
    assert len(sel) == 8 and sel[0, 0] == -35 and sel[-1, 0] == 35
    with pytest.raises(ValueError, match='inside the grid'):
        cast_rays(_wall(30), [[50.0, 0, 1]], [[1, 0, 0]], GRID)
