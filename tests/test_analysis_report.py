"""Class-prior baseline, prediction upsampling and the demo report, against slow references."""
from __future__ import annotations

import json
import os.path as osp
import pickle

import numpy as np
import pytest

from occ.constants import CLASS_NAMES, DYNAMIC_CLASSES, FREE
from occ.data.occ3d_io import load_prediction, save_occ3d_labels
from occ.engine.prediction_writer import upsample_grid
from occ.analysis.prior import class_prior, write_prior_predictions
from occ.analysis.report import dynamic_miou, read_metrics, read_scalars, write_report


def make_root(tmp_path, n=5, shape=(4, 4, 2), seed=0):
    rng = np.random.default_rng(seed)
    root = tmp_path / 'root'
    infos, labels = [], []
    for i in range(n):
        sem = rng.choice([4, 11, 15, FREE], size=shape, p=[0.1, 0.3, 0.2, 0.4]).astype(np.uint8)
        cam = (rng.random(shape) < 0.7).astype(np.uint8)
        rel = f'gts/scene-0/tok{i}/labels.npz'
        save_occ3d_labels(str(root / rel), sem, np.ones(shape, np.uint8), cam)
        infos.append({'token': f'tok{i}', 'occ_path': rel})
        labels.append((sem, cam))
    info_file = root / 'occ_infos_train.pkl'
    with open(info_file, 'wb') as f:
        pickle.dump({'metadata': {'dataroot': str(root)}, 'infos': infos}, f)
    return str(info_file), labels


def test_class_prior_matches_loop_reference(tmp_path):
    info_file, labels = make_root(tmp_path)
    shape = labels[0][0].shape
    for mask in ('camera', 'none'):
        prior = class_prior(info_file, shape, mask=mask)
        assert prior.dtype == np.uint8 and prior.shape == shape
        for idx in np.ndindex(shape):
            seen = [s[idx] for s, c in labels if mask == 'none' or c[idx]]
            if not seen:
                seen = [s[idx] for s, _ in labels]
            counts = np.bincount(seen, minlength=18)
            assert prior[idx] == int(np.argmax(counts)), (mask, idx)   # ties -> lower index


def test_class_prior_coarsens_to_model_grid(tmp_path):
    info_file, labels = make_root(tmp_path, shape=(4, 4, 2))
    coarse = class_prior(info_file, (2, 2, 1), mask='none')
    assert coarse.shape == (2, 2, 1)
    with pytest.raises(Exception, match='cannot be reduced'):
        class_prior(info_file, (3, 3, 1))


def test_write_prior_predictions(tmp_path):
    info_file, labels = make_root(tmp_path, n=3)
    prior = class_prior(info_file, labels[0][0].shape)
    assert write_prior_predictions(prior, info_file, str(tmp_path / 'pred')) == 3
    got = load_prediction(str(tmp_path / 'pred' / 'tok2.npz'))['semantics']
    assert np.array_equal(got, prior)


