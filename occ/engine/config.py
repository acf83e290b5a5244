"""The command-line options of occ's tools, applied to a config that stock mmengine loads.

Every file under ``configs/`` is complete as ``mmengine.config.Config.fromfile``
reads it: ``Runner.from_cfg(cfg)`` (or ``RUNNERS.build(cfg)``, which picks
``runner_type``) trains it with no help from this module. What is here only
carries out flags a user typed, each visible in the tool's ``--help``:

- ``--data-root DIR`` -> :func:`set_data_root`: every dataset and evaluator path
  moves from the root the config names to ``DIR`` (one flag instead of one
  ``--cfg-options`` entry per dataloader and evaluator);
- ``--iters N`` -> :func:`set_max_iters`: train N iterations *and* end the schedule
  there (``--cfg-options train_cfg.max_iters=N`` alone keeps the config's schedule,
  as with any mmengine config);
- ``--amp`` -> :func:`enable_amp`: ``AmpOptimWrapper`` (CUDA fp16 autocast, dynamic
  loss scale) for a config written with a plain ``OptimWrapper``.

Kept in the library (not in ``tools/``) so tools/train.py, tools/test.py,
tools/ablate.py and the benchmarks apply exactly the same rules.
"""
from __future__ import annotations

import os.path as osp

from mmengine.config import Config

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
EVALUATORS = ('val_evaluator', 'test_evaluator')
PATH_KEYS = ('info_file', 'ann_file')


def _move(path, old: str | None, new: str):
    """``path`` under ``old`` -> the same relative path under ``new``; anything else unchanged."""
    if not isinstance(path, str) or old is None:
        return path
    old = old.rstrip('/')
    if path == old:
        return new
    if path.startswith(old + '/'):
        return osp.join(new, path[len(old) + 1:])
    return path


def _datasets(ds):
    """A dataset dict and the datasets it wraps (``dataset=`` / ``datasets=`` of wrappers)."""
    if not isinstance(ds, dict):
        return
    yield ds
    yield from _datasets(ds.get('dataset'))
    for inner in ds.get('datasets') or ():
        yield from _datasets(inner)


def set_data_root(cfg: Config, root: str) -> None:
    """Point every dataloader's dataset(s) and every evaluator at the nuScenes root ``root``.

    Each dataset's ``data_root`` becomes ``root``; its ``info_file`` / ``ann_file``, and an
    evaluator's ``ann_file`` and a loss's ``class_counts`` info file, move along when they lie
    under the dataset's previous root (a path set elsewhere stays). The top-level ``data_root`` (read by nothing once the
    config is loaded, but printed in the logs) follows too.
    """
    if not root:
        raise ValueError('--data-root: empty path')
    root = root.rstrip('/') or '/'
    olds = []
    for key in DATALOADERS:
        loader = cfg.get(key)
        if not isinstance(loader, dict):
            continue
        for ds in _datasets(loader.get('dataset')):
            if 'data_root' not in ds:      # a wrapper (RepeatDataset, ...) or a root from the info file
                continue
            old = ds['data_root']
            olds.append(old)
            for k in PATH_KEYS:
                if k in ds:
                    ds[k] = _move(ds[k], old, root)
            ds['data_root'] = root
    if not olds:
        raise ValueError(f'{cfg.filename}: --data-root: no dataset of this config names a data_root')
    for key in EVALUATORS:
        ev = cfg.get(key)
        for e in (ev if isinstance(ev, list) else [ev]):
            if isinstance(e, dict) and isinstance(e.get('ann_file'), str):
                for old in dict.fromkeys(olds):
                    moved = _move(e['ann_file'], old, root)
                    if moved != e['ann_file']:
                        e['ann_file'] = moved
                        break
    # Losses that derive class weights from the training split's counts name its info file.
    for holder in _dicts_with(cfg.get('model'), 'class_counts'):
        for old in dict.fromkeys(olds):
            moved = _move(holder['class_counts'], old, root)
            if moved != holder['class_counts']:
                holder['class_counts'] = moved
                break
    if 'data_root' in cfg:
        cfg.data_root = root


