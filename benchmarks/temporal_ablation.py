"""Temporal ablation: train each config, then evaluate it streaming, frame by frame.

For every config (default: configs/ablations/temporal_t{0,1,2,4}.py) this
trains with tools/train.py (one subprocess each, under ``<work-root>/<name>``),
then runs the val split *in scene order, one sample at a time* (the way a car
would) and reports

- ``miou``: Occ3D mIoU inside ``mask_camera`` (the headline number),
- ``miou_occluded``: mIoU over voxels that are occupied in GT but *not* in
  the current frame's ``mask_camera`` (hidden now; temporal memory may have
  seen them earlier); ``recall_occluded`` = share of them predicted occupied,
- ``miou_moving``: mIoU over camera-visible voxels inside the boxes of moving
  objects (instances whose global centre moves faster than ``--min-speed``
  between neighbouring keyframes),
- ``ms_per_frame``: median wall time of one streaming predict call.

Writes ``<work-root>/temporal_ablation.{json,md}`` atomically.

    python benchmarks/temporal_ablation.py --data data/temporal --iters 300
    python benchmarks/temporal_ablation.py --skip-train --work-root work_dirs/temporal_ablation
    # runs trained by tools/ablate.py (same <work-root>/<config name> layout) are evaluated the same way
    # several seeds (one work root each): mean and spread per config, and a plot against T
    python benchmarks/temporal_ablation.py --combine W_seed0/temporal_ablation.json W_seed1/... \
        --work-root work_dirs/temporal_seeds
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

import numpy as np
import torch

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, ROOT)

from occ.constants import FREE  # noqa: E402
from occ.evaluation.confusion import confusion_matrices, iou_from_hist  # noqa: E402
from occ.evaluation.regions import box_mask, moving_instances, occluded_mask  # noqa: E402
from occ.utils.io import atomic_save_figure, atomic_save_json, atomic_write_bytes  # noqa: E402

DEFAULT_CONFIGS = [f'configs/ablations/temporal_t{t}.py' for t in (0, 1, 2, 4)]


# ------------------------------------------------------------------- evaluate
@torch.no_grad()
def evaluate(config: str, run_dir: str, min_speed: float, max_samples: int | None,
             data_root: str | None = None) -> dict:
    from occ.data import occ_collate
    from occ.engine.checkpoint import load_state_dict, resolve_last_checkpoint
    from occ.engine.config import load_config
    from occ.registry import DATASETS, MODELS

    cfg = load_config(config, work_dir=run_dir, data_root=data_root)
    ckpt = resolve_last_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f'{run_dir}: no last_checkpoint; train the config first')
    model = MODELS.build(cfg.model)
    model.load_state_dict(load_state_dict(ckpt), strict=True)
    model.eval()
    ds = DATASETS.build(cfg.test_dataloader.dataset)
    moving = moving_instances(ds.infos, min_speed)
    centers = ds.grid.centers().astype(np.float64)
    margin = ds.grid.voxel_size / 2
    hists = {k: np.zeros((18, 18), np.int64) for k in ('camera', 'occluded', 'moving')}
    times = []
    n = len(ds) if max_samples is None else min(len(ds), max_samples)
    if hasattr(model, 'reset_temporal_state'):
        model.reset_temporal_state()
    for i in range(n):           # scene order: the info file is sorted by (scene, time)
        batch = occ_collate([ds[i]])
        if not torch.allclose(batch['bev_aug'], torch.eye(4)):
            raise ValueError(f'{config}: test-time BEV augmentation is on; boxes would not match the labels')
        data = model.data_preprocessor(batch, False)
        t0 = time.perf_counter()
        pred = model(**data, mode='predict')[0]['semantics']
        times.append(time.perf_counter() - t0)
        gt = batch['voxel_semantics'][0].numpy()
        cam = batch['mask_camera'][0].numpy().astype(bool)
        occluded = occluded_mask(gt, cam)
        mov = box_mask(ds.infos[i], moving[ds.infos[i]['token']], centers, margin) & cam
        for key, region in (('camera', cam), ('occluded', occluded), ('moving', mov)):
            hists[key] += confusion_matrices(pred, gt, region.view(np.uint8))[0]
    occ_hist = hists['occluded']
    res = {
        'miou': iou_from_hist(hists['camera'])['miou'],
        'iou': iou_from_hist(hists['camera'])['iou'],
        'miou_occluded': iou_from_hist(occ_hist)['miou'],
        'recall_occluded': float(occ_hist[:FREE, :FREE].sum() / max(occ_hist[:FREE].sum(), 1)),
        'miou_moving': iou_from_hist(hists['moving'])['miou'],
        'moving_voxels': int(hists['moving'].sum()),
        'occluded_voxels': int(occ_hist.sum()),
        'frames': n,
        'ms_per_frame': 1e3 * float(np.median(times[2:] if len(times) > 4 else times)),
        'checkpoint': osp.relpath(ckpt, ROOT),
    }
    return res


def table(rows: list) -> str:
    head = ['run', 'mIoU', 'IoU', 'mIoU occluded', 'recall occluded', 'mIoU moving', 'ms/frame (stream)',
            'train s']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]

    def pct(v):
        return '—' if v is None or v != v else f'{100 * v:.2f}'
    for r in rows:
        if 'error' in r:
            lines.append(f'| {r["name"]} | failed: {r["error"]} |' + ' |' * (len(head) - 2))
            continue
        train_s = '—' if r.get('train_s') is None else f'{r["train_s"]:.0f}'
        lines.append(f'| {r["name"]} | {pct(r["miou"])} | {pct(r["iou"])} | {pct(r["miou_occluded"])} | '
                     f'{pct(r["recall_occluded"])} | {pct(r["miou_moving"])} | {r["ms_per_frame"]:.0f} | '
                     f'{train_s} |')
    return '\n'.join(lines) + '\n'


METRICS = (('miou', 'mIoU (camera mask)'), ('miou_occluded', 'mIoU, occluded voxels'),
           ('miou_moving', 'mIoU, moving objects'), ('ms_per_frame', 'ms / frame (streaming)'))


def history_length(row: dict) -> int | None:
    """T of a run from its config (model.temporal.num_history; 0 without temporal)."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, row['config']) if not osp.isabs(row['config']) else row['config'])
    temporal = cfg.model.get('temporal')
    return 0 if not temporal else int(temporal['num_history'])


