"""World-model report: trained stages and baselines scored per horizon on the same batches, over seeds,
with paired bootstrap intervals against a baseline (``tools/eval_world.py``).

A config is a model: a tokenizer (stage 1: its current-frame reconstruction and
codebook usage), a forecaster (stage 2), or a baseline (no weights). Trained
configs load the newest checkpoint of ``<work_root>/<config stem>`` (seed index
0) and ``<work_root>/<config stem>__seed<k>`` (seed k, ``tools/ablate.py
--seeds`` names them so). Every model of every seed sees the same batches
(``occ.evaluation.evaluate_models``), so their per-frame statistics pair up:
``occ.analysis.protocol.paired_bootstrap`` resamples seeds and frames together.
"""
from __future__ import annotations

import math
import os
import os.path as osp

import numpy as np

FORECAST_KEYS = ('forecast_miou_avg', 'forecast_iou_avg', 'forecast_static_miou_avg', 'forecast_dynamic_miou_avg',
                 'forecast_moving_miou_avg', 'forecast_moving_iou_avg')


def run_dir(work_root: str, config: str, seed_index: int) -> str:
    stem = osp.splitext(osp.basename(config))[0]
    return osp.join(work_root, stem if seed_index == 0 else f'{stem}__seed{seed_index}')


def build_model(cfg, checkpoint: str | None):
    """The config's model with ``checkpoint``'s weights (all of them: a stage-2 checkpoint holds its tokenizer)."""
    from mmengine.registry import DefaultScope

    from occ.engine.checkpoint import load_state_dict
    from occ.registry import MODELS
    model_cfg = cfg.model.copy()
    if 'tokenizer_ckpt' in model_cfg:
        model_cfg['tokenizer_ckpt'] = None          # the checkpoint below holds the tokenizer
    with DefaultScope.overwrite_default_scope('occ'):
        model = MODELS.build(model_cfg)
    if checkpoint is not None:
        model.load_state_dict(load_state_dict(checkpoint))
    return model.eval()


def trainable(model) -> bool:
    return any(p.requires_grad for p in model.parameters())


def oracle_of(cfg, forecaster):
    """``TokenizerOracle`` with the forecaster's tokenizer (weights too), anchors and context."""
    from occ.models.world import TokenizerOracle
    m = cfg.model
    oracle = TokenizerOracle(tokenizer=m.tokenizer, anchors=forecaster.anchors, context=m.get('context'),
                             num_future=m.num_future)
    oracle.tokenizer.load_state_dict(forecaster.tokenizer.state_dict())
    return oracle.eval()


def load_models(configs: list, work_root: str, seeds: int, data_root: str | None = None, oracle: bool = False,
                log=print) -> tuple:
    """name -> list of models (one per seed index; one for a baseline), and the first config."""
    from occ.engine import load_config
    from occ.engine.checkpoint import resolve_last_checkpoint
    models, first = {}, None
    for path in configs:
        cfg = load_config(path, data_root=data_root)
        first = first or cfg
        name = osp.splitext(osp.basename(path))[0]
        probe = build_model(cfg, None)
        if not trainable(probe):
            models[name] = [probe]
            continue
        models[name] = []
        for k in range(seeds):
            d = run_dir(work_root, path, k)
            ckpt = resolve_last_checkpoint(d) if osp.isdir(d) else None
            if ckpt is None:
                raise FileNotFoundError(f'{d}: no checkpoint of {name} seed {k} (train it first: tools/train.py '
                                        f'{path} --work-dir {d} --seed {k}, or tools/ablate.py --seeds)')
            if log:
                log(f'{name} seed {k}: {ckpt}')
            models[name].append(build_model(cfg, ckpt))
        if oracle and type(probe).__name__ == 'OccForecasterModel':
            models[f'{name} (tokenizer oracle)'] = [oracle_of(cfg, m) for m in models[name]]
    return models, first


