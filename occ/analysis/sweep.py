"""Read a bandwidth sweep: a metric against log2(bytes) per strategy, seeds pooled, the share of
full sharing's gain kept at fractions of the full message, and paired intervals.

Each row is one test run: ``name``, ``strategy``, ``bytes`` (mean bytes sent per message or per
frame; be consistent, as OccMetric/predict report it) and its metrics. The strategy is read from
the run's configuration, never from its name (``strategy_from_config``): a tools/ablate.py
``ablation.json`` row names its config file and grid options; a CSV row needs a ``strategy``
column. Strategies:

- a compressor name (``tome``, ``topk``, ``random``, a named variant such as ``tome4``; with a
  non-default codec precision ``+int8`` etc. is appended, and with a degraded link ``+loss0.3``,
  ``+latency1``, ``+posenoise0.5``): a point of that strategy's curve;
- ``full``: full sharing (the whole map, the reference of the gain);
- ``dropped``: the same weights with every message lost on the link (``link.drop_prob=1``), the
  reference row of every table (its output is the ego-only forward of those weights);
- ``ego``: nothing sent (``strategy='none'``, or no collaboration module), e.g. the separately
  trained ego-only model; the reference when no ``dropped`` row exists.

Rows with the same ``name`` from several tables (the same sweep tested with the weights of several
training seeds) are pooled: mean and sample std over seeds. The gain retained at a size ``s`` is
``(m(s) - m_ref) / (m_full - m_ref)``, ``m(s)`` interpolated linearly in log2(bytes) between the
measured budgets of the curve.

    python -m occ.analysis.sweep work_dirs/<sweep>/ablation.json --curve tome --plot sweep.png
    python -m occ.analysis.sweep seed0/ablation.json seed1/ablation.json ego/ablation.json \\
        --metric miou_neighbour_only --fractions 1/16 1/64 --paired dropped
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from fractions import Fraction

REFERENCES = ('dropped', 'ego')
_ALIASES = {'name': ('name', 'config', 'run'), 'bytes': ('bytes', 'bytes_sent', 'bytes_per_message')}


def _interp_log2(points: list, x: float):
    """Linear interpolation of (log2 bytes, value) points (sorted) at x; None outside their span."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    if points and math.isclose(points[-1][0], x):
        return points[-1][1]
    return None


def strategy_from_config(config: str, options: dict | None = None) -> str:
    """The strategy a run tested, from its config file and dotted overrides (see module doc)."""
    from mmengine.config import Config

    from occ.analysis.ablate import parse_value
    cfg = Config.fromfile(config, import_custom_modules=False)
    if options:
        cfg.merge_from_dict({k: parse_value(v) if isinstance(v, str) else v for k, v in options.items()})
    collab = (cfg.get('model') or {}).get('collab')
    if not collab:
        return 'ego'
    link = collab.get('link') or {}
    if float(link.get('drop_prob', 0.0)) >= 1.0:
        return 'dropped'
    strategy = str(collab.get('strategy', 'tome'))
    if strategy == 'none':
        return 'ego'
    quant = (collab.get('codec') or {}).get('quant', 'fp16')
    if strategy != 'full' and quant != 'fp16':
        strategy += f'+{quant}'
    # a degraded link is its own row, never the clean curve or the full-sharing reference
    knobs = [('loss', link.get('drop_prob', 0.0)), ('latency', link.get('latency', 0)),
             ('posenoise', link.get('pose_noise_m', 0.0) or link.get('pose_noise_deg', 0.0))]
    return strategy + ''.join(f'+{k}{v:g}' for k, v in knobs if v)


def degraded(strategy: str) -> bool:
    """Whether a strategy label names a degraded link (a robustness row, not a curve)."""
    return any(f'+{k}' in strategy for k in ('loss', 'latency', 'posenoise'))


