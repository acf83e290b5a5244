"""Region helpers of benchmarks/temporal_ablation.py (moving objects, box voxels)."""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'benchmarks'))

from temporal_ablation import box_mask, combine, combined_table, main, moving_instances  # noqa: E402

from occ.grid import OccGrid  # noqa: E402


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


def test_combine_pools_seeds_per_config(tmp_path):
    import json

    def row(name, miou, ms):
        return dict(name=name, config=f'configs/ablations/{name}.py', miou=miou, iou=0.5, miou_occluded=miou / 2,
                    recall_occluded=0.9, miou_moving=0.1, ms_per_frame=ms, train_s=100.0)
    a, b = tmp_path / 'a.json', tmp_path / 'b.json'
    a.write_text(json.dumps([row('temporal_t2', 0.20, 150.0), row('temporal_t0', 0.10, 100.0)]))
    b.write_text(json.dumps([row('temporal_t0', 0.14, 110.0), row('temporal_t2', 0.16, 170.0)]))
    rows = combine([str(a), str(b)])
    assert [(r['name'], r['T'], r['n']) for r in rows] == [('temporal_t0', 0, 2), ('temporal_t2', 2, 2)]
    t0, t2 = rows
    assert math.isclose(t0['miou'], 0.12) and math.isclose(t0['miou_spread'], 0.04)
    assert math.isclose(t2['ms_per_frame'], 160.0) and math.isclose(t2['ms_per_frame_spread'], 20.0)
    md = combined_table(rows)
    assert '| temporal_t0 | 0 | 2 | 12.00 ± 2.00 |' in md
    assert main(['--combine', str(a), str(b), '--work-root', str(tmp_path / 'out')]) == 0
    assert (tmp_path / 'out' / 'temporal_combined.png').read_bytes()[:4] == b'\x89PNG'
    b.write_text(json.dumps([dict(name='temporal_t0', config='x', error='training exit 1')]))
    try:
        combine([str(a), str(b)])
    except ValueError as e:
        assert 'b.json' in str(e) and 'temporal_t0' in str(e)
    else:
        raise AssertionError('a failed run must not be averaged silently')