def _dicts_with(node, key: str):
    """Every dict inside ``node`` (nested dicts and lists) whose ``key`` is a string."""
    if isinstance(node, dict):
        if isinstance(node.get(key), str):
            yield node
        for value in node.values():
            yield from _dicts_with(value, key)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _dicts_with(value, key)


def set_max_iters(cfg: Config, max_iters: int) -> None:
    """Train ``max_iters`` iterations with the config's schedule squeezed or stretched to fit.

    ``train_cfg.max_iters`` = N; the last parameter scheduler (the cosine) ends at N;
    a warm-up (first of several schedulers) lasts ``min(warmup_iters, N // 4)`` iterations,
    ``warmup_iters`` being the top-level variable of the schedule base (else the warm-up's
    own ``end``), and the cosine starts where it ends; the checkpoint interval is clipped to
    N so a short run still leaves a checkpoint. This is what ``--iters N`` of tools/train.py
    and tools/ablate.py does.
    """
    n = int(max_iters)
    if n <= 0:
        raise ValueError(f'{cfg.filename}: --iters must be positive, got {n}')
    if not isinstance(cfg.get('train_cfg'), dict) or 'max_iters' not in cfg.train_cfg:
        raise ValueError(f'{cfg.filename}: --iters needs an iteration-based train_cfg (max_iters)')
    cfg.train_cfg.max_iters = n
    scheds = cfg.get('param_scheduler') or []
    if isinstance(scheds, dict):
        scheds = [scheds]
    if len(scheds) >= 2:
        warm, last = scheds[0], scheds[-1]
        nominal = int(cfg.get('warmup_iters', warm.get('end', 0)))
        warm_end = min(nominal, max(1, n // 4))
        warm['end'] = warm_end
        last['begin'] = warm_end
        last['end'] = n
        last.pop('T_max', None)
    elif len(scheds) == 1:
        scheds[0]['end'] = n
        scheds[0].pop('T_max', None)
    ckpt = cfg.get('default_hooks', {}).get('checkpoint')
    if ckpt is not None and 'interval' in ckpt:
        ckpt['interval'] = min(int(ckpt['interval']), n)


def enable_amp(cfg: Config) -> None:
    """``--amp``: switch a plain ``OptimWrapper`` to ``AmpOptimWrapper`` with a dynamic loss scale
    (mmdetection3d's ``tools/train.py --amp``). Needs CUDA; mmengine raises otherwise."""
    wrapper = cfg.optim_wrapper
    if wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
        return
    if wrapper.get('type', 'OptimWrapper') != 'OptimWrapper':
        raise ValueError(f'{cfg.filename}: --amp applies to an OptimWrapper, not {wrapper.type}')
    wrapper.type = 'AmpOptimWrapper'
    wrapper.setdefault('loss_scale', 'dynamic')


def load_config(path: str, cfg_options: dict | None = None, work_dir: str | None = None,
                seed: int | None = None, launcher: str = 'none', data_root: str | None = None,
                max_iters: int | None = None, amp: bool = False) -> Config:
    """``Config.fromfile(path)`` plus the command-line options of the tools, in this order:
    ``data_root`` (``--data-root``), ``max_iters`` (``--iters``), ``amp`` (``--amp``), then
    ``cfg_options`` (``--cfg-options``, most specific, wins), then the run settings
    ``launcher``, ``work_dir`` (default ``work_dirs/<config name>``) and ``seed``.

    With no options this is exactly what stock mmengine loads, plus a work dir.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: config file not found')
    cfg = Config.fromfile(path)
    if data_root is not None:
        set_data_root(cfg, data_root)
    if max_iters is not None:
        set_max_iters(cfg, max_iters)
    if amp:
        enable_amp(cfg)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(path))[0])
    if seed is not None:
        cfg.setdefault('randomness', {})
        cfg.randomness['seed'] = int(seed)
    return cfg
