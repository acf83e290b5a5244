#!/usr/bin/env python
"""Evaluate a trained checkpoint; optionally write one prediction file per sample.

    python tools/test.py CONFIG CKPT [--out DIR] [--work-dir DIR] [--json FILE]

With ``--out DIR`` every prediction goes to ``DIR/<sample_token>.npz``
(``occ.data.occ3d_io.save_prediction``), ready for ``tools/eval_occ.py``.
Metrics (the config's ``test_evaluator``, OccMetric) are printed and, with
``--json``, written atomically.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--out', help='directory for <sample_token>.npz predictions')
    p.add_argument('--work-dir', help='where test logs go (default work_dirs/<config name>)')
    p.add_argument('--json', help='write the metrics dict to this JSON file')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None)
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import occ.registry  # noqa: F401
    from mmengine.dist import is_main_process

    from occ.engine import CheckpointError, OccRunner, load_config, verify_checkpoint
    from occ.utils.io import atomic_save_json

    try:
        verify_checkpoint(args.checkpoint)
    except CheckpointError as e:
        print(f'test.py: {e}', file=sys.stderr)
        return 1
    cfg = load_config(args.config, args.cfg_options, args.work_dir, None, args.launcher)
    cfg.load_from, cfg.resume = args.checkpoint, False
    if args.out:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='PredictionWriterHook', out_dir=args.out)]
    runner = OccRunner.from_cfg(cfg)
    metrics = runner.test()
    if is_main_process():
        width = max([len(k) for k in metrics] + [6])
        print('\n'.join(f'{k:<{width}}  {v:.4f}' if isinstance(v, float) else f'{k:<{width}}  {v}'
                        for k, v in metrics.items()))
        if args.json:
            atomic_save_json(args.json, {k: (float(v) if hasattr(v, '__float__') else v)
                                         for k, v in metrics.items()})
    return 0


if __name__ == '__main__':
    sys.exit(main())
