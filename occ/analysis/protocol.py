"""Ablation protocol: seeds per config, mean ± std, and a paired bootstrap against a baseline.

Every run's test writes its per-frame statistics (``OccMetric(frame_stats=...)``,
``occ.evaluation.save_frame_table``): one row of additive counts (confusion
matrices, ...) per evaluated frame. That is what makes the interval honest for
mIoU, which is not a mean over frames: a bootstrap replicate resamples frames,
sums their confusion matrices and recomputes mIoU from the sum.

Paired bootstrap of ``config - baseline`` (both trained with seeds 0..S-1, both
evaluated on the same frames):

1. draw S seed indices with replacement, and for each drawn seed F frame
   indices with replacement (``bootstrap_draws``);
2. for each drawn (seed j, frames): metric of the config's run j on those
   frames minus the metric of the baseline's run j on the *same* frames;
3. the replicate is the mean of these S differences.

The point estimate is the mean over seeds of the full-split differences; the
interval is the 2.5 / 97.5 percentiles of the replicates (``np.percentile``,
linear). Verdict: ``better`` when the interval lies above 0, ``worse`` below 0,
else ``within noise`` (every metric here is higher-is-better).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from occ.evaluation.evaluator import FrameTable, OccEvaluator, select_frames

BETTER, WORSE, NOISE = 'better', 'worse', 'within noise'


def mean_std(values: Sequence) -> tuple:
    """(mean, sample std (ddof 1), n) of the finite values; None where undefined (std needs n >= 2)."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return None, None, 0
    return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else None), len(v)


def verdict(lo, hi) -> str | None:
    """``better`` (interval above 0), ``worse`` (below 0) or ``within noise``; None without an interval."""
    if lo is None or hi is None:
        return None
    return BETTER if lo > 0 else WORSE if hi < 0 else NOISE


def bootstrap_draws(rng: np.random.Generator, n_boot: int, n_seeds: int, n_frames: int) -> tuple:
    """Resampling indices: seeds int [B, S] and, per drawn seed, frames int [B, S, F] (with replacement)."""
    seeds = rng.integers(0, n_seeds, (n_boot, n_seeds))
    frames = rng.integers(0, n_frames, (n_boot, n_seeds, n_frames))
    return seeds, frames


def align(candidate: Sequence[FrameTable], baseline: Sequence[FrameTable], names=('config', 'baseline')) -> tuple:
    """Tables of both configs with rows in one token order (the first candidate run's).

    Every run must have evaluated the same frames; the error names the run and the tokens.
    """
    if not candidate or len(candidate) != len(baseline):
        raise ValueError(f'{names[0]} has {len(candidate)} seed run(s), {names[1]} has {len(baseline)}: '
                         'pair them by seed index (train both with the same --seeds)')
    order = list(candidate[0].tokens)
    if len(set(order)) != len(order):
        raise ValueError(f'{names[0]}: duplicate sample tokens in the per-frame statistics')
    out = []
    for who, runs in zip(names, (candidate, baseline)):
        tables = []
        for s, ft in enumerate(runs):
            index = {t: i for i, t in enumerate(ft.tokens)}
            missing = [t for t in order if t not in index]
            extra = len(ft.tokens) - (len(order) - len(missing))
            if missing or extra:
                raise ValueError(f'{who} seed {s} was evaluated on other frames than {names[0]} seed 0 '
                                 f'({len(missing)} missing, {extra} extra; e.g. {(missing or ft.tokens)[:3]})')
            tables.append(select_frames(ft.table, np.array([index[t] for t in order])))
        out.append(tables)
    return out[0], out[1]


def table_metrics(parts) -> Callable:
    """``metric_fn(table, weights) -> flat metrics`` of an evaluator with these parts (camera mask)."""
    ev = OccEvaluator(parts=list(parts) or None)
    return lambda table, weights=None: ev.metrics_from_table(table, weights)


