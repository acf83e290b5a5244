"""Every config under configs/ as STOCK mmengine runs it (issue 16, acceptance).

Nothing from ``occ.engine`` sits between the config file and mmengine here:
``mmengine.config.Config.fromfile`` loads it, mmengine's root registries (with the
config's ``default_scope``, as the Runner sets it) build its model and datasets, and
``mmengine.runner.Runner.from_cfg`` trains the demo config. This is what a user's own
mmengine-based tool gets.

The configs' data roots (data/demo, data/temporal, data/demo_coop, data/nuscenes) are
written by ``make demo`` / the docs' commands or are the real nuScenes, so the tests
point each dataset at a small hand-written nuScenes root instead: ``data_root`` and the
info file's folder change, every other dataset argument is the config's. Real-nuScenes
configs (data/nuscenes) are built over it too, and one training sample of every config
is loaded, except where the dataset reads files such a world lacks (NEEDS_MORE_DATA).
"""
from __future__ import annotations

import glob
import math
import os
import os.path as osp

import numpy as np
import pytest
from fixtures_data import load_tool, write_micro_nuscenes
from mmengine.config import Config
from mmengine.registry import DATASETS, FUNCTIONS, MODELS, RUNNERS, DefaultScope

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
CONFIGS = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in osp.relpath(p, ROOT).split(os.sep))
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
GPU_CONFIGS = ('flashocc_r50_nusc.py', 'bevformer_occ_r50_nusc.py')
# Dataset switches that read files the hand-written test world does not have: the camera
# model's cached outputs (tools/cache_camera_bev.py) and cooperative labels (a world written
# with --agents > 1). Datasets with them are built, but no sample is loaded.
NEEDS_MORE_DATA = ('camera_cache', 'coop_labels')


@pytest.fixture(scope='module')
def seq_world(tmp_path_factory) -> str:
    """2 scenes x 12 keyframes at 0.4 m (auto split: one scene each for train and val): long enough
    for the world-model sequences (4 past + current + 6 future frames)."""
    root = write_micro_nuscenes(str(tmp_path_factory.mktemp('seq_world')), scenes=2, frames=12, voxel=0.4)
    assert load_tool('create_data').main(['--root', root, '--no-progress']) == 0
    return root


def on_world(cfg: Config, root: str) -> None:
    """Point every dataset of ``cfg`` at ``root`` (same info file name, same arguments otherwise)."""
    for key in LOADERS:
        loader = cfg.get(key)
        if isinstance(loader, dict):
            ds = loader.dataset
            ds.data_root = root
            ds.info_file = osp.join(root, osp.basename(ds.info_file))
    # a loss whose class weights come from the training split's counts reads that split's info file
    losses = cfg.get('model', {}).get('head', {}).get('losses') or []
    for loss in losses:
        if isinstance(loss.get('class_counts'), str):
            loss.class_counts = cfg.train_dataloader.dataset.info_file


def test_every_config_is_found():
    names = {osp.relpath(p, osp.join(ROOT, 'configs')) for p in CONFIGS}
    assert {'occ_cpu_demo.py', 'flashocc_r50_nusc.py', 'world_tokenizer_cpu.py',
            'ablations/collab_common.py', 'ablations/temporal_t2.py'} <= names
    assert not any(n.startswith('_base_') for n in names)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, osp.join(ROOT, 'configs')))
def test_config_builds_with_stock_mmengine(path, seq_world):
    cfg = Config.fromfile(path)
    name = osp.basename(path)
    # Scope, runner and precision are in the file, not added by a tool.
    assert cfg.default_scope == 'occ' and cfg.runner_type == 'occ.OccRunner'
    assert RUNNERS.get(cfg.runner_type).__name__ == 'OccRunner'       # from the root, no default scope
    wrapper = cfg.optim_wrapper.type
    assert wrapper == ('AmpOptimWrapper' if name in GPU_CONFIGS else 'OptimWrapper'), wrapper
    assert 'amp' not in cfg
    # The schedule is written for the run's length: the cosine ends at max_iters.
    n = cfg.train_cfg.max_iters
    scheds = cfg.param_scheduler
    assert scheds[-1].end == n and all(s.begin < s.end <= n for s in scheds), (n, scheds)
    # Top-level data variables tell the truth about the datasets that carry them.
    for key in LOADERS:
        ds = (cfg.get(key) or {}).get('dataset')
        if ds is None:
            continue
        for var in ('img_size', 'load_depth', 'grid_voxel', 'pc_range', 'data_root'):
            if var in cfg and var in ds:
                assert tuple(np.atleast_1d(ds[var])) == tuple(np.atleast_1d(cfg[var])), (key, var)
        # the dataset's grid covers the range every model part works in
        if 'pc_range' in ds:
            for where, rng in _pc_ranges(cfg.model):
                assert list(rng) == list(ds.pc_range), (key, where, rng)
        assert ds.info_file.startswith(ds.data_root + '/'), (key, ds.info_file)
        # the collate function resolves in mmengine's ROOT registry (what Runner.build_dataloader uses)
        assert FUNCTIONS.get(cfg[key].collate_fn.type).__name__ == 'occ_collate'
    # Depth supervision has its targets (the flagship config used to lose load_depth).
    if cfg.model.get('depth_loss_weight', 0) > 0:
        assert cfg.train_dataloader.dataset.load_depth, 'depth loss without depth targets'

    on_world(cfg, seq_world)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
        assert type(model).__name__ == cfg.model.type
        for key in LOADERS:
            if not isinstance(cfg.get(key), dict):
                continue
            dataset = DATASETS.build(cfg[key].dataset)
            assert type(dataset).__name__ == cfg[key].dataset.type and len(dataset) > 0, key
            if key == 'train_dataloader' and not any(cfg[key].dataset.get(k) for k in NEEDS_MORE_DATA):
                sample = dataset[0]                    # one sample loads
                assert ('depth' in sample) == bool(cfg[key].dataset.get('load_depth')), key


def _pc_ranges(node, where='model'):
    """Every ``pc_range`` inside a model config, with its dotted place."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == 'pc_range':
                yield f'{where}.{k}', v
            else:
                yield from _pc_ranges(v, f'{where}.{k}')
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _pc_ranges(v, f'{where}[{i}]')


@pytest.mark.slow
def test_demo_trains_two_iterations_with_stock_runner(seq_world, tmp_path):
    """configs/occ_cpu_demo.py, 2 iterations and a test pass, on ``Runner.from_cfg`` itself."""
    from mmengine.runner import Runner

    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'occ_cpu_demo.py'))
    on_world(cfg, seq_world)
    cfg.train_cfg.max_iters = 2                       # what --cfg-options train_cfg.max_iters=2 does
    for key in ('train_dataloader', 'test_dataloader'):
        cfg[key].batch_size, cfg[key].num_workers = 1, 0
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = str(tmp_path / 'wd')
    runner = Runner.from_cfg(cfg)
    assert type(runner) is Runner
    runner.train()
    assert runner.iter == 2
    assert osp.isfile(osp.join(cfg.work_dir, 'iter_2.pth'))       # save_last at the end of training
    logged = runner.message_hub.log_scalars
    for term in ('loss', 'loss_weighted_ce', 'loss_lovasz_softmax', 'loss_occupancy_bce', 'loss_depth'):
        assert math.isfinite(logged[f'train/{term}'].current()), term
    metrics = runner.test()                            # OccMetric on the val scene
    assert 0.0 <= metrics['miou'] <= 100.0
