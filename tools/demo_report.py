#!/usr/bin/env python
"""Last step of the CPU demo: class-prior baseline, evaluation of both, report.

    python tools/demo_report.py configs/occ_cpu_demo.py --work-dir work_dirs/demo \\
        [--pred work_dirs/demo/pred] [--num-pictures 3] [--data-root data/demo]

Expects ``tools/train.py`` and ``tools/test.py ... --out <work-dir>/pred`` to
have run. Computes the per-voxel class prior from the training split's
labels, writes it as the prediction of every held-out sample, scores model
and prior with ``tools/eval_occ.py`` (same GT, same mask), and writes
``<work-dir>/report/report.md`` with the per-class table, the training
curve and prediction-vs-GT pictures.

With ``--unseen-root DIR`` (towns generated with a seed never used in
development, ``create_data`` run on them, and ``tools/test.py ... --out
<work-dir>/pred_unseen`` on their ``occ_infos_val.pkl``) the same model and the
same training-split prior are also scored there and shown beside the held-out
town, each with its per-class table, prior and geometry IoU. ``make demo`` does
this for ``data/demo_unseen`` (``make_synthetic.py --seed 31337 --scenes 3
--frames 8 --val-fraction 0.9``: all three towns held out).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import subprocess
import sys
import time

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('--work-dir', required=True)
    p.add_argument('--pred', help='model predictions (default <work-dir>/pred)')
    p.add_argument('--out', help='report folder (default <work-dir>/report)')
    p.add_argument('--num-pictures', type=int, default=3)
    p.add_argument('--ray-iou', action='store_true', help='also compute RayIoU (slower)')
    p.add_argument('--data-root', default=None, metavar='DIR',
                   help='the --data-root given to train.py/test.py')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                   help='the same overrides given to train.py/test.py')
    p.add_argument('--unseen-root', default=None, metavar='DIR',
                   help='also score the towns of an unseen seed: a root with occ_infos_val.pkl')
    p.add_argument('--unseen-pred', default=None, metavar='DIR',
                   help='model predictions on --unseen-root (default <work-dir>/pred_unseen)')
    p.add_argument('--unseen-label', default='towns of an unseen seed',
                   help='how the report names the --unseen-root set (e.g. "seed 31337, 3 towns")')
    p.add_argument('--require-beat', action='store_true',
                   help='exit with status 3 unless the model beats the prior on mIoU and dynamic mIoU')
    return p.parse_args(argv)


def run_eval(gt_root: str, info_file: str, pred: str, json_path: str, ray_iou: bool) -> None:
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'eval_occ.py'), '--gt', gt_root, '--info', info_file,
           '--pred', pred, '--json', json_path, '--mask', 'camera',
           '--ray-iou' if ray_iou else '--no-ray-iou']
    print('+', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def evaluate_unseen(args, prior, label_grid) -> dict:
    """Score the model's predictions and the training prior on ``--unseen-root``; a ``more_sets`` entry."""
    from occ.analysis.prior import write_prior_predictions
    from occ.data.infos import InfoFile
    from occ.data.occ3d_io import load_occ3d_labels

    root = args.unseen_root
    info_file = osp.join(root, 'occ_infos_val.pkl')
    infos = InfoFile.read(info_file, ('token', 'occ_path')).infos
    if not infos:
        raise SystemExit(f'{info_file}: no held-out samples (generate the unseen towns with --val-fraction 0.9)')
    grid = load_occ3d_labels(osp.join(root, infos[0]['occ_path']))['semantics'].shape
    if tuple(grid) != tuple(label_grid):
        raise SystemExit(f'{root}: labels are {grid}, the training world\'s are {label_grid}; '
                         'generate both with the same --voxel')
    pred = args.unseen_pred or osp.join(args.work_dir, 'pred_unseen')
    prior_dir = osp.join(args.work_dir, 'prior_pred_unseen')
    write_prior_predictions(prior, info_file, prior_dir)
    model_json = osp.join(args.work_dir, 'eval_model_unseen.json')
    prior_json = osp.join(args.work_dir, 'eval_prior_unseen.json')
    run_eval(root, info_file, pred, model_json, args.ray_iou)
    run_eval(root, info_file, prior_dir, prior_json, args.ray_iou)
    scenes = len({i.get('scene_token') for i in infos})
    return dict(key='unseen', title=f'Unseen seed: {args.unseen_label}', model_json=model_json,
                prior_json=prior_json,
                description=f'{len(infos)} samples in {scenes} scene(s) of {root}, a world generated with a '
                            'seed never used in development; same checkpoint, same training-split prior.')


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np

    from occ.analysis.prior import class_prior, write_prior_predictions
    from occ.analysis.report import write_report
    from occ.data.infos import InfoFile
    from occ.data.occ3d_io import load_occ3d_labels, load_prediction
    from occ.engine.config import load_config

    t0 = time.perf_counter()
    cfg = load_config(args.config, args.cfg_options, work_dir=args.work_dir, data_root=args.data_root)
    train_info = cfg.train_dataloader.dataset.info_file
    val_info = cfg.test_dataloader.dataset.info_file
    val_file = InfoFile.read(val_info, ('token', 'occ_path'))
    data_root, val_infos = val_file.dataroot, val_file.infos
    pred_dir = args.pred or osp.join(args.work_dir, 'pred')
    out_dir = args.out or osp.join(args.work_dir, 'report')
    if not val_infos:
        raise SystemExit(f'{val_info}: no held-out samples')
    first = load_occ3d_labels(osp.join(data_root, val_infos[0]['occ_path']))
    label_grid = first['semantics'].shape

    # The prior lives on the label grid: the same resolution the evaluation scores.
    prior = class_prior(train_info, label_grid, mask='camera')
    prior_dir = osp.join(args.work_dir, 'prior_pred')
    write_prior_predictions(prior, val_info, prior_dir)

    model_json = osp.join(args.work_dir, 'eval_model.json')
    prior_json = osp.join(args.work_dir, 'eval_prior.json')
    run_eval(data_root, val_info, pred_dir, model_json, args.ray_iou)
    run_eval(data_root, val_info, prior_dir, prior_json, args.ray_iou)
    more_sets = []
    if args.unseen_root:
        more_sets.append(evaluate_unseen(args, prior, label_grid))

    pictures = []
    step = max(1, len(val_infos) // max(args.num_pictures, 1))
    for info in val_infos[::step][:args.num_pictures]:
        gt = load_occ3d_labels(osp.join(data_root, info['occ_path']))
        pred = load_prediction(osp.join(pred_dir, f"{info['token']}.npz"), label_grid)['semantics']
        pictures.append(dict(token=info['token'], gt=gt['semantics'], mask=gt['mask_camera'],
                             pred=pred, prior=prior))
    info = {
        'config': args.config,
        'data': f'{data_root} ({len(InfoFile.read(train_info))} training / {len(val_infos)} held-out samples, '
                f'labels {label_grid[0]}x{label_grid[1]}x{label_grid[2]})',
        'model input': f"{tuple(cfg.train_dataloader.dataset.img_size)} per camera, "
                       f"{cfg.train_dataloader.dataset.grid_voxel} m model grid",
    }
    held_out = (f'{len(val_infos)} held-out samples in {len({i.get("scene_token") for i in val_infos})} '
                f'scene(s) of the training world ({data_root}): towns the model never trained on.')
    summary = write_report(out_dir, model_json, prior_json, args.work_dir, pictures, info,
                           title='Held-out town', description=held_out, more_sets=more_sets)
    fmt = (lambda v: 'n/a' if v is None else f'{v:.1f}')
    print(f"mIoU          model {fmt(summary['model_miou'])}  prior {fmt(summary['prior_miou'])}")
    print(f"dynamic mIoU  model {fmt(summary['model_dynamic_miou'])}  prior {fmt(summary['prior_dynamic_miou'])}")
    print(f"geometry IoU  model {fmt(summary['model_iou'])}  prior {fmt(summary['prior_iou'])}")
    if 'unseen' in summary:
        u = summary['unseen']
        print(f"{args.unseen_label}: mIoU model {fmt(u['model_miou'])} prior {fmt(u['prior_miou'])}, "
              f"dynamic {fmt(u['model_dynamic_miou'])} / {fmt(u['prior_dynamic_miou'])}, "
              f"geometry IoU {fmt(u['model_iou'])} / {fmt(u['prior_iou'])}")
    print(f'report: {osp.join(out_dir, "report.md")} ({time.perf_counter() - t0:.0f} s)')
    beats = summary['beats_prior_miou'] and summary['beats_prior_dynamic']
    print('the model beats the class prior' if beats else 'WARNING: the model does not beat the class prior')
    return 3 if args.require_beat and not beats else 0


if __name__ == '__main__':
    sys.exit(main())
