"""Turn a loaded config plus command-line switches into what the Runner gets.

Kept out of ``tools/`` so tests and ``tools/ablate.py`` apply exactly the
same rules as ``tools/train.py``.
"""
from __future__ import annotations

import ast
import os.path as osp

import torch
from mmengine.config import Config


def sync_schedule(cfg: Config) -> None:
    """Make the iteration-based schedule consistent with ``train_cfg.max_iters``.

    Configs (and ``--cfg-options train_cfg.max_iters=N``) change the length in
    one place; here the last scheduler (cosine) is stretched to end at
    ``max_iters``, warm-up is clipped to at most a quarter of the run,
    and the checkpoint interval is clipped to the
    run so a short run still leaves a checkpoint.
    """
    n = int(cfg.train_cfg.max_iters)
    if n <= 0:
        raise ValueError(f'{cfg.filename}: train_cfg.max_iters must be positive, got {n}')
    scheds = cfg.get('param_scheduler') or []
    if isinstance(scheds, dict):
        scheds = [scheds]
    if len(scheds) >= 2:
        warm, last = scheds[0], scheds[-1]
        warm_end = min(int(warm.get('end', 0)), max(1, n // 4))
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


# Top-level config variables that the dataset sections follow. mmengine resolves a
# base file's variables inside that file, so a child that redefines ``img_size``
# would otherwise leave the already-built dataset dicts at the base's value.
DATA_VARS = ('img_size', 'grid_voxel', 'load_depth', 'num_history', 'num_future', 'data_root')


def _base_chain(path: str) -> list:
    """All config files ``path`` inherits from (itself first), following ``_base_``."""
    out, todo = [], [osp.abspath(path)]
    while todo:
        f = todo.pop(0)
        if f in out or not osp.isfile(f):
            continue
        out.append(f)
        for node in ast.parse(open(f).read(), f).body:
            if (isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '_base_' for t in node.targets)):
                bases = ast.literal_eval(node.value)
                for b in [bases] if isinstance(bases, str) else bases:
                    todo.append(osp.normpath(osp.join(osp.dirname(f), b)))
    return out


def _same(a, b) -> bool:
    norm = (lambda v: list(v) if isinstance(v, (list, tuple)) else v)
    return norm(a) == norm(b)


def _dataset_dicts(cfg: Config):
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if isinstance(loader, dict) and isinstance(loader.get('dataset'), dict):
            yield loader['dataset']


def propagate_data_vars(cfg: Config) -> None:
    """Make the dataset dicts follow the top-level ``img_size``/``grid_voxel``/``load_depth``/
    ``num_history``/``num_future``/``data_root`` (CONTRACTS.md: an ablation overrides one line).

    A dataset entry is updated only where it still holds the value the dataset
    base file (``configs/_base_/datasets/*``) gave it: a config that sets the
    dataset entry directly (e.g. history only in training) keeps its choice.
    ``info_file``/``ann_file`` paths under the old ``data_root`` move with it.
    """
    bases = [f for f in _base_chain(cfg.filename) if osp.basename(osp.dirname(f)) == 'datasets'] \
        if cfg.filename else []
    if not bases:
        return
    base = Config.fromfile(bases[0])
    for var in DATA_VARS:
        if var not in cfg or var not in base or _same(cfg[var], base[var]):
            continue
        old, new = base[var], cfg[var]
        for ds in _dataset_dicts(cfg):
            if var in ds and _same(ds[var], old):
                ds[var] = new
                if var == 'data_root':
                    for k in ('info_file', 'ann_file'):
                        if isinstance(ds.get(k), str) and ds[k].startswith(old):
                            ds[k] = new + ds[k][len(old):]
        if var == 'data_root':
            for key in ('val_evaluator', 'test_evaluator'):
                ev = cfg.get(key)
                for e in (ev if isinstance(ev, list) else [ev]):
                    if isinstance(e, dict) and isinstance(e.get('ann_file'), str) \
                            and e['ann_file'].startswith(old):
                        e['ann_file'] = new + e['ann_file'][len(old):]


def select_optim_wrapper(cfg: Config) -> None:
    """``amp = 'auto'`` (default): AmpOptimWrapper on CUDA, plain OptimWrapper elsewhere.

    ``amp = True`` forces AMP (error without CUDA), ``amp = False`` disables it.
    """
    amp = cfg.get('amp', 'auto')
    cuda = torch.cuda.is_available()
    if amp == 'auto':
        amp = cuda
    if amp and not cuda:
        raise ValueError(f'{cfg.filename}: amp=True needs CUDA, which is not available')
    if amp and cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper':
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    elif not amp and cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'OptimWrapper'
        cfg.optim_wrapper.pop('loss_scale', None)
        cfg.optim_wrapper.pop('dtype', None)


def load_config(path: str, cfg_options: dict | None = None, work_dir: str | None = None,
                seed: int | None = None, launcher: str = 'none') -> Config:
    """Load ``path``, apply overrides, and fill in work_dir / seed / launcher / AMP / schedule."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: config file not found')
    cfg = Config.fromfile(path)
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
    propagate_data_vars(cfg)
    if 'train_cfg' in cfg and cfg.train_cfg and 'max_iters' in cfg.train_cfg:
        sync_schedule(cfg)
    if 'optim_wrapper' in cfg:
        select_optim_wrapper(cfg)
    return cfg
