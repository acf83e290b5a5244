"""Demo ablations are small diffs whose overrides reach the data (stock Config.fromfile), and the
tools' explicit --data-root / --iters options move and stretch what the config says."""
from __future__ import annotations

import glob
import os.path as osp

from mmengine.config import Config

from occ.engine.config import load_config

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
ABLATIONS = sorted(glob.glob(osp.join(ROOT, 'configs', 'ablations', 'demo_*.py')))


def _cfg(*parts):
    return Config.fromfile(osp.join(ROOT, 'configs', *parts))


def test_ablations_are_small_diffs():
    assert len(ABLATIONS) >= 5
    for path in ABLATIONS:
        code = [ln for ln in open(path).read().splitlines() if ln.strip() and not ln.lstrip().startswith('#')]
        assert code[0].startswith("_base_ = ['../occ_cpu_demo.py']"), path
        assert len(code) <= 12, (path, len(code))


def test_overrides_reach_the_data():
    demo = _cfg('occ_cpu_demo.py')
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = demo[key].dataset
        assert tuple(ds.img_size) == (64, 176) and ds.load_depth is True, key
    assert demo.param_scheduler[-1].end == demo.train_cfg.max_iters      # the cosine ends with training
    assert demo.train_dataloader.dataset.aug.bev is None and demo.train_dataloader.dataset.aug.img
    img = _cfg('ablations', 'demo_img128.py')
    assert tuple(img.train_dataloader.dataset.img_size) == (128, 352)
    assert tuple(img.test_dataloader.dataset.img_size) == (128, 352)
    assert img.train_dataloader.dataset.load_depth is True           # the rest stays the demo's
    nod = _cfg('ablations', 'demo_no_depth.py')
    assert nod.train_dataloader.dataset.load_depth is False and nod.model.depth_loss_weight == 0
    assert tuple(nod.train_dataloader.dataset.img_size) == (64, 176)
    # a dataset entry set for one split only is kept there (temporal ablations train with history)
    t2 = _cfg('ablations', 'temporal_t2.py')
    assert t2.train_dataloader.dataset.num_history == 2 and t2.test_dataloader.dataset.num_history == 0
    coop = _cfg('ablations', 'collab_common.py')
    assert coop.train_dataloader.dataset.info_file == 'data/demo_coop/occ_infos_train.pkl'
    assert coop.test_dataloader.dataset.load_neighbors is True


def test_data_root_and_iters_options():
    path = osp.join(ROOT, 'configs', 'occ_cpu_demo.py')
    moved = load_config(path, data_root='data/other')
    for key, split in (('train_dataloader', 'train'), ('val_dataloader', 'val'), ('test_dataloader', 'val')):
        assert moved[key].dataset.data_root == 'data/other'
        assert moved[key].dataset.info_file == f'data/other/occ_infos_{split}.pkl'
    short = load_config(path, max_iters=480)
    warm, cos = short.param_scheduler
    assert (warm.end, cos.begin, cos.end, short.train_cfg.max_iters) == (50, 50, 480, 480)
    # --cfg-options wins over --data-root (applied last)
    both = load_config(path, {'test_dataloader.dataset.info_file': 'x/infos.pkl'}, data_root='data/other')
    assert both.test_dataloader.dataset.info_file == 'x/infos.pkl'
    assert both.train_dataloader.dataset.info_file == 'data/other/occ_infos_train.pkl'
    # the world configs' sequence datasets move too
    world = load_config(osp.join(ROOT, 'configs', 'world_residual_camera_cpu.py'), data_root='data/w')
    assert world.train_dataloader.dataset.info_file == 'data/w/occ_infos_train.pkl'
    assert world.test_dataloader.dataset.camera_cache == 'work_dirs/world_camera_cache'
