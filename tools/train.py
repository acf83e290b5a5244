#!/usr/bin/env python
"""Train an occupancy model from a config (mmengine Runner).

    python tools/train.py configs/occ_cpu_demo.py [--work-dir DIR] [--resume [CKPT]]
        [--seed S] [--data-root DIR] [--iters N] [--amp] [--cfg-options key=value ...]
    torchrun --nproc_per_node 8 tools/train.py CONFIG --launcher pytorch

The config runs as stock mmengine loads it (``RUNNERS.build(cfg)``: its ``runner_type``,
occ.OccRunner). The flags are explicit edits (occ.engine.config): ``--data-root`` moves every
dataset and evaluator path to another nuScenes root, ``--iters N`` trains N iterations with
the schedule ending at N, ``--amp`` turns on mixed precision (CUDA); ``--cfg-options`` is
mmengine's dotted override and is applied last.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='config file (Python, mmengine style)')
    p.add_argument('--work-dir', help='where logs and checkpoints go (default work_dirs/<config name>)')
    p.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                   help='resume from CKPT, or without CKPT from the newest complete checkpoint of the work dir '
                        '(its last_checkpoint, or the newest iter_*.pth that verifies)')
    p.add_argument('--seed', type=int, default=None, help='random seed (overrides randomness.seed)')
    p.add_argument('--data-root', default=None, metavar='DIR',
                   help="nuScenes root to train and test on instead of the config's: every dataset's "
                        'data_root and info_file, and the evaluators\' ann_file, move there')
    p.add_argument('--iters', type=int, default=None, metavar='N',
                   help='train N iterations: train_cfg.max_iters=N and the lr schedule ends at N '
                        '(warm-up at most N // 4); a plain --cfg-options train_cfg.max_iters=N keeps '
                        "the config's schedule")
    p.add_argument('--amp', action='store_true',
                   help='mixed precision: AmpOptimWrapper with a dynamic loss scale (needs CUDA)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                   help='override config entries (mmengine), e.g. optim_wrapper.optimizer.lr=1e-3')
    p.add_argument('--allow-partial', action='store_true',
                   help='load a load_from / --resume checkpoint that lacks some model weights (they stay '
                        'as initialised); without it such a checkpoint is an error')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                   help="'pytorch' under torchrun for multi-GPU DDP")
    p.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def init_cpu_distributed(launcher: str) -> bool:
    """torchrun without CUDA: join the process group with gloo ourselves.

    mmengine's pytorch launcher calls ``torch.cuda.set_device`` unconditionally;
    once a group exists the Runner uses it as is, so multi-process CPU training
    (and the DDP test) works with the same command line.
    """
    import torch
    import torch.distributed as dist
    if launcher != 'pytorch' or torch.cuda.is_available():
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    return True


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmengine.registry import RUNNERS

    from occ.data.occ3d_io import OccFileError
    from occ.engine import CheckpointError, NonFiniteLossError, load_config

    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.seed, args.launcher,
                      data_root=args.data_root, max_iters=args.iters, amp=args.amp)
    if init_cpu_distributed(args.launcher) and cfg.get('model_wrapper_cfg') is None:
        # CPU DDP: no device_ids (mmengine's default passes the local GPU index).
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None,
                                     broadcast_buffers=False,
                                     find_unused_parameters=cfg.get('find_unused_parameters', False))
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    try:
        runner = RUNNERS.build(cfg)       # the config's runner_type (occ.OccRunner)
        runner.allow_partial_load = args.allow_partial
        runner.train()
    except (NonFiniteLossError, CheckpointError, OccFileError) as e:
        print(f'train.py: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
