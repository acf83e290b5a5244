"""Per-horizon forecasting evaluation of several models on the same batches (OccWorld protocol)."""
from __future__ import annotations

import math

import numpy as np
import torch

from occ.constants import NUM_CLASSES
from occ.evaluation import forecast_metrics, future_hists, horizon_name, iou_from_hist
from occ.evaluation.confusion import group_hist


@torch.no_grad()
def evaluate_forecasters(models: dict, dataloader, num_future: int, max_batches: int | None = None) -> dict:
    """Run every model's ``predict`` on each batch and score ``semantics_future`` per horizon.

    Args:
        models: name -> mmengine model (``OccWorldModel``, ``CopyLastForecaster``, ...).
        dataloader: yields flat batches with ``future_semantics`` (``OccSequenceDataset``).
        num_future: H horizons scored.
    Returns:
        name -> ``occ.evaluation.forecast_metrics`` dict (per horizon and 'avg' of 1/2/3 s)
        plus ``'current'``: mIoU/IoU of the model's current-frame ``semantics`` (the
        tokenizer's reconstruction for a world model, the input itself for a copy
        baseline), unmasked like the forecasts; and ``'samples'``: samples scored.
    """
    hists = {name: np.zeros((num_future, NUM_CLASSES, NUM_CLASSES), np.int64) for name in models}
    cur = {name: np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64) for name in models}
    for m in models.values():
        m.eval()
    n = 0
    for i, batch in enumerate(dataloader):
        if max_batches is not None and i >= max_batches:
            break
        gt = batch['future_semantics'][:, :num_future].numpy()
        gt_cur = batch['voxel_semantics'].numpy()
        for name, model in models.items():
            data = model.data_preprocessor(batch, False)
            for b, out in enumerate(model(**data, mode='predict')):
                pred = out['semantics_future']
                if len(pred) < num_future:
                    raise ValueError(f'{name}: predicted {len(pred)} future frames, {num_future} are scored')
                hists[name] += future_hists(pred[:num_future], gt[b])
                cur[name] += group_hist(np.asarray(out['semantics']), gt_cur[b])[0]
        n += len(gt)
    res = {}
    for name, h in hists.items():
        res[name] = forecast_metrics(h)
        m = iou_from_hist(cur[name])
        res[name]['current'] = {'miou': m['miou'], 'iou': m['iou']}
    res['samples'] = n
    return res


def format_table(results: dict, num_future: int) -> str:
    """Markdown table: one row per model, mIoU / IoU (%) per horizon and their 1-3 s average."""
    names = [k for k in results if k != 'samples']
    cols = [horizon_name(h) for h in range(num_future)] + ['avg']
    lines = ['| model | ' + ' | '.join(f'{c} mIoU / IoU' for c in cols) + ' |',
             '|---|' + '---|' * len(cols)]

    def pct(v):
        return 'n/a' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{100 * v:.1f}'
    for name in names:
        r = results[name]
        cells = [f"{pct(r.get(c, {}).get('miou'))} / {pct(r.get(c, {}).get('iou'))}" for c in cols]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