def combine(tables: list) -> list:
    """Pool several runs of the same configs (e.g. seeds): one row per config name with the
    per-run values (``runs``), their mean and their spread (max - min) for every metric."""
    by_name: dict = {}
    for path in tables:
        for r in json.load(open(path)):
            if 'error' in r:
                raise ValueError(f'{path}: run {r["name"]} failed ({r["error"]}); re-run it before combining')
            by_name.setdefault(r['name'], []).append(dict(r, table=path))
    rows = []
    for name, runs in by_name.items():
        row = {'name': name, 'config': runs[0]['config'], 'n': len(runs), 'runs': runs}
        for key, _ in METRICS + (('iou', ''), ('recall_occluded', ''), ('train_s', '')):
            vals = [float(r[key]) for r in runs if r.get(key) is not None]
            row[key] = float(np.mean(vals)) if vals else None
            row[key + '_spread'] = float(np.ptp(vals)) if len(vals) > 1 else None
        row['T'] = history_length(row)
        rows.append(row)
    return sorted(rows, key=lambda r: (r['T'] is None, r['T'], r['name']))


def combined_table(rows: list) -> str:
    head = ['run', 'T', 'runs', 'mIoU', 'IoU', 'mIoU occluded', 'recall occluded', 'mIoU moving',
            'ms/frame (stream)', 'train s']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]

    def cell(r, key, scale=100.0, nd=2):
        v, sp = r.get(key), r.get(key + '_spread')
        if v is None:
            return '—'
        txt = f'{scale * v:.{nd}f}'
        return txt + (f' ± {scale * sp / 2:.{nd}f}' if sp is not None else '')
    for r in rows:
        lines.append(f"| {r['name']} | {r['T']} | {r['n']} | {cell(r, 'miou')} | {cell(r, 'iou')} | "
                     f"{cell(r, 'miou_occluded')} | {cell(r, 'recall_occluded')} | {cell(r, 'miou_moving')} | "
                     f"{cell(r, 'ms_per_frame', 1.0, 0)} | {cell(r, 'train_s', 1.0, 0)} |")
    return '\n'.join(lines) + '\n\n(± half the range over runs)\n'


