"""Several forecasters scored per horizon on the same batches (OccWorld protocol, unmasked).

``evaluate_models`` runs every model's ``predict`` on each batch once and feeds
one ``OccEvaluator`` per model with the metric parts of ``FORECAST_PARTS``:
the current frame (``VoxelIoU``: the reconstruction of a tokenizer, the input of
a forecaster), ``ForecastIoU`` (mIoU / IoU per horizon) and
``ForecastMotionSplit`` (static classes, dynamic classes, moving voxels). The
per-frame statistics come back too (``FrameTable``), so paired intervals
between models (``occ.analysis.protocol.paired_bootstrap``) pool frames exactly.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from occ.evaluation.evaluator import FrameTable, OccEvaluator
from occ.evaluation.forecast import horizon_name
from occ.geometry import OCC3D_RANGE

FORECAST_PARTS = ('VoxelIoU', 'ForecastIoU', 'ForecastMotionSplit')


def _np(x):
    return x.detach().cpu().numpy() if hasattr(x, 'detach') else np.asarray(x)


@torch.no_grad()
def evaluate_models(models: dict, dataloader, pc_range=OCC3D_RANGE, parts=FORECAST_PARTS,
                    max_batches: int | None = None, progress=None) -> dict:
    """Score every model on the same batches.

    Args:
        models: name -> mmengine model whose ``predict`` gives per sample ``semantics``
            [X, Y, Z] and optionally ``semantics_future`` [H, X, Y, Z] and ``tokens`` [x, y].
        dataloader: flat batches of ``OccSequenceDataset`` (``future_semantics``, poses).
        pc_range: the label grid's range.
    Returns:
        name -> ``{'summary': OccEvaluator.summary('none'), 'flat': flat metrics,
        'frames': FrameTable, 'codes': int64 [K] token counts or None}``.
    """
    evals = {name: OccEvaluator(ray_iou=False, pc_range=pc_range, parts=list(parts)) for name in models}
    results = {name: [] for name in models}
    codes = {name: None for name in models}
    tokens = []
    for m in models.values():
        m.eval()
    for i, batch in enumerate(dataloader):
        if max_batches is not None and i >= max_batches:
            break
        n = len(batch['voxel_semantics'])
        tokens += list(batch.get('sample_token') or [f'{i}_{b}' for b in range(n)])
        for name, model in models.items():
            outs = model(**model.data_preprocessor(batch, False), mode='predict')
            for b, out in enumerate(outs):
                res = evals[name].frame_result(
                    pred=out['semantics'], gt=_np(batch['voxel_semantics'][b]),
                    pred_future=out.get('semantics_future'), gt_future=_np(batch['future_semantics'][b]),
                    ego2global=_np(batch['ego2global'][b]), future_ego2global=_np(batch['future_ego2global'][b]))
                results[name].append(res)
                evals[name].add_result(res)
                if out.get('tokens') is not None:
                    t = np.bincount(np.asarray(out['tokens']).ravel())
                    c = codes[name]
                    codes[name] = t if c is None else np.pad(c, (0, max(0, len(t) - len(c)))) + \
                        np.pad(t, (0, max(0, len(c) - len(t))))
        if progress:
            progress(i + 1)
    out = {}
    for name, ev in evals.items():
        out[name] = {'summary': ev.summary('none'), 'flat': ev.flat_metrics('none'),
                     'frames': FrameTable(tokens, ev.frame_table(results[name]), list(parts)),
                     'codes': codes[name]}
    return out


def codebook_usage(counts: np.ndarray, num_codes: int) -> dict:
    """``usage`` (share of the K codes used at least once) and ``perplexity`` (exp entropy) of token counts."""
    c = np.zeros(num_codes, np.int64)
    c[:len(counts)] = counts
    p = c / max(1, c.sum())
    nz = p[p > 0]
    return {'usage': float((c > 0).mean()), 'perplexity': float(np.exp(-(nz * np.log(nz)).sum()))}


def _cell(v) -> str:
    return 'n/a' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{v:.1f}'


def forecast_table(results: dict, keys=('miou', 'iou'), split: bool = False) -> str:
    """Markdown table, one row per model with a forecast: ``keys`` per horizon and the 1-3 s average.

    ``split=False``: ``ForecastIoU``'s mIoU / IoU. ``split=True``: ``ForecastMotionSplit``'s
    static / dynamic / moving mIoU (``keys`` then from its entries).
    """
    rows = {n: r['summary'].get('forecast_split' if split else 'forecast') for n, r in results.items()}
    rows = {n: v for n, v in rows.items() if v}
    if not rows:
        return ''
    cols = [k for k in next(iter(rows.values())) if k != 'avg'] + ['avg']
    head = ' / '.join(keys)
    lines = ['| model | ' + ' | '.join(f'{c} {head}' for c in cols) + ' |', '|---|' + '---|' * len(cols)]
    for name, r in rows.items():
        lines.append(f'| {name} | ' + ' | '.join(' / '.join(_cell((r.get(c) or {}).get(k)) for k in keys)
                                               for c in cols) + ' |')
    return '\n'.join(lines)


__all__ = ['FORECAST_PARTS', 'evaluate_models', 'codebook_usage', 'forecast_table', 'horizon_name']
