#!/usr/bin/env python
"""Train the occupancy world model (tokenizer, then forecaster) and score it per horizon against the baselines.

    python tools/train_world.py [--work-dir work_dirs/world] [--data-root data/temporal]
        [--tokenizer-iters 200] [--forecaster-iters 150] [--max-eval-batches N]
    python tools/train_world.py --eval-only --work-dir work_dirs/world   # re-score trained checkpoints

Writes <work-dir>/tokenizer/, <work-dir>/forecaster/ (mmengine logs and
checkpoints), <work-dir>/world_eval.json and world_eval.md (mIoU / IoU per
horizon, OccWorld protocol, for the world model, copy-last and ego-warp).
Each stage alone is also ``tools/train.py configs/world_*.py`` (docs/WORLD.md).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'configs')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--tokenizer-config', default=os.path.join(CONFIGS, 'world_tokenizer_cpu.py'))
    p.add_argument('--forecaster-config', default=os.path.join(CONFIGS, 'world_forecaster_cpu.py'))
    p.add_argument('--baseline-configs', nargs='*',
                   default=[os.path.join(CONFIGS, 'world_copy_last.py'), os.path.join(CONFIGS, 'world_ego_warp.py')])
    p.add_argument('--work-dir', default='work_dirs/world')
    p.add_argument('--data-root', help='nuScenes root with occ_infos_{train,val}.pkl (default: the configs\')')
    p.add_argument('--tokenizer-iters', type=int, help='override train_cfg.max_iters of the tokenizer')
    p.add_argument('--forecaster-iters', type=int, help='override train_cfg.max_iters of the forecaster')
    p.add_argument('--eval-only', action='store_true', help='skip training; score the checkpoints in --work-dir')
    p.add_argument('--max-eval-batches', type=int, help='score only the first N test batches')
    p.add_argument('--seed', type=int, default=0)
    return p.parse_args(argv)


def set_data_root(cfg, root: str) -> None:
    """Point every dataloader's dataset at ``root`` (info files occ_infos_<split>.pkl there)."""
    for key in ('train_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if not loader:
            continue
        ds = loader['dataset']
        ds['data_root'] = root
        ds['info_file'] = os.path.join(root, os.path.basename(ds['info_file']))


def load(path: str, args, work_dir: str, iters: int | None = None, options: dict | None = None):
    from occ.engine import load_config
    opts = dict(options or {})
    if iters is not None:
        opts['train_cfg.max_iters'] = int(iters)
    cfg = load_config(path, opts or None, work_dir, args.seed)
    if args.data_root:
        set_data_root(cfg, args.data_root)
    return cfg


def checkpoint_of(work_dir: str) -> str:
    from occ.engine.checkpoint import resolve_last_checkpoint
    ckpt = resolve_last_checkpoint(work_dir)
    if ckpt is None:
        raise FileNotFoundError(f'{work_dir}: no last_checkpoint (train this stage first, or drop --eval-only)')
    return ckpt


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    import occ.models  # noqa: F401  (registers the world model and its dataset)
    from occ.engine import OccRunner
    from occ.models.world import evaluate_forecasters, format_table
    from occ.registry import MODELS
    from occ.utils.io import atomic_open, atomic_save_json

    tok_dir = os.path.join(args.work_dir, 'tokenizer')
    fc_dir = os.path.join(args.work_dir, 'forecaster')
    if not args.eval_only:
        OccRunner.from_cfg(load(args.tokenizer_config, args, tok_dir, args.tokenizer_iters)).train()
    tok_ckpt = checkpoint_of(tok_dir)
    fc_cfg = load(args.forecaster_config, args, fc_dir, args.forecaster_iters,
                  {'model.tokenizer_ckpt': tok_ckpt})
    if not args.eval_only:
        OccRunner.from_cfg(fc_cfg).train()
    fc_ckpt = checkpoint_of(fc_dir)

    world = MODELS.build(fc_cfg.model)
    state = torch.load(fc_ckpt, map_location='cpu', weights_only=False)
    world.load_state_dict(state.get('state_dict', state))
    models = {'world model': world}
    for path in args.baseline_configs:
        cfg = load(path, args, args.work_dir)
        models[os.path.splitext(os.path.basename(path))[0]] = MODELS.build(cfg.model)
    loader = OccRunner.build_dataloader(fc_cfg.test_dataloader, seed=args.seed)
    num_future = int(fc_cfg.model.num_future)
    res = evaluate_forecasters(models, loader, num_future, args.max_eval_batches)
    table = format_table(res, num_future)
    cur = res['world model']['current']
    text = (f'{res["samples"]} samples ({fc_cfg.test_dataloader.dataset.info_file}); mIoU over classes 0..16 '
            f'and geometry IoU per horizon, unmasked (OccWorld protocol), in %.\n\n{table}\n\n'
            f'Tokenizer reconstruction of the current frame: mIoU {100 * cur["miou"]:.1f}, '
            f'IoU {100 * cur["iou"]:.1f}.\nCheckpoints: {tok_ckpt}, {fc_ckpt}\n')
    atomic_save_json(os.path.join(args.work_dir, 'world_eval.json'),
                     res, default=lambda v: v.tolist() if hasattr(v, 'tolist') else float(v))
    with atomic_open(os.path.join(args.work_dir, 'world_eval.md'), 'w') as f:
        f.write(text)
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