def plot_combined(rows: list, path: str) -> None:
    """Four panels against T: every run as a dot, the mean as a line. Atomic write."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.4))
    rows = [r for r in rows if r['T'] is not None]
    for ax, (key, label) in zip(axes, METRICS):
        scale = 1.0 if key == 'ms_per_frame' else 100.0
        for r in rows:
            pts = [scale * float(x[key]) for x in r['runs'] if x.get(key) is not None]
            ax.plot([r['T']] * len(pts), pts, 'o', color='C0', alpha=0.45, ms=5)
        ts = [r['T'] for r in rows if r.get(key) is not None]
        ax.plot(ts, [scale * r[key] for r in rows if r.get(key) is not None], '-', color='C1', lw=2,
                label='mean')
        ax.set_xlabel('T (past frames)')
        ax.set_xticks(sorted(set(ts)))
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('configs', nargs='*', default=DEFAULT_CONFIGS)
    ap.add_argument('--work-root', default='work_dirs/temporal_ablation')
    ap.add_argument('--data', default=None, help="data root instead of the configs' (tools/train.py --data-root)")
    ap.add_argument('--iters', type=int, default=None,
                    help='train every run N iterations, the schedule ending at N (tools/train.py --iters)')
    ap.add_argument('--skip-train', action='store_true', help='evaluate existing runs only')
    ap.add_argument('--min-speed', type=float, default=0.5, help='m/s above which an object is moving')
    ap.add_argument('--max-samples', type=int, default=None, help='evaluate only the first N val samples')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seed', type=int, default=None, help='training seed of every run (randomness.seed)')
    ap.add_argument('--combine', nargs='+', default=None, metavar='JSON',
                    help='only pool existing temporal_ablation.json tables (e.g. one per seed) into '
                         '<work-root>/temporal_combined.{md,json,png}')
    args = ap.parse_args(argv)
    if args.combine:
        rows = combine(args.combine)
        os.makedirs(args.work_root, exist_ok=True)
        atomic_save_json(osp.join(args.work_root, 'temporal_combined.json'), rows)
        md = combined_table(rows)
        atomic_write_bytes(osp.join(args.work_root, 'temporal_combined.md'), md.encode())
        plot_combined(rows, osp.join(args.work_root, 'temporal_combined.png'))
        print(md)
        return 0
    torch.set_num_threads(args.threads)
    rows = []
    for config in args.configs:
        name = osp.splitext(osp.basename(config))[0]
        run_dir = osp.join(args.work_root, name)
        row = {'name': name, 'config': config}
        if not args.skip_train:
            cmd = [sys.executable, osp.join(ROOT, 'tools/train.py'), config, '--work-dir', run_dir]
            if args.seed is not None:
                cmd += ['--seed', str(args.seed)]
            if args.data:
                cmd += ['--data-root', args.data]
            if args.iters is not None:
                cmd += ['--iters', str(args.iters)]
            print(f'[train] {name}', flush=True)
            t0 = time.perf_counter()
            rc = subprocess.run(cmd, cwd=ROOT).returncode
            row['train_s'] = time.perf_counter() - t0
            if rc != 0:
                row['error'] = f'training exit {rc} (see {run_dir})'
                rows.append(row)
                continue
        stats = osp.join(run_dir, 'train_stats.json')
        if row.get('train_s') is None and osp.isfile(stats):     # RunStatsHook's record of the run
            row['train_s'] = json.load(open(stats)).get('train_time_s')
        print(f'[eval] {name}', flush=True)
        try:
            row.update(evaluate(config, run_dir, args.min_speed, args.max_samples, args.data))
        except Exception as e:      # one failed run must not lose the others' rows
            row['error'] = f'{type(e).__name__}: {e}'
        rows.append(row)
        print(json.dumps(row), flush=True)
    os.makedirs(args.work_root, exist_ok=True)
    atomic_save_json(osp.join(args.work_root, 'temporal_ablation.json'), rows)
    md = table(rows)
    atomic_write_bytes(osp.join(args.work_root, 'temporal_ablation.md'), md.encode())
    print(md)
    return 0 if all('error' not in r for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
