"""make demo's unseen-seed evaluation end to end on tiny worlds: train -> test on both -> one report.

The training world is the session's tiny world (one town, all of it in the
training split, so the held-out set is pointed at that split, as
test_train_demo.py does); the unseen world is two towns of another seed, both
held out (``--val-fraction 0.9``, as the Makefile generates data/demo_unseen).
"""
from __future__ import annotations

import json
import os
import os.path as osp
import subprocess
import sys

import pytest
from fixtures_data import REPO, load_tool, tiny_world  # noqa: F401  (session fixture)

CFG = osp.join(REPO, 'configs', 'occ_cpu_demo.py')


def _unseen_world(root: str) -> str:
    cmd = [sys.executable, osp.join(REPO, 'tools', 'make_synthetic.py'), '--out', root, '--scenes', '2',
           '--frames', '2', '--seed', '7919', '--image-size', '90', '160', '--voxel', '0.4',
           '--val-fraction', '0.9', '--quiet']
    subprocess.run(cmd, check=True, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS='1'), stdout=subprocess.DEVNULL)
    assert load_tool('create_data').main(['--root', root, '--no-progress']) == 0
    return root


@pytest.mark.slow
def test_demo_report_scores_an_unseen_seed_beside_the_held_out_town(tiny_world, tmp_path):  # noqa: F811
    unseen = _unseen_world(str(tmp_path / 'unseen'))
    wd = str(tmp_path / 'wd')
    run = ['train_cfg.max_iters=2', 'train_dataloader.batch_size=1', 'train_dataloader.num_workers=0',
           'test_dataloader.num_workers=0']

    def on(split, root, info):         # a dataloader's dataset on another root (explicit: any tool version)
        return [f'{split}_dataloader.dataset.data_root={root}', f'{split}_dataloader.dataset.info_file={root}/{info}']
    # the tiny world is one town, all in the training split: its "held-out" set is that split
    held = run + [o for split in ('train', 'val', 'test') for o in on(split, tiny_world, 'occ_infos_train.pkl')]
    held.append(f'model.head.losses.0.class_counts={tiny_world}/occ_infos_train.pkl')   # the CE's class counts
    assert load_tool('train').main([CFG, '--work-dir', wd, '--cfg-options', *held]) == 0
    test = load_tool('test')
    assert test.main([CFG, wd, '--out', osp.join(wd, 'pred'), '--work-dir', wd, '--cfg-options', *held]) == 0
    assert test.main([CFG, wd, '--out', osp.join(wd, 'pred_unseen'), '--work-dir', wd,
                      '--cfg-options', *run, *on('test', unseen, 'occ_infos_val.pkl')]) == 0
    assert len(os.listdir(osp.join(wd, 'pred_unseen'))) == 4            # 2 towns x 2 keyframes, all held out

    report = load_tool('demo_report')
    assert report.main([CFG, '--work-dir', wd, '--num-pictures', '1', '--unseen-root', unseen,
                        '--unseen-label', 'seed 7919, 2 towns', '--cfg-options', *held]) == 0
    md = open(osp.join(wd, 'report', 'report.md')).read()
    held_part, unseen_part = md.split('## Unseen seed: seed 7919, 2 towns')
    assert '## Held-out town' in held_part and '| **mIoU** |' in held_part
    assert '4 samples in 2 scene(s)' in unseen_part and '| **mIoU** |' in unseen_part
    assert 'geometry IoU (occupied vs free)' in unseen_part
    summary = json.load(open(osp.join(wd, 'report', 'summary.json')))
    u = summary['unseen']
    model = json.load(open(osp.join(wd, 'eval_model_unseen.json')))
    prior = json.load(open(osp.join(wd, 'eval_prior_unseen.json')))
    assert model['num_frames'] == prior['num_frames'] == 4
    assert u['model_miou'] == model['miou'] and u['prior_iou'] == prior['iou']
    assert u['model_iou'] is not None and u['prior_miou'] is not None