def load_rows(path: str, metric: str = 'miou') -> list:
    """Rows of a CSV (header) or JSON (list of objects, e.g. ablation.json); errors name the file.

    Returns dicts ``name``, ``strategy``, ``bytes``, ``value`` (``metric``), ``metrics`` (all
    numbers of the run), ``frame_stats`` (path or None), ``table`` (``path``). Failed runs are
    skipped with a note on stderr.
    """
    if not os.path.isfile(path):
        raise ValueError(f'{path}: sweep table not found')
    with open(path, newline='') as f:
        raw = json.load(f) if path.endswith('.json') else list(csv.DictReader(f))
    if not isinstance(raw, list) or not raw:
        raise ValueError(f'{path}: expected a non-empty list of rows')
    rows = []
    for i, r in enumerate(raw):
        # tools/ablate.py's ablation.json keeps the test metrics (bytes_sent, regions) under 'metrics'.
        flat = {**(r.get('metrics') or {}), **r} if isinstance(r.get('metrics'), dict) else dict(r)
        if metric == 'miou' and 'miou' not in flat:
            flat['miou'] = next((flat[k] for k in ('mIoU', 'm_iou') if k in flat), None)
        if flat.get('status', 'ok') != 'ok' or flat.get(metric, '') in (None, ''):
            print(f'{path}: row {i} ({flat.get("name", "?")}) has no {metric}; skipped', file=sys.stderr)
            continue
        row = {}
        for key, names in _ALIASES.items():
            hit = [n for n in names if n in flat]
            if not hit:
                raise ValueError(f'{path}: row {i} lacks a {key!r} column (one of {names}); has {sorted(flat)}')
            row[key] = flat[hit[0]]
        if flat.get('strategy'):
            row['strategy'] = str(flat['strategy'])
        elif flat.get('config'):
            row['strategy'] = strategy_from_config(flat['config'], flat.get('options'))
        else:
            raise ValueError(f'{path}: row {i} ({row["name"]}) has no strategy: give a "strategy" column or '
                             "the run's config (tools/ablate.py writes it)")
        row.update(name=str(flat.get('group') or row['name']), bytes=float(row['bytes']), value=float(flat[metric]),
                   metrics={k: v for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
                   frame_stats=flat.get('frame_stats'), table=path, status='ok')
        rows.append(row)
    return rows


def pool_seeds(rows: list) -> list:
    """One row per ``name``: mean ``bytes`` and ``value``, sample ``std`` (None for one seed), ``n``
    and the pooled ``runs`` (each run's row, its seed index = its order among the tables)."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(r['name'], []).append(r)
    out = []
    for name, rs in groups.items():
        vals = [r['value'] for r in rs]
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
        strategies = {r['strategy'] for r in rs}
        if len(strategies) > 1:
            raise ValueError(f'sweep rows named {name!r} test different strategies {sorted(strategies)}')
        out.append(dict(name=name, strategy=rs[0]['strategy'], bytes=sum(r['bytes'] for r in rs) / len(rs),
                        value=mean, std=std, n=len(rs), runs=rs))
    return out


def budget_report(rows, fractions=(1 / 16,), curve: str | None = None) -> dict:
    """Summarise a sweep (rows of ``load_rows``; several seeds of a name are pooled).

    Args:
        fractions: message sizes, relative to full sharing, to read each curve at.
        curve: only this strategy's curve is read (None: every compressed strategy).
    Returns:
        dict ``rows`` (pooled, sorted by bytes, each with ``log2_bytes`` (None for 0 bytes) and
        ``gain_retained``), ``reference`` (its strategy: 'dropped' or 'ego'), ``reference_value``,
        ``ego_value`` (a separately trained ego-only row, if any), ``full_value``, ``full_bytes``,
        ``curves`` (strategy -> [{'fraction', 'bytes', 'value', 'retained', 'note'}]).
    """
    pooled = pool_seeds(list(rows))
    by_strategy: dict = {}
    for r in pooled:
        by_strategy.setdefault(r['strategy'], []).append(r)
    ref_name = next((s for s in REFERENCES if s in by_strategy), None)
    if ref_name is None:
        raise ValueError("budget_report: no reference row (strategy 'dropped': every message lost, or 'ego')")
    if 'full' not in by_strategy:
        raise ValueError("budget_report: no full-sharing row (strategy 'full')")
    ref, full = by_strategy[ref_name][0], max(by_strategy['full'], key=lambda r: r['bytes'])
    if full['bytes'] <= 0:
        raise ValueError('budget_report: the full-sharing row sends 0 bytes')
    gain = full['value'] - ref['value']
    out_rows = [dict(r, log2_bytes=math.log2(r['bytes']) if r['bytes'] > 0 else None,
                     gain_retained=(r['value'] - ref['value']) / gain if gain else None)
                for r in sorted(pooled, key=lambda r: (r['bytes'], r['strategy']))]
    names = [s for s in by_strategy if s not in REFERENCES + ('full',) and not degraded(s)]
    if curve is not None:
        if curve not in names:
            raise ValueError(f'budget_report: no {curve!r} rows (strategies: {sorted(names)})')
        names = [curve]
    curves = {}
    for s in names:
        pts = sorted((math.log2(r['bytes']), r['value']) for r in by_strategy[s] + [full] if r['bytes'] > 0)
        reads = []
        for fr in fractions:
            target = full['bytes'] * float(fr)
            at = _interp_log2(pts, math.log2(target))
            note = '' if at is not None else f'{target:.0f} B is outside the measured budgets'
            if at is not None and not gain:
                note = 'full sharing does not beat the reference: retained gain undefined'
            reads.append(dict(fraction=float(fr), bytes=target, value=at, note=note,
                              retained=(at - ref['value']) / gain if at is not None and gain else None))
        curves[s] = reads
    ego = by_strategy.get('ego', [None])[0] if ref_name != 'ego' else None
    return dict(rows=out_rows, reference=ref_name, reference_value=ref['value'],
                ego_value=ego['value'] if ego else None, full_value=full['value'], full_bytes=full['bytes'],
                curves=curves, fractions=[float(f) for f in fractions])


def _frac(f: float) -> str:
    return str(Fraction(f).limit_denominator(4096))


def format_report(rep: dict, metric: str = 'miou') -> str:
    """Markdown table (mean ± std over seeds) plus the answer at each fraction per curve."""
    lines = [f'| run | strategy | bytes | log2(bytes) | {metric} | seeds | gain retained |',
             '|---|---|---:|---:|---:|---:|---:|']
    for r in rep['rows']:
        lg = '-' if r['log2_bytes'] is None else f"{r['log2_bytes']:.2f}"
        g = '-' if r['gain_retained'] is None else f"{100 * r['gain_retained']:.1f} %"
        v = f"{r['value']:.2f}" + (f" ± {r['std']:.2f}" if r['std'] is not None else '')
        lines.append(f"| {r['name']} | {r['strategy']} | {r['bytes']:.0f} | {lg} | {v} | {r['n']} | {g} |")
    lines.append(f"\nReference ({rep['reference']}): {rep['reference_value']:.2f}; full sharing: "
                 f"{rep['full_value']:.2f} at {rep['full_bytes']:.0f} B"
                 + (f"; ego-only model trained alone: {rep['ego_value']:.2f}" if rep.get('ego_value') is not None
                    else ''))
    for s, reads in rep['curves'].items():
        for a in reads:
            head = f"At {a['bytes']:.0f} B ({_frac(a['fraction'])} of full) on the {s} curve: "
            lines.append(head + (a['note'] if a['retained'] is None else
                                 f"{metric} {a['value']:.2f}, {100 * a['retained']:.1f} % of full sharing's gain "
                                 f"over the {rep['reference']} reference"))
    return '\n'.join(lines)


def plot_sweep(rep: dict, path: str, title: str = '', metric: str = 'mIoU') -> None:
    """Metric against bytes (log2 x): a line per strategy with ± std error bars, full sharing as a
    star, the reference (dashed) and a separately trained ego-only model (dotted) as horizontal
    lines, dotted verticals at the report's fractions. Atomic write."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from occ.utils.io import atomic_save_figure

    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    groups: dict = {}
    for r in rep['rows']:
        if r['bytes'] > 0 and r['strategy'] not in REFERENCES + ('full',):
            groups.setdefault(r['strategy'], []).append(r)
    for i, (name, rs) in enumerate(sorted(groups.items())):
        rs = sorted(rs, key=lambda r: r['bytes'])
        ax.errorbar([r['bytes'] for r in rs], [r['value'] for r in rs], yerr=[r['std'] or 0.0 for r in rs],
                    marker='o', ms=4, capsize=3, color=f'C{i}', label=name)
    full = [r for r in rep['rows'] if r['strategy'] == 'full']
    if full:
        ax.errorbar([full[-1]['bytes']], [full[-1]['value']], yerr=[full[-1]['std'] or 0.0], marker='*', ms=14,
                    ls='', color='k', capsize=3, label='full sharing')
    ax.axhline(rep['reference_value'], ls='--', color='gray',
               label='same weights, every message dropped' if rep['reference'] == 'dropped' else 'ego only')
    if rep.get('ego_value') is not None:
        ax.axhline(rep['ego_value'], ls=':', color='brown', label='ego-only model (trained alone)')
    for f in rep.get('fractions', []):
        ax.axvline(rep['full_bytes'] * f, ls=':', color='gray', lw=1)
    ax.set_xscale('log', base=2)
    ax.set_xlabel('bytes sent (log2 scale)')
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    atomic_save_figure(fig, path, dpi=110, bbox_inches='tight')


def paired_against(rows: list, baseline: str, metrics, n_boot: int = 1000, group_by_bytes: bool = False) -> list:
    """Paired bootstrap (``occ.analysis.protocol``) of every pooled row against a baseline.

    Seed k of a row is paired with seed k of the baseline (the same weights, when the sweep of
    seed k tested one checkpoint); the frames are the same. ``baseline`` is a strategy
    ('dropped', 'topk', ...); with ``group_by_bytes`` each row is compared with the baseline row
    nearest to it in bytes (equal-bytes comparisons), else with the baseline's only row.
    Returns ``protocol.summarize`` rows (``vs_baseline``: diff, lo, hi, verdict per metric).
    """
    from occ.analysis import protocol
    pooled = pool_seeds(rows)
    bases = [r for r in pooled if r['strategy'] == baseline]
    if not bases:
        raise ValueError(f'paired_against: no {baseline!r} rows')
    if not group_by_bytes and len(bases) > 1:
        raise ValueError(f'paired_against: {len(bases)} {baseline!r} rows; pass group_by_bytes=True')
    out = []
    for r in pooled:
        if r['strategy'] == baseline:
            continue
        base = min(bases, key=lambda b: abs(math.log2(max(b['bytes'], 1)) - math.log2(max(r['bytes'], 1))))
        runs = [dict(group=row['name'], seed_index=k, status='ok', metrics=run['metrics'],
                     frame_stats=run['frame_stats'], config=run['table'], options={}, name=f"{row['name']}#{k}")
                for row in (r, base) for k, run in enumerate(row['runs'])]
        res = protocol.summarize(runs, list(metrics), baseline=base['name'], n_boot=n_boot)
        row = next(x for x in res if x['name'] == r['name'])
        row.update(strategy=r['strategy'], bytes=r['bytes'], baseline_bytes=base['bytes'])
        out.append(row)
    return out


def format_paired(rows: list, metrics) -> str:
    """Markdown: per row, mean ± std and ``Δ [95 % CI]`` with the verdict per metric."""
    head = ['run', 'strategy', 'bytes', 'vs', 'seeds']
    for k in metrics:
        head += [f'{k} (mean ± std)', f'Δ {k} [95 % CI]', 'verdict']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in sorted(rows, key=lambda r: (r['bytes'], r['strategy'])):
        cells = [r['name'], r['strategy'], f"{r['bytes']:.0f}", r['baseline'], str(r['seeds'])]
        for k in metrics:
            m, s = r.get(k), r.get(f'{k}_std')
            cells.append('–' if m is None else f'{m:.2f}' + (f' ± {s:.2f}' if s is not None else ''))
            c = (r.get('vs_baseline') or {}).get(k)
            if c is None or c['diff'] is None:
                cells += [r.get('comparison_error', '–'), '']
            else:
                ci = f" [{c['lo']:+.2f}, {c['hi']:+.2f}]" if c['lo'] is not None else ''
                cells += [f"{c['diff']:+.2f}{ci}", c['verdict'] or '–']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _parse_fraction(text: str) -> float:
    try:
        v = float(Fraction(text))
    except (ValueError, ZeroDivisionError) as e:
        raise argparse.ArgumentTypeError(f'fraction {text!r}: {e}') from e
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f'fraction {text!r} must be in (0, 1]')
    return v


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('tables', nargs='+', help='CSV or JSON sweep tables (tools/ablate.py ablation.json); rows of '
                    'several tables are pooled (one table per training seed, the ego-only run, ...)')
    ap.add_argument('--metric', default='miou', help='metric of the table and the curves (e.g. miou_neighbour_only)')
    ap.add_argument('--curve', default=None, help='only this strategy\'s curve is read (default: all)')
    ap.add_argument('--fractions', nargs='+', type=_parse_fraction, default=[1 / 16], metavar='F',
                    help='message sizes relative to full sharing to read the curves at (default 1/16)')
    ap.add_argument('--plot', default=None, metavar='PNG', help='also draw the metric against bytes')
    ap.add_argument('--title', default='')
    ap.add_argument('--paired', nargs='*', default=None, metavar='STRATEGY',
                    help='paired bootstrap intervals of every row against these strategies (e.g. dropped; '
                         'topk/random compare at equal bytes); needs the runs\' frame_stats')
    ap.add_argument('--bootstrap', type=int, default=1000, metavar='B')
    args = ap.parse_args(argv)
    rows = [r for t in args.tables for r in load_rows(t, args.metric)]
    rep = budget_report(rows, args.fractions, args.curve)
    print(format_report(rep, args.metric))
    if args.plot:
        plot_sweep(rep, args.plot, args.title, args.metric)
        print(f'plot: {args.plot}')
    for base in args.paired or []:
        paired = paired_against(rows, base, [args.metric], args.bootstrap, group_by_bytes=base not in REFERENCES)
        print(f'\nPaired against {base}:\n' + format_paired(paired, [args.metric]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
