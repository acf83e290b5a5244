#!/usr/bin/env python
"""Train the occupancy world model (tokenizer, then forecaster) and score it per horizon against the baselines.

    python tools/train_world.py --mode gt     [--work-dir work_dirs/world_residual]   # tokenizer + GT-mode forecaster
    python tools/train_world.py --mode camera --reuse-tokenizer [--camera-config C --camera-ckpt P]
    python tools/train_world.py --mode both --eval-only        # re-score every trained checkpoint

Stages: ground-truth-occupancy mode ``<work-dir>/tokenizer`` (conditional VQ-VAE)
then ``<work-dir>/forecaster``; camera-driven mode ``<work-dir>/tokenizer_camera``
(also trained on the camera model's predictions as anchors) then
``<work-dir>/forecaster_camera`` (the frozen camera model's cached BEV as context,
its own current prediction as the anchor; the cache is built first with
--camera-config/--camera-ckpt if missing).
Writes <work-dir>/world_eval_<mode>.json and .md: mIoU / IoU per horizon (OccWorld
protocol, unmasked) of the world model(s), the baselines on ground truth and, for the
camera mode, on the camera model's prediction, and the tokenizer's reconstruction.
Each stage alone is also ``tools/train.py configs/world_*.py`` (docs/WORLD.md).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'configs')
GT_BASELINES = {'copy-last (GT current)': 'world_copy_last.py', 'ego-warp (GT current)': 'world_ego_warp.py'}
CAMERA_BASELINES = {'copy-last (camera current)': 'world_copy_last_camera.py',
                    'ego-warp (camera current)': 'world_ego_warp_camera.py'}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--mode', choices=['gt', 'camera', 'both'], default='gt',
                   help='which forecaster(s) to train and score (gt: ground-truth occupancy context)')
    p.add_argument('--tokenizer-config', default=os.path.join(CONFIGS, 'world_residual_tokenizer_cpu.py'))
    p.add_argument('--forecaster-config', default=os.path.join(CONFIGS, 'world_residual_forecaster_cpu.py'))
    p.add_argument('--camera-tokenizer-config',
                   default=os.path.join(CONFIGS, 'world_residual_camera_tokenizer_cpu.py'))
    p.add_argument('--camera-forecaster-config', default=os.path.join(CONFIGS, 'world_residual_camera_cpu.py'))
    p.add_argument('--camera-config', help='camera model config, to build the BEV cache if it is missing')
    p.add_argument('--camera-ckpt', help='camera model checkpoint, to build the BEV cache if it is missing')
    p.add_argument('--work-dir', default='work_dirs/world_residual')
    p.add_argument('--data-root', help='nuScenes root with occ_infos_{train,val}.pkl (default: the configs\')')
    p.add_argument('--tokenizer-iters', type=int, help='override train_cfg.max_iters of the tokenizer')
    p.add_argument('--forecaster-iters', type=int, help='override train_cfg.max_iters of the forecaster(s)')
    p.add_argument('--reuse-tokenizer', action='store_true', help='use the trained tokenizer(s) in --work-dir')
    p.add_argument('--eval-only', action='store_true', help='skip training; score the checkpoints in --work-dir')
    p.add_argument('--no-oracle', action='store_true', help='skip the tokenizer-oracle row')
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


def ensure_camera_cache(cfg, args) -> None:
    """Build the camera BEV cache the camera config reads, if it is missing."""
    cache = cfg.test_dataloader.dataset.get('camera_cache')
    if cache and os.path.isdir(cache) and os.listdir(cache):
        return
    if not (args.camera_config and args.camera_ckpt):
        raise FileNotFoundError(f'{cache}: no camera cache; pass --camera-config and --camera-ckpt '
                                '(or run tools/cache_camera_bev.py)')
    import cache_camera_bev
    cache_camera_bev.main([args.camera_config, args.camera_ckpt, '--out', cache,
                           '--data-root', args.data_root or cfg.test_dataloader.dataset.data_root])


def train_stage(cfg) -> float:
    from occ.engine import OccRunner
    t0 = time.time()
    OccRunner.from_cfg(cfg).train()
    return time.time() - t0


def build_trained(cfg, ckpt: str):
    from occ.engine.checkpoint import load_state_dict
    from occ.registry import MODELS
    model = MODELS.build(cfg.model)
    model.load_state_dict(load_state_dict(ckpt))
    return model


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import copy

    import occ.models  # noqa: F401  (registers the world model and its dataset)
    from occ.engine import OccRunner
    from occ.models.world import evaluate_forecasters, format_table
    from occ.registry import MODELS
    from occ.utils.io import atomic_open, atomic_save_json

    times = {}
    stages = {'gt': (args.tokenizer_config, 'tokenizer', args.forecaster_config, 'forecaster',
                     'world model (GT occupancy)', 'tokenizer oracle (GT mode)'),
              'camera': (args.camera_tokenizer_config, 'tokenizer_camera', args.camera_forecaster_config,
                         'forecaster_camera', 'world model (camera)', 'tokenizer oracle (camera mode)')}
    modes = ['gt', 'camera'] if args.mode == 'both' else [args.mode]
    models, oracles, test_cfg, ckpts = {}, {}, None, []
    for mode in modes:
        tok_path, tok_sub, fc_path, fc_sub, name, oracle_name = stages[mode]
        tok_dir, fc_dir = os.path.join(args.work_dir, tok_sub), os.path.join(args.work_dir, fc_sub)
        tok_cfg = load(tok_path, args, tok_dir, args.tokenizer_iters)
        if mode == 'camera':
            ensure_camera_cache(load(fc_path, args, fc_dir), args)
        if not (args.eval_only or args.reuse_tokenizer):
            times[tok_sub] = train_stage(tok_cfg)
        tok_ckpt = checkpoint_of(tok_dir)
        cfg = load(fc_path, args, fc_dir, args.forecaster_iters, {'model.tokenizer_ckpt': tok_ckpt})
        if not args.eval_only:
            times[fc_sub] = train_stage(cfg)
        ckpt = checkpoint_of(fc_dir)
        ckpts += [tok_ckpt, ckpt]
        models[name] = build_trained(cfg, ckpt)
        if not args.no_oracle:
            oracles[oracle_name] = copy.deepcopy(models[name])
            oracles[oracle_name].predict_mode = 'oracle'
        if test_cfg is None or mode == 'camera':
            test_cfg = cfg          # the camera config's loader also carries the cached camera outputs
    models.update(oracles)
    baselines = dict(GT_BASELINES)
    if 'camera' in modes:
        baselines.update(CAMERA_BASELINES)
    for name, fname in baselines.items():
        models[name] = MODELS.build(load(os.path.join(CONFIGS, fname), args, args.work_dir).model)
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('occ'):      # no Runner has set it with --eval-only
        loader = OccRunner.build_dataloader(test_cfg.test_dataloader, seed=args.seed)
    num_future = int(test_cfg.model.num_future)
    t0 = time.time()
    res = evaluate_forecasters(models, loader, num_future, args.max_eval_batches)
    times['evaluation'] = time.time() - t0
    table = format_table(res, num_future)
    lines = [f'{res["samples"]} samples ({test_cfg.test_dataloader.dataset.info_file}); mIoU over classes 0..16 '
             'and geometry IoU per horizon, unmasked (OccWorld protocol), in %.', '', table, '']
    for name in models:
        cur = res[name]['current']
        lines.append(f'current frame of {name}: mIoU {100 * cur["miou"]:.1f}, IoU {100 * cur["iou"]:.1f}')
    lines += ['', 'The current frame of the GT-mode world model is the conditional tokenizer\'s reconstruction '
              '(given the previous GT frame ego-warped); of the camera-mode model, the camera model\'s own '
              'prediction. A tokenizer-oracle row decodes every future frame from its own ground-truth tokens on '
              'the forecast\'s anchor (reconstruction at gap h given frame t ego-warped, GT or camera: not a '
              'forecast).',
              f'Wall time (s): {", ".join(f"{k} {v:.0f}" for k, v in times.items())}',
              f'Checkpoints: {", ".join(ckpts)}']
    text = '\n'.join(lines) + '\n'
    res['times_s'] = times
    atomic_save_json(os.path.join(args.work_dir, f'world_eval_{args.mode}.json'),
                     res, default=lambda v: v.tolist() if hasattr(v, 'tolist') else float(v))
    with atomic_open(os.path.join(args.work_dir, f'world_eval_{args.mode}.md'), 'w') as f:
        f.write(text)
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