def paired_bootstrap(metric_fn: Callable, candidate: Sequence[dict], baseline: Sequence[dict], keys: Sequence[str],
                     n_boot: int = 1000, seed: int = 0, level: float = 0.95, draws: tuple | None = None) -> dict:
    """Paired difference ``candidate - baseline`` per metric key with a bootstrap interval.

    Args:
        metric_fn: ``(table, weights [F] or None) -> {key: value}`` (e.g. ``table_metrics``).
        candidate, baseline: per seed index, frame tables with the same rows (``align``).
        keys: metric keys to compare.
        n_boot, seed: number of replicates and the generator seed of the draws.
        level: interval coverage (0.95: 2.5 / 97.5 percentiles).
        draws: explicit ``bootstrap_draws`` output (tests); overrides n_boot / seed.
    Returns:
        ``{key: {'diff', 'lo', 'hi', 'verdict', 'replicates'}}`` (None where undefined;
        ``replicates`` counts the finite replicates used).
    """
    n_seeds = len(candidate)
    n_frames = len(next(iter(candidate[0].values())))
    if draws is None:
        draws = bootstrap_draws(np.random.default_rng(seed), n_boot, n_seeds, n_frames)
    seed_idx, frame_idx = draws
    full = [(metric_fn(c), metric_fn(b)) for c, b in zip(candidate, baseline)]
    reps = {k: np.zeros(len(seed_idx)) for k in keys}
    for r in range(len(seed_idx)):
        for j, s in enumerate(seed_idx[r]):
            w = np.bincount(frame_idx[r, j], minlength=n_frames)
            mc, mb = metric_fn(candidate[s], w), metric_fn(baseline[s], w)
            for k in keys:
                reps[k][r] += (_num(mc.get(k)) - _num(mb.get(k))) / n_seeds
    out = {}
    tail = 100.0 * (1.0 - level) / 2.0
    for k in keys:
        diffs = [_num(c.get(k)) - _num(b.get(k)) for c, b in full]
        diff = float(np.mean(diffs)) if all(math.isfinite(d) for d in diffs) else None
        ok = reps[k][np.isfinite(reps[k])]
        lo, hi = (float(v) for v in np.percentile(ok, [tail, 100.0 - tail])) if len(ok) else (None, None)
        out[k] = {'diff': diff, 'lo': lo, 'hi': hi, 'verdict': verdict(lo, hi), 'replicates': int(len(ok))}
    return out


def _num(v) -> float:
    return float('nan') if v is None else float(v)


def summarize(runs: list, metrics: Sequence[str], baseline: str | None = None, n_boot: int = 1000,
              seed: int = 0, load_table: Callable | None = None) -> list:
    """One row per config from its seed runs: mean ± std per metric, and against ``baseline``
    the paired difference, its interval and the verdict.

    Args:
        runs: dicts with ``group`` (config name without the seed), ``seed_index``, ``status``,
            ``metrics`` (flat test metrics) and ``frame_stats`` (path) of each run.
        metrics: metric keys of the table.
        baseline: ``group`` of the baseline config, or None (no comparison).
        load_table: path -> ``FrameTable`` (default ``occ.evaluation.load_frame_table``).
    """
    if load_table is None:
        from occ.evaluation.evaluator import load_frame_table as load_table
    groups = {}
    for r in runs:
        groups.setdefault(r['group'], []).append(r)
    if baseline is not None and baseline not in groups:
        raise ValueError(f'--baseline {baseline!r} is not one of the configs: {sorted(groups)}')
    rows = []
    for name, members in groups.items():
        members = sorted(members, key=lambda r: r['seed_index'])
        ok = [r for r in members if r['status'] == 'ok']
        row = {'name': name, 'config': members[0]['config'], 'options': members[0]['options'],
               'seeds': len(ok), 'runs': [r['name'] for r in members],
               'status': 'ok' if len(ok) == len(members) else f'{len(members) - len(ok)} of {len(members)} runs failed'}
        for k in metrics:
            vals = [r['metrics'].get(k) for r in ok]
            row[k], row[f'{k}_std'], _ = mean_std(vals)
            row[f'{k}_values'] = vals
        for k in ('train_time_s', 'peak_rss_mb'):
            row[k] = mean_std([r.get(k) for r in ok])[0]
        rows.append(row)
    if baseline is None:
        return rows
    base_runs = sorted(groups[baseline], key=lambda r: r['seed_index'])
    for row in rows:
        row['baseline'] = baseline
        if row['name'] == baseline:
            continue
        cand_runs = sorted(groups[row['name']], key=lambda r: r['seed_index'])
        if any(r['status'] != 'ok' for r in cand_runs + base_runs):
            row['comparison_error'] = 'a seed run of this config or the baseline failed'
            continue
        try:
            cand = [load_table(r['frame_stats']) for r in cand_runs]
            base = [load_table(r['frame_stats']) for r in base_runs]
            c_tab, b_tab = align(cand, base, (row['name'], baseline))
        except (OSError, ValueError) as e:
            row['comparison_error'] = str(e)
            continue
        fn = table_metrics(cand[0].parts)
        row['vs_baseline'] = paired_bootstrap(fn, c_tab, b_tab, metrics, n_boot=n_boot, seed=seed)
    return rows