def test_loader(cfg, split: str | None = None, seed: int = 0):
    """The config's test dataloader (``split``: read ``occ_infos_<split>.pkl`` of the same root)."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    loader = cfg.test_dataloader.copy()
    if split:
        ds = loader['dataset']
        ds['info_file'] = osp.join(osp.dirname(ds['info_file']), f'occ_infos_{split}.pkl')
    with DefaultScope.overwrite_default_scope('occ'):
        return Runner.build_dataloader(loader, seed=seed)


def evaluate(models: dict, loader, pc_range, max_batches: int | None = None) -> dict:
    """name -> per seed index the ``evaluate_models`` result (all models on the same batches)."""
    from occ.evaluation import evaluate_models
    flat = {(name, k): m for name, ms in models.items() for k, m in enumerate(ms)}
    res = evaluate_models(flat, loader, pc_range, max_batches=max_batches)
    out = {}
    for (name, k), r in res.items():
        out.setdefault(name, []).append(r)
    return out


def _mean_std(values):
    from occ.analysis.protocol import mean_std
    m, s, _ = mean_std(values)
    return m, s


def _fmt(m, s=None) -> str:
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return 'n/a'
    return f'{m:.1f}' if s is None else f'{m:.1f} ± {s:.1f}'


def horizon_table(results: dict, key: str) -> str:
    """Markdown: one row per model, ``key`` (flat metric prefix, e.g. 'forecast_miou') per horizon and
    the 1-3 s average, mean ± std over seeds."""
    rows = {n: rs for n, rs in results.items() if any(k.startswith(key + '_') for k in rs[0]['flat'])}
    if not rows:
        return ''
    cols = [k[len(key) + 1:] for k in next(iter(rows.values()))[0]['flat'] if k.startswith(key + '_')]
    lines = [f'| model ({key}) | ' + ' | '.join(cols) + ' |', '|---|' + '---|' * len(cols)]
    for name, rs in rows.items():
        cells = []
        for c in cols:
            m, s = _mean_std([r['flat'].get(f'{key}_{c}') for r in rs])
            cells.append(_fmt(m, s))
        lines.append(f'| {name} ({len(rs)}) | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def paired(results: dict, baseline: str, keys, pc_range, n_boot: int = 1000, seed: int = 0) -> dict:
    """name -> key -> paired difference to ``baseline`` with a 95 % bootstrap interval over seeds and frames."""
    from occ.analysis.protocol import paired_bootstrap
    from occ.evaluation import OccEvaluator
    if baseline not in results:
        raise ValueError(f'baseline {baseline!r} is not one of the models: {sorted(results)}')
    base = results[baseline]
    out = {}
    for name, rs in results.items():
        if name == baseline or not any(k in rs[0]['flat'] for k in keys):
            continue
        parts = rs[0]['frames'].parts
        ev = OccEvaluator(ray_iou=False, pc_range=pc_range, parts=parts)

        def metric_fn(table, weights=None, ev=ev):
            return ev.metrics_from_table(table, weights, 'none')
        cand = [r['frames'].table for r in rs]
        bt = [base[k if len(base) == len(rs) else 0]['frames'].table for k in range(len(rs))]
        out[name] = paired_bootstrap(metric_fn, cand, bt, [k for k in keys if k in rs[0]['flat']],
                                     n_boot=n_boot, seed=seed)
    return out


def ratio(results: dict, reference: str, key: str = 'forecast_miou_avg', pc_range=None, n_boot: int = 1000,
          seed: int = 0, level: float = 0.95) -> dict:
    """name -> ``key`` of the model over ``key`` of ``reference`` (e.g. copy-last), on the same frames.

    Returns ``{'ratio', 'std', 'lo', 'hi', 'seeds'}``: the ratio per seed index (mean and std over
    seeds) and a bootstrap interval resampling seeds and frames together (the draws of
    ``paired_bootstrap``), each replicate the mean over its seeds of the recomputed ratio.
    """
    from occ.analysis.protocol import bootstrap_draws, mean_std
    from occ.evaluation import OccEvaluator
    if reference not in results:
        raise ValueError(f'reference {reference!r} is not one of the models: {sorted(results)}')
    ref = results[reference]
    out = {}
    for name, rs in results.items():
        if name == reference or key not in rs[0]['flat']:
            continue
        ev = OccEvaluator(ray_iou=False, pc_range=pc_range, parts=rs[0]['frames'].parts)

        def value(table, w=None):
            v = ev.metrics_from_table(table, w, 'none').get(key)
            return float('nan') if v is None else float(v)
        cand = [r['frames'].table for r in rs]
        base = [ref[k if len(ref) == len(rs) else 0]['frames'].table for k in range(len(rs))]
        per_seed = [value(c) / value(b) for c, b in zip(cand, base)]
        m, s, n = mean_std(per_seed)
        seed_idx, frame_idx = bootstrap_draws(np.random.default_rng(seed), n_boot, len(cand),
                                              len(rs[0]['frames'].tokens))
        reps = []
        for r in range(len(seed_idx)):
            vals = []
            for j, k in enumerate(seed_idx[r]):
                w = np.bincount(frame_idx[r, j], minlength=len(rs[0]['frames'].tokens))
                vals.append(value(cand[k], w) / value(base[k], w))
            reps.append(float(np.mean(vals)))
        ok = np.asarray([v for v in reps if math.isfinite(v)])
        tail = 100.0 * (1.0 - level) / 2.0
        lo, hi = (float(v) for v in np.percentile(ok, [tail, 100.0 - tail])) if len(ok) else (None, None)
        out[name] = {'ratio': m, 'std': s, 'lo': lo, 'hi': hi, 'seeds': n}
    return out


def ratio_table(ratios: dict, reference: str, key: str = 'forecast_miou_avg') -> str:
    if not ratios:
        return ''
    lines = [f'| model | {key} / {reference} (mean ± std over seeds) | 95 % interval |', '|---|---|---|']
    for name, r in ratios.items():
        cell = 'n/a' if r['ratio'] is None else (f"{r['ratio']:.2f}x" if r['std'] is None
                                                 else f"{r['ratio']:.2f}x ± {r['std']:.2f}")
        iv = 'n/a' if r['lo'] is None else f"[{r['lo']:.2f}, {r['hi']:.2f}]"
        lines.append(f'| {name} | {cell} | {iv} |')
    return '\n'.join(lines)


def paired_table(diffs: dict, baseline: str) -> str:
    if not diffs:
        return ''
    keys = list(dict.fromkeys(k for d in diffs.values() for k in d))
    lines = [f'| model − {baseline} | ' + ' | '.join(keys) + ' |', '|---|' + '---|' * len(keys)]
    for name, d in diffs.items():
        cells = []
        for k in keys:
            v = d.get(k)
            if not v or v['diff'] is None:
                cells.append('n/a')
            else:
                cells.append(f"{v['diff']:+.2f} [{_fmt(v['lo'])}, {_fmt(v['hi'])}] {v['verdict']}")
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def tokenizer_rows(results: dict, models: dict) -> str:
    """Current-frame reconstruction (unmasked) and codebook usage of every model that reports tokens."""
    from occ.evaluation.forecasting import codebook_usage
    lines = ['| model | current-frame mIoU | IoU | codebook usage | perplexity | tokens / frame | compression |',
             '|---|---|---|---|---|---|---|']
    for name, rs in results.items():
        tok = getattr(models[name][0], 'tokenizer', None)
        miou = _mean_std([r['summary']['by_mask']['none']['miou'] for r in rs])
        iou = _mean_std([r['summary']['by_mask']['none']['iou'] for r in rs])
        use = ppl = None
        if rs[0]['codes'] is not None and tok is not None:
            u = [codebook_usage(r['codes'], tok.num_codes) for r in rs]
            use, ppl = _mean_std([100 * x['usage'] for x in u]), _mean_std([x['perplexity'] for x in u])
        tokens = comp = 'n/a'
        if tok is not None and rs[0]['codes'] is not None:
            x, y, z = tok.grid_shape
            n = tok.token_shape[0] * tok.token_shape[1]
            tokens = str(n)
            comp = f'{x * y * z * math.log2(18) / (n * math.log2(tok.num_codes)):.0f}x'
        lines.append(f'| {name} | {_fmt(*miou)} | {_fmt(*iou)} | {_fmt(*use) if use else "n/a"} | '
                     f'{_fmt(*ppl) if ppl else "n/a"} | {tokens} | {comp} |')
    return '\n'.join(lines)


def report(configs: list, work_root: str = 'work_dirs', seeds: int = 1, baseline: str | None = None,
           data_root: str | None = None, split: str | None = None, oracle: bool = False,
           max_batches: int | None = None, out_dir: str | None = None, n_boot: int = 1000, log=print,
           ratio_to: str | None = None) -> str:
    """Load, score and tabulate; write ``world_eval.md`` / ``.json`` into ``out_dir`` (default work_root).

    ``baseline``: the config stem every model is compared with (paired differences); ``ratio_to``: the
    stem whose 1-3 s average mIoU every model's is divided by (e.g. copy-last: OccWorld's ratio).
    """
    from occ.utils.io import atomic_save_json, atomic_write_bytes
    models, cfg = load_models(configs, work_root, seeds, data_root, oracle, log)
    loader = test_loader(cfg, split)
    pc_range = tuple(cfg.test_evaluator.get('pc_range', (-40.0, -40.0, -1.0, 40.0, 40.0, 5.4)))
    results = evaluate(models, loader, pc_range, max_batches)
    n = len(results[next(iter(results))][0]['frames'].tokens)
    ds = loader.dataset
    lines = [f'{n} samples of {getattr(ds, "ann_file", None) or cfg.test_dataloader.dataset.info_file}'
             f'{" (" + split + " split)" if split else ""}; unmasked (OccWorld protocol), in %; mean ± std over '
             f'seeds (number of seeds in brackets); avg = mean of 1, 2, 3 s.', '']
    for key in ('forecast_miou', 'forecast_iou', 'forecast_static_miou', 'forecast_dynamic_miou',
                'forecast_moving_miou', 'forecast_moving_iou'):
        t = horizon_table(results, key)
        if t:
            lines += [t, '']
    lines += ['Current frame (the reconstruction of a tokenizer, the input of a forecaster):', '',
              tokenizer_rows(results, models), '']
    diffs = {}
    if baseline:
        keys = list(FORECAST_KEYS) + [f'forecast_dynamic_miou_{h}' for h in ('1s', '1.5s', '2s', '2.5s', '3s')]
        diffs = paired(results, baseline, keys, pc_range, n_boot)
        lines += [f'Paired differences to {baseline}: mean over seeds, 95 % bootstrap interval over seeds and '
                  'frames, verdict.', '', paired_table(diffs, baseline), '']
    ratios = {}
    if ratio_to:
        ratios = ratio(results, ratio_to, 'forecast_miou_avg', pc_range, n_boot)
        lines += [f'1-3 s average mIoU over {ratio_to}\'s on the same frames (bootstrap over seeds and frames):', '',
                  ratio_table(ratios, ratio_to), '']
    text = '\n'.join(lines)
    out_dir = out_dir or work_root
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_bytes(osp.join(out_dir, 'world_eval.md'), text.encode())
    atomic_save_json(osp.join(out_dir, 'world_eval.json'),
                     {'results': {n: [r['flat'] for r in rs] for n, rs in results.items()}, 'paired': diffs,
                      'ratios': ratios, 'samples': n}, default=lambda v: v.tolist() if hasattr(v, 'tolist') else float(v))
    return text


__all__ = ['report', 'load_models', 'evaluate', 'horizon_table', 'paired', 'paired_table', 'ratio', 'ratio_table',
           'tokenizer_rows',
           'run_dir', 'FORECAST_KEYS']
