#!/usr/bin/env python
"""Evaluate a trained checkpoint; optionally write one prediction file per sample.

    python tools/test.py CONFIG CKPT [--out DIR] [--work-dir DIR] [--json FILE] [--data-root DIR]

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
    p.add_argument('checkpoint', help='checkpoint file, or a work dir (uses its last_checkpoint)')
    p.add_argument('--out', help='directory for <sample_token>.npz predictions')
    p.add_argument('--work-dir', help='where test logs go (default work_dirs/<config name>)')
    p.add_argument('--json', help='write the metrics dict to this JSON file')
    p.add_argument('--pred-grid', choices=['labels', 'model'], default='labels',
                   help="grid of the --out files: 'labels' (default) upsamples a coarser model grid "
                        "to the label files' grid so tools/eval_occ.py can score them")
    p.add_argument('--data-root', default=None, metavar='DIR',
                   help="nuScenes root to test on instead of the config's (as tools/train.py --data-root)")
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                   help='override config entries (mmengine), applied after --data-root')
    p.add_argument('--allow-partial', action='store_true',
                   help='test even if the checkpoint lacks some model weights (they stay as initialised); '
                        'without it such a checkpoint is an error')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def label_grid_of(dataset_cfg) -> tuple | None:
    """(X, Y, Z) of the label files behind a dataset config: the grid of its first label file."""
    from occ.data.infos import InfoFile
    from occ.data.occ3d_io import load_occ3d_labels
    info_file = dataset_cfg.get('info_file')
    if not info_file or not os.path.isfile(info_file):
        return None
    data = InfoFile.read(info_file)
    root = dataset_cfg.get('data_root') or data.metadata.get('dataroot', '')
    first = next((i for i in data.infos if i.get('occ_path')), None)
    if first is None:
        return None
    path = os.path.join(root, first['occ_path'])
    return load_occ3d_labels(path)['semantics'].shape if os.path.isfile(path) else None


def resolve_checkpoint(path: str) -> str:
    """A checkpoint file, or a work dir whose ``last_checkpoint`` names one."""
    if os.path.isdir(path):
        from occ.engine.checkpoint import CheckpointError, resolve_last_checkpoint
        target = resolve_last_checkpoint(path)
        if target is None:
            raise CheckpointError(f'{path}: a directory without a last_checkpoint file')
        return target
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmengine.dist import is_main_process
    from mmengine.registry import RUNNERS

    from occ.data.occ3d_io import OccFileError
    from occ.engine import CheckpointError, load_config, verify_checkpoint
    from occ.utils.io import atomic_save_json

    try:
        args.checkpoint = resolve_checkpoint(args.checkpoint)
        verify_checkpoint(args.checkpoint)
    except CheckpointError as e:
        print(f'test.py: {e}', file=sys.stderr)
        return 1
    cfg = load_config(args.config, args.cfg_options, args.work_dir, None, args.launcher,
                      data_root=args.data_root)
    cfg.load_from, cfg.resume = args.checkpoint, False
    info_file = cfg.test_dataloader.dataset.get('info_file')
    if info_file and os.path.isfile(info_file):
        from occ.data.infos import InfoFile
        try:
            if not InfoFile.read(info_file):
                print(f'test.py: {info_file}: the test split has no samples', file=sys.stderr)
                return 2
        except OccFileError as e:
            print(f'test.py: {e}', file=sys.stderr)
            return 1
    if args.out:
        label_grid = label_grid_of(cfg.test_dataloader.dataset) if args.pred_grid == 'labels' else None
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='PredictionWriterHook', out_dir=args.out, label_grid=label_grid)]
    try:
        runner = RUNNERS.build(cfg)       # the config's runner_type (occ.OccRunner)
        runner.allow_partial_load = args.allow_partial
        metrics = runner.test()
    except (CheckpointError, OccFileError) as e:   # bad checkpoint (or another model's), bad data
        print(f'test.py: {e}', file=sys.stderr)
        return 1
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
