"""The demo report: model vs the per-voxel class prior, training curve, pictures.

``write_report`` reads what the demo flow produced (evaluation JSONs of the
trained model and of the prior baseline, mmengine's ``scalars.json`` logs,
prediction files) and writes ``<out_dir>/report.md`` plus PNGs, atomically.
Besides the held-out town of the training world it can show further
evaluation sets side by side (the demo adds towns generated with a seed never
used in development), each with its per-class table, prior and geometry IoU.
"""
from __future__ import annotations

import glob
import json
import math
import os
import os.path as osp

import numpy as np

from occ.constants import CLASS_NAMES, DYNAMIC_CLASSES, SEMANTIC_CLASSES
from occ.geometry import OCC3D_RANGE
from occ.utils.io import atomic_save_figure, atomic_write_bytes


def read_metrics(path: str) -> dict:
    """Normalise an evaluation JSON to ``{'miou', 'iou', 'per_class': {name: IoU or None}}`` (percent).

    Accepts the evaluation tool's summary (``miou``, ``iou``, ``per_class``),
    possibly nested under the mask name, and OccMetric's flat form (``IoU_<name>``).
    """
    try:
        with open(path) as f:
            m = json.load(f)
    except FileNotFoundError as e:
        raise FileNotFoundError(f'{path}: metrics file not found') from e
    except json.JSONDecodeError as e:
        raise ValueError(f'{path}: not valid JSON ({e})') from e
    for key in ('camera', 'mask_camera', 'metrics'):
        if isinstance(m.get(key), dict) and 'miou' in m[key]:
            m = m[key]
            break
    if 'miou' not in m:
        raise ValueError(f'{path}: no "miou" entry (keys: {sorted(m)[:12]})')

    def num(v):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    if isinstance(m.get('per_class'), dict):
        per = {n: num(v) for n, v in m['per_class'].items()}
    else:
        per = {k[4:]: num(v) for k, v in m.items() if k.startswith('IoU_')}
    return {'miou': num(m['miou']), 'iou': num(m.get('iou')), 'per_class': per}


def dynamic_miou(metrics: dict) -> float | None:
    """Mean IoU over occ.constants.DYNAMIC_CLASSES that are defined (present in GT or predicted)."""
    vals = [metrics['per_class'].get(CLASS_NAMES[c]) for c in DYNAMIC_CLASSES]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def read_scalars(work_dir: str) -> list:
    """Training log rows (dicts with ``iter``, ``loss``, ...) from every run under ``work_dir``,
    later runs (resumes) overriding earlier ones at the same iteration."""
    rows = {}
    for f in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(f) as fh:
            for line in fh:
                if line.strip():
                    r = json.loads(line)
                    if 'loss' in r and 'iter' in r:
                        rows[int(r['iter'])] = r
    return [rows[k] for k in sorted(rows)]


def _savefig(fig, path: str) -> None:
    atomic_save_figure(fig, path, close=False, dpi=110, bbox_inches='tight')


def plot_training_curve(rows: list, path: str) -> None:
    """Total and per-term losses (and lr) against iteration, smoothed over 10 iterations."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    if not rows:
        raise ValueError(f'{path}: no training scalars to plot')
    it = np.array([r['iter'] for r in rows])
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(7, 5), sharex=True,
                                    gridspec_kw=dict(height_ratios=(3, 1)))
    terms = ['loss'] + sorted({k for r in rows for k in r if k.startswith('loss_')})
    for k in terms:
        y = np.array([r.get(k, np.nan) for r in rows], dtype=float)
        w = min(10, len(y))
        smooth = np.convolve(np.nan_to_num(y), np.ones(w) / w, mode='valid')
        ax.plot(it[w - 1:], smooth, lw=2 if k == 'loss' else 1, label=k)
    ax.set_yscale('log')
    ax.set_ylabel('loss (10-iter mean)')
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    ax_lr.plot(it, [r.get('lr', np.nan) for r in rows], color='k')
    ax_lr.set_ylabel('lr')
    ax_lr.set_xlabel('iteration')
    ax_lr.grid(alpha=0.3)
    _savefig(fig, path)
    plt.close(fig)


def draw_comparison(gt: np.ndarray, mask: np.ndarray, pred: np.ndarray, prior: np.ndarray,
                    path: str, title: str = '') -> None:
    """GT | model | prior, top-down, restricted to camera-visible voxels."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from occ.vis.bev import bev_colors
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    for ax, (name, sem) in zip(axes, [('ground truth', gt), ('model', pred), ('class prior', prior)]):
        ax.imshow(bev_colors(sem, mask))
        ax.set_title(name, fontsize=9)
        ax.axis('off')
    if title:
        fig.suptitle(title, fontsize=8)
    _savefig(fig, path)
    plt.close(fig)


def _fmt(v) -> str:
    return '–' if v is None else f'{v:.1f}'


def metrics_table(model: dict, prior: dict) -> str:
    lines = ['| class | model IoU | prior IoU |', '|---|---:|---:|']
    for c in SEMANTIC_CLASSES:
        n = CLASS_NAMES[c]
        tag = ' (dynamic)' if c in DYNAMIC_CLASSES else ''
        lines.append(f'| {n}{tag} | {_fmt(model["per_class"].get(n))} | {_fmt(prior["per_class"].get(n))} |')
    lines += [f'| **mIoU** | **{_fmt(model["miou"])}** | **{_fmt(prior["miou"])}** |',
              f'| dynamic-class mIoU | {_fmt(dynamic_miou(model))} | {_fmt(dynamic_miou(prior))} |',
              f'| geometry IoU (occupied vs free) | {_fmt(model["iou"])} | {_fmt(prior["iou"])} |']
    return '\n'.join(lines)


