"""occ.evaluation.regions: occluded voxels, moving instances and box voxels against loop references."""
import math

import numpy as np

from occ.constants import FREE
from occ.evaluation.regions import box_mask, moving_instances, occluded_mask
from occ.geometry import OccGrid


def _info(token, t, ego_x, centers, prev='', nxt=''):
    e = np.eye(4, dtype=np.float32)
    e[0, 3] = ego_x
    n = len(centers)
    return dict(token=token, timestamp=t, prev=prev, next=nxt, ego2global=e,
                boxes=dict(center=np.asarray(centers, np.float32), size=np.ones((n, 3), np.float32),
                           yaw=np.zeros(n, np.float32), instance_token=np.array(['car', 'pole'][:n])))


def test_moving_instances_use_global_motion():
    # the ego drives 5 m in 0.5 s; the parked pole stays put in the world (moves -5 m in ego),
    # the car keeps pace with the ego (fixed in ego, 10 m/s in the world)
    a = _info('a', 0, 0.0, [[10, 0, 0], [20, 3, 0]], nxt='b')
    b = _info('b', 500_000, 5.0, [[10, 0, 0], [15, 3, 0]], prev='a')
    mov = moving_instances([a, b], min_speed=0.5)
    assert mov == {'a': {'car'}, 'b': {'car'}}


def test_box_mask_matches_point_loop():
    g = OccGrid((-4.0, -4.0, -1.0, 4.0, 4.0, 1.0), 0.5)
    centers = g.centers().astype(np.float64)
    info = dict(boxes=dict(center=np.array([[1.0, -0.5, 0.0]]), size=np.array([[1.2, 3.0, 1.0]]),
                           yaw=np.array([math.radians(30)]), instance_token=np.array(['x'])))
    got = box_mask(info, {'x'}, centers, margin=0.1)
    ref = np.zeros(g.shape, bool)
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    for idx in np.ndindex(*g.shape):
        p = centers[idx] - np.array([1.0, -0.5, 0.0])
        # rotate the point into the box frame by -yaw
        bx, by = c * p[0] + s * p[1], -s * p[0] + c * p[1]
        ref[idx] = abs(bx) <= 1.5 + 0.1 and abs(by) <= 0.6 + 0.1 and abs(p[2]) <= 0.5 + 0.1
    assert ref.sum() > 10 and np.array_equal(got, ref)
    assert not box_mask(info, set(), centers, 0.1).any()


def test_occluded_mask_matches_voxel_loop():
    rng = np.random.default_rng(0)
    sem = rng.choice(np.array([0, 4, FREE, 255], np.uint8), size=(5, 4, 3))
    cam = rng.integers(0, 2, size=sem.shape).astype(np.uint8)
    ref = np.zeros(sem.shape, bool)
    for idx in np.ndindex(*sem.shape):
        ref[idx] = int(sem[idx]) < FREE and not cam[idx]
    got = occluded_mask(sem, cam)
    assert got.dtype == bool and ref.any() and np.array_equal(got, ref)
    try:
        occluded_mask(sem, cam[:-1])
    except ValueError as e:
        assert 'mask_camera' in str(e)
    else:
        raise AssertionError('a shape mismatch must raise')
