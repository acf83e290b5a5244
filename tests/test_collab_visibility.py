"""Cooperative visibility (issue 13 part 2): ``mask_camera_coop`` against a loop reference on a
hand-made two-vehicle scene (an object behind a wall for the ego, in view of the neighbour), the
three evaluation regions, and the labels a generated cooperative world writes."""
import math
import os

import numpy as np
import pytest
from fixtures_data import tiny_world  # noqa: F401

from occ.constants import CLASS_NAMES, FREE
from occ.data.synthetic.coop_labels import cooperative_camera_mask
from occ.data.synthetic.frame import CAMERA_OCCLUDERS, _ray_strides, sensor_masks
from occ.data.synthetic.sensors import camera_rig, lidar2ego, lidar_rays, pixel_rays
from occ.geometry import OccGrid

GRID = OccGrid((-10.0, -10.0, -1.0, 10.0, 10.0, 3.0), 0.8)       # 25 x 25 x 5, cell centres on x = y = 0
IMAGE = (16, 44)
CAR = CLASS_NAMES.index('car')


def _box(x, y, z):
    """bool grid of the voxels whose centre lies in the closed box [x0, x1] x [y0, y1] x [z0, z1]."""
    c = GRID.centers().astype(np.float64)
    inside = np.ones(GRID.shape, bool)
    for a, (lo, hi) in enumerate((x, y, z)):
        inside &= (c[..., a] > lo - 1e-3) & (c[..., a] < hi + 1e-3)
    return inside


def _scene():
    """Ground everywhere; a 2.6 m high building x 1.6..6.4 m (seven voxels deep: more than the camera
    mask sees through, ``CAMERA_OCCLUDERS``), y -4..4 m; a car-sized block behind it (x 7.2..8.8 m,
    1.4 m high)."""
    occ = np.zeros(GRID.shape, bool)
    occ[:, :, 1] = True                                               # the layer holding z = 0
    occ |= _box((1.6, 6.4), (-4.0, 4.0), (0.0, 2.6))
    car = _box((7.2, 8.8), (-0.8, 0.8), (0.0, 1.0))
    return occ | car, car