def headline(model: dict, prior: dict) -> dict:
    """Model and prior numbers of one evaluation set (percent) and whether the model beats the prior."""
    return {
        'model_miou': model['miou'], 'prior_miou': prior['miou'],
        'model_dynamic_miou': dynamic_miou(model), 'prior_dynamic_miou': dynamic_miou(prior),
        'model_iou': model['iou'], 'prior_iou': prior['iou'],
        'beats_prior_miou': (model['miou'] or 0) > (prior['miou'] or 0),
        'beats_prior_dynamic': (dynamic_miou(model) or 0) > (dynamic_miou(prior) or 0),
        'beats_prior_geometry': (model['iou'] or 0) > (prior['iou'] or 0),
    }


def _section(title: str, description: str, model: dict, prior: dict) -> list:
    h = headline(model, prior)
    verdict = 'beats' if h['beats_prior_miou'] and h['beats_prior_dynamic'] else 'does NOT beat'
    geometry = 'above' if h['beats_prior_geometry'] else 'NOT above'
    return [f'## {title}', '', description, '',
            f'The model **{verdict}** the class prior on mIoU and on the dynamic classes; its geometry '
            f'IoU is **{geometry}** the prior\'s. Camera-visible voxels (Occ3D `mask_camera`), IoU in percent:',
            '', metrics_table(model, prior), '']


def write_report(out_dir: str, model_json: str, prior_json: str, work_dir: str,
                 pictures: list | None = None, info: dict | None = None,
                 title: str = 'Held-out town', description: str = '', more_sets: list | None = None) -> dict:
    """Write ``out_dir/report.md``, ``training_curve.png`` and the pictures.

    Args:
        model_json, prior_json: evaluation JSONs of the held-out split (``tools/eval_occ.py``).
        pictures: list of dicts ``{token, gt, mask, pred, prior}`` (uint8 grids) to draw.
        info: extra facts for the header (config, timings, data root, ...).
        title, description: heading and one-line description of the held-out set.
        more_sets: further evaluation sets shown beside it, dicts ``{key, title, description,
            model_json, prior_json}``; their numbers go to ``summary[key]``.
    Returns: the headline numbers (also written to ``out_dir/summary.json``).
    """
    os.makedirs(out_dir, exist_ok=True)
    model, prior = read_metrics(model_json), read_metrics(prior_json)
    extra = [(s, read_metrics(s['model_json']), read_metrics(s['prior_json'])) for s in more_sets or []]
    stats_path = osp.join(work_dir, 'train_stats.json')
    stats = json.load(open(stats_path)) if osp.isfile(stats_path) else {}
    rows = read_scalars(work_dir)
    curve = None
    if rows:
        curve = 'training_curve.png'
        plot_training_curve(rows, osp.join(out_dir, curve))
    pics = []
    for p in pictures or []:
        name = f"model_vs_prior_{p['token'][:12]}.png"
        draw_comparison(p['gt'], p['mask'], p['pred'], p['prior'], osp.join(out_dir, name),
                        title=f"sample {p['token']} (camera-visible voxels)")
        pics.append(name)
        try:   # the visualisation module's richer view (error map, 3D), when installed
            from occ.vis.compare import draw_prediction_vs_gt
        except ImportError:
            continue
        name = f"pred_vs_gt_{p['token'][:12]}.png"
        draw_prediction_vs_gt({'semantics': p['gt'], 'mask_camera': p['mask']}, p['pred'],
                              osp.join(out_dir, name), title=f"model, sample {p['token']}",
                              pc_range=p.get('pc_range', OCC3D_RANGE))
        pics.append(name)

    summary = dict(headline(model, prior), train_time_s=stats.get('train_time_s'),
                   iters=stats.get('max_iters'), peak_rss_mb=stats.get('peak_rss_mb'))
    for s, m, p in extra:
        summary[s['key']] = dict(headline(m, p), title=s['title'])
    summary.update(info or {})
    md = ['# occ CPU demo report', '']
    for k, v in (info or {}).items():
        md.append(f'- {k}: {v}')
    if stats:
        md.append(f"- training: {stats.get('max_iters')} iterations in {stats.get('train_time_s', 0) / 60:.1f} min, "
                  f"peak RSS {stats.get('peak_rss_mb')} MiB, final loss {stats.get('final_loss')}")
    md += ['', 'Baseline: the non-learned per-voxel class prior (the most frequent training class at '
               'each voxel, from the training split of the demo world).', '']
    md += _section(title, description, model, prior)
    for s, m, p in extra:
        md += _section(s['title'], s.get('description', ''), m, p)
    if curve:
        md += ['## Training curve', '', f'![training curve]({curve})', '']
    if pics:
        md += ['## Prediction vs ground truth (camera-visible voxels)', '']
        md += [f'![{p}]({p})' for p in pics]
        md.append('')
    atomic_write_bytes(osp.join(out_dir, 'report.md'), '\n'.join(md).encode())
    atomic_write_bytes(osp.join(out_dir, 'summary.json'), json.dumps(summary, indent=2).encode())
    return summary
