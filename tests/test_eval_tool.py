"""tools/eval_occ.py end to end on a tiny Occ3D fixture: outputs, inputs, and the errors users hit."""
import csv
import glob
import importlib.util
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from occ.constants import CLASS_NAMES, FREE
from occ.data.occ3d_io import load_occ3d_labels, save_occ3d_labels, save_prediction

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
REAL = sorted(glob.glob(os.path.join(ROOT, 'tests', 'fixtures', 'occ3d-sample', '*', 'labels.npz')))
RANGE = ['-4', '-4', '-1', '4', '4', '2.2']          # 20 x 20 x 8 voxels of 0.4 m
SHAPE = (20, 20, 8)

_spec = importlib.util.spec_from_file_location('eval_occ', os.path.join(ROOT, 'tools', 'eval_occ.py'))
eval_occ = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eval_occ)


def _scene(k):
    sem = np.full(SHAPE, FREE, np.uint8)
    sem[:, :, 0] = 11
    sem[16:, :, :5] = 15
    sem[6 + k:8 + k, 9:11, 1:3] = 4                  # a car moving along x
    cam = np.zeros(SHAPE, np.uint8)
    cam[:, :, :4] = 1
    return sem, cam, np.ones(SHAPE, np.uint8)


@pytest.fixture
def fixture(tmp_path):
    """4 frames of one scene: GT, perfect predictions (frame t2 with a wrong car), an info file."""
    gt_root, pred = tmp_path / 'data', tmp_path / 'pred'
    infos = []
    for k in range(4):
        tok = f't{k}'
        sem, cam, lid = _scene(k)
        save_occ3d_labels(str(gt_root / 'gts' / 'scene-0001' / tok / 'labels.npz'), sem, lid, cam)
        p = sem.copy()
        if k == 2:
            p[p == 4] = 10                            # car predicted as truck
        future = np.stack([_scene(k + h)[0] for h in (1, 2)])
        save_prediction(str(pred / f'{tok}.npz'), p, future, bytes_sent=np.array([100.0, 300.0]))
        e2g = np.eye(4, dtype=np.float32)
        e2g[0, 3] = float(k)
        infos.append(dict(token=tok, scene_name='scene-0001', timestamp=k * 500000, frame_idx=k,
                          ego2global=e2g, lidar2ego=np.eye(4, dtype=np.float32),
                          occ_path=f'gts/scene-0001/{tok}/labels.npz'))
    info = tmp_path / 'occ_infos_val.pkl'
    with open(info, 'wb') as f:
        pickle.dump({'metadata': {'dataroot': str(gt_root),
                                  'grid': {'pc_range': [float(v) for v in RANGE], 'voxel_size': 0.4}},
                     'infos': infos}, f)
    return gt_root, pred, info, tmp_path


def _run(*args):
    return eval_occ.main([str(a) for a in args])


def test_json_csv_and_table(fixture, capsys):
    gt, pred, _, tmp = fixture
    rc = _run('--gt', gt, '--pred', pred, '--pc-range', *RANGE, '--json', tmp / 'r.json',
              '--csv', tmp / 'r.csv', '--confusion-png', tmp / 'c.png', '--workers', 2)
    assert rc == 0
    r = json.loads((tmp / 'r.json').read_text())
    assert {'miou', 'iou', 'per_class', 'ray_iou', 'by_mask'} <= set(r)
    assert list(r['per_class']) == list(CLASS_NAMES[:FREE])
    # car: 3 of 4 frames right, the 4th predicted as truck -> 3/4 (camera mask covers z<4)
    assert r['per_class']['car'] == pytest.approx(75.0)
    assert r['per_class']['truck'] == 0.0 and r['per_class']['bus'] is None
    assert r['miou'] == pytest.approx((100 + 100 + 75 + 0) / 4)
    assert r['iou'] == 100.0 and r['num_frames'] == 4 and r['num_missing'] == 0
    rows = dict(csv.reader(open(tmp / 'r.csv')))
    assert float(rows['miou']) == pytest.approx(r['miou']) and 'IoU_car' in rows
    assert rows['IoU_bus'] == ''                      # undefined, not 0
    assert (tmp / 'c.png').read_bytes()[:4] == b'\x89PNG'
    out = capsys.readouterr().out
    assert 'mIoU / RayIoU' in out and 'car' in out and 'RayIoU@1/2/4' in out
    assert 'pass --info to score forecasting' in out and 'forecast' not in r


