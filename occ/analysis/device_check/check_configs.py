"""The configs the device check trains and times, as small config files that inherit the real ones.

For each checked config the check writes ``<work_dir>/configs/check_<name>.py``:
``_base_`` is the config under ``configs/`` and the file only moves every dataset
and evaluator to the generated world, sets a short run for DDP and, on CPU,
replaces an ``AmpOptimWrapper`` (CUDA only) with a plain one. Stock
``mmengine.config.Config.fromfile`` reads it, so the in-process sections
(through ``occ.engine.config.load_config``, what tools/train.py uses) and the
DDP section (``tools/train.py check_flashocc.py``) run the same config.

Full mode keeps the model as it is (ResNet-50, 256x704, 200x200x16). ``--tiny``
(CPU, the test suite) shrinks it with ``TINY_MODEL`` / ``TINY_DATA``: ResNet-18,
32x96 input, a 1.6 m grid (50x50x4), narrow channels -- the same code paths in
seconds.
"""
from __future__ import annotations

import os
import os.path as osp
import pprint

from occ.analysis.device_check.runner import REPO

CONFIGS = {
    'flashocc': 'configs/flashocc_r50_nusc.py',
    'bevformer': 'configs/bevformer_occ_r50_nusc.py',
}
DDP_ITERS = {'full': 10, 'tiny': 2}

TINY_DATA = dict(img_size=(32, 96), grid_voxel=1.6)
_TINY_COMMON = dict(
    backbone=dict(depth=18),
    neck=dict(out_channels=32),
    view_transform=dict(voxel_size=1.6),
    head=dict(num_z=4, mid_channels=32, hidden_channels=32, encoder=dict(down_channels=32)),
)
TINY_MODEL = {
    'flashocc': dict(_TINY_COMMON,
                     neck=dict(out_channels=32, in_channels=[256, 512]),       # ResNet-18 layer3, layer4
                     view_transform=dict(voxel_size=1.6, in_channels=32, mid_channels=32, out_channels=16,
                                         depth_bins=(1.0, 45.0, 2.0)),
                     head=dict(_TINY_COMMON['head'], in_channels=16)),
    'bevformer': dict(_TINY_COMMON,
                      neck=dict(out_channels=32, in_channels=[128, 256]),      # ResNet-18 layer2, layer3
                      view_transform=dict(voxel_size=1.6, in_channels=32, embed_dims=32, num_heads=4),
                      head=dict(_TINY_COMMON['head'], in_channels=32)),
}


def config_path(name: str) -> str:
    if name not in CONFIGS:
        raise KeyError(f'unknown check config {name!r}; known: {sorted(CONFIGS)}')
    return osp.join(REPO, CONFIGS[name])


def variant_lines(name: str, world_root: str, tiny: bool, cuda: bool) -> list:
    """Python lines of the check's variant of config ``name`` (see the module docstring)."""
    from mmengine.config import Config
    base = Config.fromfile(config_path(name))
    world_root = osp.abspath(world_root)
    fmt = pprint.pformat
    lines = [f'# Written by occ.analysis.device_check: {CONFIGS[name]} on the synthetic world {world_root}'
             + (' (--tiny variant)' if tiny else '') + '.',
             f'_base_ = [{config_path(name)!r}]', '',
             f'data_root = {world_root!r}']
    data = TINY_DATA if tiny else {}
    for key in data:
        lines.append(f'{key} = {data[key]!r}')
    splits = {'train_dataloader': 'train', 'val_dataloader': 'val', 'test_dataloader': 'val'}
    for loader, split in splits.items():
        ds = dict(data_root=world_root, info_file=osp.join(world_root, f'occ_infos_{split}.pkl'), **data)
        lines.append(f'{loader} = dict(dataset={fmt(ds)})')
    for ev in ('val_evaluator', 'test_evaluator'):
        if isinstance(base.get(ev), dict) and 'ann_file' in base[ev]:
            lines.append(f"{ev} = dict(ann_file={osp.join(world_root, 'occ_infos_val.pkl')!r})")
    if tiny:
        lines.append(f'model = {fmt(TINY_MODEL[name])}')
    n = DDP_ITERS['tiny' if tiny else 'full']
    lines += ['', '# a short run (the DDP section trains this config with tools/train.py)',
              f'train_cfg = dict(max_iters={n}, val_interval={n + 1})',
              f'default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval={n}, max_keep_ckpts=1))']
    if not cuda and base.optim_wrapper.get('type') == 'AmpOptimWrapper':
        ow = {'_delete_': True, 'type': 'OptimWrapper', 'optimizer': base.optim_wrapper.optimizer.to_dict()}
        if 'clip_grad' in base.optim_wrapper:
            ow['clip_grad'] = base.optim_wrapper.clip_grad.to_dict()
        lines += ['# no CUDA here: AmpOptimWrapper cannot run', f'optim_wrapper = {fmt(ow)}']
    return lines


def write_variant(name: str, world_root: str, tiny: bool, cuda: bool, out_dir: str) -> str:
    """Write ``<out_dir>/check_<name>.py``; returns its path."""
    from occ.utils.io import atomic_write_bytes
    os.makedirs(out_dir, exist_ok=True)
    path = osp.join(out_dir, f'check_{name}.py')
    atomic_write_bytes(path, ('\n'.join(variant_lines(name, world_root, tiny, cuda)) + '\n').encode())
    return path


def load(ctx, name: str):
    """The check's variant of config ``name``, loaded as tools/train.py loads a config."""
    from occ.engine.config import load_config
    path = write_variant(name, ctx.world['root'], ctx.opts.tiny, ctx.device == 'cuda',
                         osp.join(ctx.opts.work_dir, 'configs'))
    return load_config(path)
