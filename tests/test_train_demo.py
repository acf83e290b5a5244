"""The demo flow end to end on the tiny synthetic world: train -> test --out -> report.

The tiny world's labels are 0.4 m while the demo model predicts on 0.8 m, so
this also covers tools/test.py upsampling predictions to the label grid.
"""
from __future__ import annotations

import glob
import json
import os
import os.path as osp
import pickle

import numpy as np
import pytest
from fixtures_data import tiny_world  # noqa: F401  (session fixture)
from test_engine import load_tool, scalars

from occ.data.occ3d_io import load_occ3d_labels, load_prediction

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
CFG = osp.join(ROOT, 'configs', 'occ_cpu_demo.py')


@pytest.mark.slow
def test_demo_flow_on_tiny_world(tiny_world, tmp_path):  # noqa: F811
    wd = str(tmp_path / 'wd')
    opts = ['train_dataloader.batch_size=1', 'train_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
            'default_hooks.logger.interval=1',
            # the tiny world is one town: everything is in the train split, so test on it too
            f'test_dataloader.dataset.info_file={tiny_world}/occ_infos_train.pkl']
    root = ['--data-root', tiny_world]
    assert load_tool('train').main([CFG, '--work-dir', wd, '--iters', '8', *root, '--cfg-options', *opts]) == 0
    losses = [r['loss'] for r in scalars(wd) if 'loss' in r]
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    assert {'loss_weighted_ce', 'loss_lovasz_softmax', 'loss_depth'} <= set(scalars(wd)[-1])
    assert glob.glob(osp.join(wd, '*', 'vis_data', 'events.out.tfevents.*'))     # TensorBoard

    pred = osp.join(wd, 'pred')
    assert load_tool('test').main([CFG, wd, '--out', pred, '--work-dir', wd, *root, '--cfg-options', *opts]) == 0
    empty = [CFG, wd, '--work-dir', wd, *root]
    assert load_tool('test').main(empty) == 2        # the tiny world's val split is empty
    with open(osp.join(tiny_world, 'occ_infos_train.pkl'), 'rb') as f:
        val = pickle.load(f)['infos']
    assert sorted(os.listdir(pred)) == sorted(f"{i['token']}.npz" for i in val)
    gt = load_occ3d_labels(osp.join(tiny_world, val[0]['occ_path']))
    p = load_prediction(osp.join(pred, f"{val[0]['token']}.npz"), gt['semantics'].shape)['semantics']
    assert p.shape == (200, 200, 16)
    assert np.array_equal(p[::2, ::2, ::2], p[1::2, 1::2, 1::2])    # 0.8 m blocks, upsampled

    report = load_tool('demo_report')
    assert report.main([CFG, '--work-dir', wd, '--num-pictures', '1', *root, '--cfg-options', *opts]) == 0
    out = osp.join(wd, 'report')
    md = open(osp.join(out, 'report.md')).read()
    assert '| **mIoU** |' in md and 'prior IoU' in md and 'dynamic-class mIoU' in md
    summary = json.load(open(osp.join(out, 'summary.json')))
    assert summary['model_miou'] is not None and summary['prior_miou'] is not None
    assert osp.isfile(osp.join(out, 'training_curve.png'))
    assert any(n.startswith('model_vs_prior_') for n in os.listdir(out))