def test_info_file_gives_origins_forecast_and_bytes(fixture):
    gt, pred, info, tmp = fixture
    assert _run('--info', info, '--pred', pred, '--json', tmp / 'r.json', '--workers', 1) == 0
    r = json.loads((tmp / 'r.json').read_text())
    assert r['ray_origins'].startswith('info file')
    # future predictions equal the next keyframes' GT: perfect where the scene has them
    assert r['forecast']['0.5s']['miou'] == 100.0 and r['forecast']['1s']['iou'] == 100.0
    assert r['bytes_sent'] == pytest.approx(200.0)   # mean over the two agents, then frames


def test_submission_files_match_folder(fixture):
    gt, pred, _, tmp = fixture
    toks = [f't{k}' for k in range(4)]
    sems = {t: np.load(pred / f'{t}.npz')['semantics'] for t in toks}
    np.savez_compressed(tmp / 'sub.npz', **sems)
    with open(tmp / 'sub.pkl', 'wb') as f:
        pickle.dump({'results': {t: {'semantics': s} for t, s in sems.items()}}, f)
    res = []
    for p in (pred, tmp / 'sub.npz', tmp / 'sub.pkl'):
        assert _run('--gt', gt, '--pred', p, '--pc-range', *RANGE, '--no-ray-iou',
                    '--json', tmp / 'r.json') == 0
        res.append(json.loads((tmp / 'r.json').read_text()))
    assert res[0]['miou'] == res[1]['miou'] == res[2]['miou']
    assert 'ray_iou' not in res[0]


def test_missing_prediction_is_an_error_unless_allowed(fixture, capsys):
    gt, pred, _, tmp = fixture
    os.remove(pred / 't1.npz')
    assert _run('--gt', gt, '--pred', pred, '--no-ray-iou', '--pc-range', *RANGE) == 2
    err = capsys.readouterr().err
    assert '1 of 4 token(s) have no prediction' in err and 't1' in err
    assert _run('--gt', gt, '--pred', pred, '--no-ray-iou', '--pc-range', *RANGE,
                '--allow-missing', '--json', tmp / 'r.json') == 0
    r = json.loads((tmp / 'r.json').read_text())
    assert r['num_missing'] == 1 and r['num_frames'] == 3 and r['missing_tokens'] == ['t1']
    assert '1 missing' in capsys.readouterr().out


def test_corrupt_wrong_shape_and_dtype_files_are_named_and_counted(fixture, capsys):
    gt, pred, _, tmp = fixture
    (pred / 't0.npz').write_bytes(b'PK\x03\x04 truncated')
    save_prediction(str(pred / 't1.npz'), np.zeros((10, 10, 4), np.uint8))
    np.savez(pred / 't2.npz', semantics=np.zeros(SHAPE, np.int64))
    assert _run('--gt', gt, '--pred', pred, '--no-ray-iou', '--pc-range', *RANGE) == 2
    err = capsys.readouterr().err
    assert '3 of 4 frame(s) could not be evaluated' in err
    assert 't0.npz' in err and 'corrupt' in err
    assert 't1.npz' in err and 'does not match' in err
    assert 't2.npz' in err and 'int64' in err


def test_bad_roots_give_clear_errors(tmp_path, capsys):
    assert _run('--gt', tmp_path / 'nope', '--pred', tmp_path) == 2
    assert 'nope' in capsys.readouterr().err
    (tmp_path / 'empty').mkdir()
    assert _run('--gt', tmp_path / 'empty', '--pred', tmp_path) == 2
    assert 'no labels.npz' in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not REAL, reason='real Occ3D fixture missing')