def markdown(rows: list, metrics: Sequence[str]) -> str:
    """Table: mean ± std per metric (over seeds); with a baseline, Δ [95 % interval] and verdict per metric."""
    compare = any('baseline' in r for r in rows)
    head = ['run', 'seeds'] + [f'{k} (mean ± std)' for k in metrics]
    if compare:
        base = next(r['baseline'] for r in rows if 'baseline' in r)
        for k in metrics:
            head += [f'Δ {k} vs {base} [95 % CI]', f'verdict ({k})']
    head += ['train time (s)', 'status']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]

    def ms(m, s):
        if m is None:
            return '–'
        return f'{m:.2f} ± {s:.2f}' if s is not None else f'{m:.2f}'

    for r in rows:
        cells = [r['name'], str(r['seeds'])] + [ms(r.get(k), r.get(f'{k}_std')) for k in metrics]
        if compare:
            for k in metrics:
                c = (r.get('vs_baseline') or {}).get(k)
                if r['name'] == r.get('baseline'):
                    cells += ['(baseline)', '']
                elif c is None or c['diff'] is None:
                    cells += [r.get('comparison_error', '–'), '']
                else:
                    ci = f" [{c['lo']:+.2f}, {c['hi']:+.2f}]" if c['lo'] is not None else ''
                    cells += [f"{c['diff']:+.2f}{ci}", c['verdict'] or '–']
        t = r.get('train_time_s')
        cells += ['–' if t is None else f'{t:.1f}', r['status']]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot(rows: list, metric: str, path: str) -> None:
    """Bar per config: mean of ``metric`` over seeds with ± std error bars (and the seeds as dots)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from occ.utils.io import atomic_save_figure
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(rows) + 2), 4))
    x = np.arange(len(rows))
    means = [r.get(metric) if r.get(metric) is not None else 0.0 for r in rows]
    stds = [r.get(f'{metric}_std') or 0.0 for r in rows]
    ax.bar(x, means, yerr=stds, capsize=5, color=['C1' if r['name'] == r.get('baseline') else 'C0' for r in rows],
           alpha=0.8, error_kw=dict(elinewidth=1.5))
    for i, r in enumerate(rows):
        vals = [v for v in r.get(f'{metric}_values', []) if v is not None]
        ax.scatter([i] * len(vals), vals, color='k', s=12, zorder=3)
        c = (r.get('vs_baseline') or {}).get(metric)
        if c and c.get('verdict'):
            ax.annotate(c['verdict'], (i, means[i] + stds[i]), textcoords='offset points', xytext=(0, 4),
                        ha='center', fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels([r['name'] for r in rows], rotation=30, ha='right', fontsize=7)
    ax.set_ylabel(f'{metric} (mean ± std over seeds)')
    ax.grid(alpha=0.3, axis='y')
    atomic_save_figure(fig, path, dpi=110, bbox_inches='tight')