def _neighbour():
    """The neighbour stands 8 m beside the car (x = 8, y = 8), facing -y (towards it): ego <- neighbour."""
    yaw = -math.pi / 2
    m = np.eye(4)
    m[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    m[:2, 3] = (8.0, 8.0)
    return m


# ------------------------------------------------------------------ loop reference
def _ray_marks(occ, origins, dirs, ground=None):
    """Voxels each ray passes through up to and including its first occupied one; rays leaving the
    grid without a hit mark nothing; a ray whose first occupied voxel is ``ground`` marks only it.
    Not a voxel walk: every crossing of every grid plane is computed, sorted along the ray, and each
    piece between two crossings names its voxel by its midpoint."""
    v, lo, shape = 0.8, GRID.lower, np.array(occ.shape)
    origins = np.broadcast_to(origins, dirs.shape).astype(np.float64)
    crossings = [np.zeros((len(dirs), 1))]
    for a in range(3):
        planes = lo[a] + np.arange(shape[a] + 1) * v
        with np.errstate(divide='ignore', invalid='ignore'):
            t = (planes[None] - origins[:, a:a + 1]) / dirs[:, a:a + 1]
        crossings.append(np.where(np.isfinite(t) & (t > 0), t, np.inf))
    t = np.sort(np.concatenate(crossings, 1), 1)
    t0, t1 = t[:, :-1], t[:, 1:]
    piece = np.isfinite(t1) & (t1 > t0 + 1e-12)
    mid = np.where(piece, (t0 + np.where(piece, t1, 0)) / 2, 0)
    idx = np.floor((origins[:, None] + dirs[:, None] * mid[..., None] - lo) / v).astype(np.int64)
    inside = piece & np.all((idx >= 0) & (idx < shape), -1)
    flat = np.ravel_multi_index(tuple(np.clip(idx, 0, shape - 1).transpose(2, 0, 1)), occ.shape)
    occupied = inside & occ.reshape(-1)[flat]
    first = np.where(occupied.any(1), occupied.argmax(1), -1)
    keep = inside & (np.arange(inside.shape[1])[None] <= first[:, None])
    if ground is not None:
        hit_flat = flat[np.arange(len(first)), np.maximum(first, 0)]
        on_ground = (first >= 0) & ground.reshape(-1)[hit_flat]
        keep &= ~on_ground[:, None] | (np.arange(inside.shape[1])[None] == first[:, None])
    marks = np.zeros(occ.size, bool)
    marks[flat[keep]] = True
    return marks.reshape(occ.shape)


def _clear_sight(occ, origin, flat_index):
    """The camera mask's rule for an occupied voxel, one voxel at a time: the segment from the sensor
    to the voxel's nearest point, sampled every half voxel, enters at most ``CAMERA_OCCLUDERS``
    occupied voxels before the last 1.5."""
    v = 0.8
    ijk = np.array(np.unravel_index(flat_index, occ.shape))
    vmin = GRID.lower + ijk * v
    target = np.clip(origin, vmin + 0.05 * v, vmin + 0.95 * v)
    dist = np.linalg.norm(target - origin)
    t = (np.arange(int(np.ceil(max(dist - 1.5 * v, 0) / (v / 2)))) + 0.5) * (v / 2)
    t = t[t < dist - 1.5 * v]
    pts = origin + (target - origin) / max(dist, 1e-9) * t[:, None]
    idx = np.clip(np.floor((pts - GRID.lower) / v).astype(int), 0, np.array(occ.shape) - 1)
    entered = {tuple(i) for i in idx if occ[tuple(i)]}
    return len(entered) <= CAMERA_OCCLUDERS


def _reference_masks(occ, placement, ground):
    """(mask_lidar, mask_camera) of a vehicle at ``placement`` (its frame -> the grid's), by loops."""
    pix_stride, col_stride = _ray_strides(GRID, IMAGE)
    l2g = placement @ lidar2ego()
    lidar = _ray_marks(occ, l2g[:3, 3], lidar_rays(column_stride=col_stride)[0] @ l2g[:3, :3].T, ground)
    rig = [dict(cam, cam2ego=placement @ cam['cam2ego']) for cam in camera_rig(IMAGE)]
    cam = np.zeros_like(lidar)
    for c in rig:
        d = pixel_rays(c['intrinsics'], c['height'], c['width'], pix_stride) @ c['cam2ego'][:3, :3].T
        cam |= _ray_marks(occ, c['cam2ego'][:3, 3], d)
    centres = GRID.centers().reshape(-1, 3)
    rig_centre = np.mean([c['cam2ego'][:3, 3] for c in rig], 0)
    for i in np.flatnonzero(occ):
        lidar.reshape(-1)[i] = True                         # every labelled voxel holds a LiDAR return
        seen_by_a_camera = False
        for c in rig:
            p = np.linalg.inv(c['cam2ego']) @ np.append(centres[i], 1.0)
            u, v, w = c['intrinsics'] @ p[:3]
            z = max(w, 1e-6)
            seen_by_a_camera |= p[2] > 0.1 and 0 <= u / z < c['width'] and 0 <= v / z < c['height']
        if seen_by_a_camera and (ground.reshape(-1)[i] or _clear_sight(occ, rig_centre, i)):
            cam.reshape(-1)[i] = True
    return lidar, cam & lidar


def test_mask_camera_coop_matches_a_loop_reference_and_sees_behind_the_wall():
    occ, car = _scene()
    ground = np.zeros_like(occ)
    ground[:, :, 1] = occ[:, :, 1]
    ground &= ~car                                                     # the car's voxels are car, not road
    k2e = _neighbour()
    ego_lidar, ego_cam = sensor_masks(occ, GRID, IMAGE, ground=ground)
    ref_lidar, ref_cam = _reference_masks(occ, np.eye(4), ground)
    assert np.array_equal(ego_lidar, ref_lidar) and np.array_equal(ego_cam, ref_cam)
    coop = cooperative_camera_mask(ego_cam, [occ], [k2e], GRID, IMAGE, [ground])
    ref_coop = ref_cam | _reference_masks(occ, k2e, ground)[1]
    assert np.array_equal(coop, ref_coop)
    # The car is behind the wall for the ego and in plain view of the neighbour.
    assert not (ego_cam & car).any()
    assert (coop & car).sum() >= 4
    assert ego_cam.sum() > 50 and (coop & ~ego_cam).sum() > 50            # a real neighbour-only region
    assert np.array_equal(cooperative_camera_mask(ego_cam, [], [], GRID, IMAGE), ego_cam)


def test_coop_regions_metric_part_counts_hand_made_regions():
    from occ.evaluation import OccEvaluator
    gt = np.full((4, 4, 2), FREE, np.uint8)
    gt[0, :, 0] = CAR                    # a car row, seen by the ego
    gt[3, :, 0] = CAR                    # a car row only the neighbour sees
    pred = gt.copy()
    pred[3, :2, 0] = FREE                # half the neighbour-only car missed
    ego = np.zeros_like(gt)
    ego[:2] = 1
    coop = ego.copy()
    coop[3] = 1
    ev = OccEvaluator(ray_iou=False, pc_range=(-1.6, -1.6, -1.0, 1.6, 1.6, 0.6), parts=['VoxelIoU', 'CoopRegions'])
    ev.add_result(ev.frame_result(pred=pred, gt=gt, mask_camera=ego, mask_lidar=ego, mask_camera_coop=coop))
    s = ev.summary()
    assert s['ego_visible']['per_class']['car'] == 100.0 and s['ego_visible']['voxels'] == 16
    nb = s['neighbour_only']
    assert nb['voxels'] == 8 and nb['per_class']['car'] == pytest.approx(50.0)      # 2 of 4 car voxels
    assert nb['occupied_recall'] == pytest.approx(50.0)
    assert s['coop_union']['voxels'] == 24 and s['coop_union']['per_class']['car'] == pytest.approx(100 * 6 / 8)
    assert ev.flat_metrics()['miou_neighbour_only'] == pytest.approx(nb['miou'])
    # frames without mask_camera_coop are not scored by the part
    ev2 = OccEvaluator(ray_iou=False, pc_range=(-1.6, -1.6, -1.0, 1.6, 1.6, 0.6), parts=['CoopRegions'])
    ev2.add_result(ev2.frame_result(pred=pred, gt=gt, mask_camera=ego))
    assert 'neighbour_only' not in ev2.summary()


def test_coop_labels_io_and_reduction(tmp_path):
    from occ.data.dataset import reduce_to_grid
    from occ.data.occ3d_io import OccFileError, load_occ3d_labels, save_occ3d_labels
    rng = np.random.default_rng(0)
    sem = rng.integers(0, 18, (4, 4, 2)).astype(np.uint8)
    coop_sem = sem.copy()
    coop_sem[:2, :2, :] = 3                                          # one block only a neighbour labels
    m = rng.integers(0, 2, (4, 4, 2)).astype(np.uint8)
    path = str(tmp_path / 'labels.npz')
    save_occ3d_labels(path, sem, m, m, semantics_coop=coop_sem, mask_camera_coop=m | 1)
    lab = load_occ3d_labels(path, coop=True)
    assert np.array_equal(lab['semantics_coop'], coop_sem) and lab['mask_camera_coop'].all()
    assert 'semantics_coop' not in load_occ3d_labels(path)
    red = reduce_to_grid(lab, (2, 2, 1), path)
    assert red['semantics_coop'][0, 0, 0] == 3                      # majority vote, not a mask's max
    assert red['mask_camera_coop'].all()
    plain = str(tmp_path / 'plain.npz')
    save_occ3d_labels(plain, sem, m, m)
    with pytest.raises(OccFileError, match='plain.npz.*mask_camera_coop'):
        load_occ3d_labels(plain, coop=True)
    with pytest.raises(ValueError, match='together'):
        save_occ3d_labels(plain, sem, m, m, semantics_coop=sem)


@pytest.mark.slow
def test_generated_cooperative_world_writes_coop_labels_the_dataset_loads(tiny_world):
    from occ.data import OccDataset
    from occ.data.occ3d_io import load_occ3d_labels
    labs = [load_occ3d_labels(os.path.join(dp, 'labels.npz'), coop=True)
            for dp, _, files in os.walk(os.path.join(tiny_world, 'gts')) if 'labels.npz' in files]
    assert len(labs) == 4                      # 2 keyframes x 2 connected vehicles
    for lab in labs:
        ego, coop = lab['mask_camera'].astype(bool), lab['mask_camera_coop'].astype(bool)
        assert (coop >= ego).all() and (coop & ~ego).sum() > 0.1 * ego.sum()
        assert (lab['semantics'] == lab['semantics_coop'])[ego].mean() > 0.99   # the ego's view hardly changes
    info = os.path.join(tiny_world, 'occ_infos_train.pkl')
    if not os.path.isfile(info):
        info = os.path.join(tiny_world, 'occ_infos_val.pkl')
    ds = OccDataset(info, img_size=(32, 64), coop_labels=True)
    item = ds[0]
    assert item['mask_camera_coop'].shape == item['mask_camera'].shape
    assert (item['mask_camera_coop'].bool() >= item['mask_camera'].bool()).all()
    plain = OccDataset(info, img_size=(32, 64))[0]
    assert 'mask_camera_coop' not in plain and plain['voxel_semantics'].shape == item['voxel_semantics'].shape