def test_upsample_grid_reference():
    rng = np.random.default_rng(1)
    sem = rng.integers(0, 18, size=(3, 2, 2), dtype=np.uint8)
    up = upsample_grid(sem, (6, 4, 4))
    for i, j, k in np.ndindex(up.shape):
        assert up[i, j, k] == sem[i // 2, j // 2, k // 2]
    fut = rng.integers(0, 18, size=(2, 3, 2, 2), dtype=np.uint8)
    assert upsample_grid(fut, (6, 4, 4)).shape == (2, 6, 4, 4)
    assert upsample_grid(sem, (3, 2, 2)) is sem
    with pytest.raises(ValueError, match='integer factor'):
        upsample_grid(sem, (6, 4, 6))


def _eval_json(path, values):
    per = {n: values.get(n) for n in CLASS_NAMES[:17]}
    vals = [v for v in per.values() if v is not None]
    json.dump({'miou': float(np.mean(vals)), 'iou': 50.0, 'per_class': per}, open(path, 'w'))


def test_report_side_by_side(tmp_path):
    model_js, prior_js = str(tmp_path / 'm.json'), str(tmp_path / 'p.json')
    _eval_json(model_js, {'car': 30.0, 'pedestrian': 10.0, 'driveable_surface': 80.0})
    _eval_json(prior_js, {'car': 5.0, 'pedestrian': 0.0, 'driveable_surface': 70.0})
    m = read_metrics(model_js)
    assert m['per_class']['car'] == 30.0 and m['per_class']['bus'] is None
    assert dynamic_miou(m) == pytest.approx(20.0)       # mean over defined dynamic classes only
    # OccMetric's flat form reads the same
    flat = str(tmp_path / 'flat.json')
    json.dump({'miou': 40.0, 'iou': 50.0, 'IoU_car': 30.0, 'IoU_bus': float('nan')}, open(flat, 'w'))
    assert read_metrics(flat)['per_class'] == {'car': 30.0, 'bus': None}

    wd = tmp_path / 'wd'
    (wd / '20260101_000000' / 'vis_data').mkdir(parents=True)
    with open(wd / '20260101_000000' / 'vis_data' / 'scalars.json', 'w') as f:
        for it in range(1, 31):
            f.write(json.dumps({'iter': it, 'lr': 1e-3, 'loss': 3.0 / it, 'loss_ce': 2.0 / it}) + '\n')
    json.dump({'train_time_s': 60.0, 'max_iters': 30, 'peak_rss_mb': 900.0, 'final_loss': 0.1},
              open(wd / 'train_stats.json', 'w'))
    assert [r['iter'] for r in read_scalars(str(wd))] == list(range(1, 31))
    g = np.full((10, 10, 4), FREE, np.uint8)
    g[:, :, 0] = 11
    pic = dict(token='tok0', gt=g, mask=np.ones_like(g), pred=g, prior=g)
    out = tmp_path / 'report'
    s = write_report(str(out), model_js, prior_js, str(wd), [pic], {'config': 'x.py'})
    assert s['beats_prior_miou'] and s['beats_prior_dynamic']
    md = (out / 'report.md').read_text()
    assert '| car (dynamic) | 30.0 | 5.0 |' in md
    assert 'dynamic-class mIoU | 20.0 | 2.5 |' in md and '**beats**' in md
    for png in ('training_curve.png', 'model_vs_prior_tok0.png', 'pred_vs_gt_tok0.png'):
        assert (out / png).read_bytes()[:4] == b'\x89PNG'
    assert json.load(open(out / 'summary.json'))['prior_dynamic_miou'] == pytest.approx(2.5)
    assert all(c in DYNAMIC_CLASSES for c in (4, 7))


def test_read_metrics_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.json'):
        read_metrics(str(tmp_path / 'nope.json'))
    bad = tmp_path / 'bad.json'
    bad.write_text('{"iou": 1}')
    with pytest.raises(ValueError, match='bad.json.*miou'):
        read_metrics(str(bad))


def test_report_shows_an_unseen_seed_set_beside_the_held_out_town(tmp_path):
    js = {k: str(tmp_path / f'{k}.json') for k in ('m', 'p', 'um', 'up')}
    _eval_json(js['m'], {'car': 30.0, 'pedestrian': 10.0, 'driveable_surface': 80.0})
    _eval_json(js['p'], {'car': 5.0, 'pedestrian': 0.0, 'driveable_surface': 70.0})
    _eval_json(js['um'], {'car': 12.0, 'pedestrian': 2.0, 'driveable_surface': 60.0})
    _eval_json(js['up'], {'car': 15.0, 'pedestrian': 0.0, 'driveable_surface': 65.0})
    json.dump(dict(json.load(open(js['up'])), iou=61.0), open(js['up'], 'w'))
    out = tmp_path / 'report'
    s = write_report(str(out), js['m'], js['p'], str(tmp_path), title='Held-out town (seed 0)',
                     more_sets=[dict(key='unseen', title='Unseen-seed towns (seed 7919)', description='3 towns',
                                     model_json=js['um'], prior_json=js['up'])])
    md = (out / 'report.md').read_text()
    held, unseen = md.split('## Unseen-seed towns (seed 7919)')
    assert '## Held-out town (seed 0)' in held and '| car (dynamic) | 30.0 | 5.0 |' in held
    assert '| car (dynamic) | 12.0 | 15.0 |' in unseen and '3 towns' in unseen
    assert '| geometry IoU (occupied vs free) | 50.0 | 61.0 |' in unseen and '**NOT above**' in unseen
    u = json.load(open(out / 'summary.json'))['unseen']
    assert u['model_miou'] == pytest.approx(np.mean([12.0, 2.0, 60.0])) and u['prior_iou'] == 61.0
    assert u['model_dynamic_miou'] == pytest.approx(7.0) and not u['beats_prior_geometry']
    assert s['unseen']['beats_prior_miou'] is False and s['model_miou'] == pytest.approx(40.0)