def test_real_frame_through_the_cli(tmp_path):
    tok = os.path.basename(os.path.dirname(REAL[0]))
    z = load_occ3d_labels(REAL[0])
    save_prediction(str(tmp_path / 'pred' / f'{tok}.npz'), z['semantics'])
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'eval_occ.py'),
                          '--gt', os.path.dirname(os.path.dirname(REAL[0])), '--pred',
                          str(tmp_path / 'pred'), '--json', str(tmp_path / 'r.json')],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert out.returncode == 0, out.stderr
    r = json.loads((tmp_path / 'r.json').read_text())
    assert r['miou'] == 100.0 and r['iou'] == 100.0 and r['ray_iou'] == 100.0
    assert r['per_class']['vegetation'] == 100.0 and r['per_class']['pedestrian'] is None


def test_history_only_region_matches_a_loop_reference(fixture, capsys):
    """--history-frames 2: voxels the camera saw in one of the 2 previous keyframes (moved by the
    ego's +1 m/frame x motion) and not now, scored against a per-voxel loop over the frames."""
    gt, pred, info, tmp = fixture
    # the current camera sees z < 4; the past frames see z < 6 (history-only: z 4..5, shifted)
    for k in range(4):
        path = str(gt / 'gts' / 'scene-0001' / f't{k}' / 'labels.npz')
        lab = load_occ3d_labels(path)
        cam = np.zeros(SHAPE, np.uint8)
        cam[:, :, :4] = 1
        cam[:20 - 4 * k, :, 4:6] = 1                  # and a band at z 4..5 that shrinks: x < 20 - 4k
        save_occ3d_labels(path, lab['semantics'], lab['mask_lidar'], cam)
    assert _run('--info', info, '--pred', pred, '--json', tmp / 'h.json', '--workers', 1,
                '--history-frames', 2, '--no-ray-iou') == 0
    r = json.loads((tmp / 'h.json').read_text())
    assert 'visible in history only' in capsys.readouterr().out
    # loop reference: frame k's ego sits at x = k (voxel 0.4 m): a voxel centre x_c in frame k is
    # x_c + (k - j) in frame j; it is history-only when some j in {k-1, k-2} saw it and frame k does not
    lo, v = -4.0, 0.4
    hist = np.zeros((18, 18), np.int64)
    for k in range(4):
        cur = load_occ3d_labels(str(gt / 'gts' / 'scene-0001' / f't{k}' / 'labels.npz'))
        p = np.load(str(pred / f't{k}.npz'))['semantics']
        past = [load_occ3d_labels(str(gt / 'gts' / 'scene-0001' / f't{j}' / 'labels.npz'))['mask_camera']
                for j in (k - 1, k - 2) if j >= 0]
        for i in range(SHAPE[0]):
            for jj in range(SHAPE[1]):
                for z in range(SHAPE[2]):
                    if cur['mask_camera'][i, jj, z]:
                        continue
                    seen = False
                    for d, m in enumerate(past, start=1):
                        xp = lo + (i + 0.5) * v + d              # this centre in frame k - d
                        ip = int(np.floor((xp - lo) / v))
                        if 0 <= ip < SHAPE[0] and m[ip, jj, z]:
                            seen = True
                    if seen:
                        hist[cur['semantics'][i, jj, z], p[i, jj, z]] += 1
    assert hist[:FREE].sum() > 0 and r['history_only']['voxels'] == int(hist.sum())
    ious = [hist[c, c] / (hist[c].sum() + hist[:, c].sum() - hist[c, c])
            for c in range(FREE) if hist[c].sum() + hist[:, c].sum() > 0]
    assert r['history_only']['miou'] == pytest.approx(100 * float(np.mean(ious)))


def test_history_frames_needs_an_info_file(fixture, capsys):
    gt, pred, _, tmp = fixture
    assert _run('--gt', gt, '--pred', pred, '--pc-range', *RANGE, '--history-frames', 2) == 2
    assert '--history-frames needs --info' in capsys.readouterr().err
