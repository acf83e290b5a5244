"""Read a bandwidth sweep: how much of full sharing's gain survives at 1/16 of its bytes.

Input rows are (name, bytes, mIoU): ``bytes`` is the mean bytes sent per
message (or per frame; be consistent), as OccMetric/predict report it. The
ego-only row has 0 bytes (or is named ``ego``); the full-sharing row is
named ``full`` (or has the most bytes). The gain retained at a size ``s`` is
``(mIoU(s) - mIoU_ego) / (mIoU_full - mIoU_ego)``, with ``mIoU(s)``
interpolated linearly in log2(bytes) between measured budgets.

With ``--curve tome`` only the rows whose name contains ``tome`` (plus the
full-sharing row) make the curve read at 1/16; without it every compressed
row does. ``--plot PNG`` draws mIoU against bytes (log x) with one line per
strategy, ego-only as a horizontal line and full sharing as a star.

    python -m occ.analysis.sweep results.csv     # columns name, bytes, miou
    python -m occ.analysis.sweep work_dirs/<ablation>/ablation.json --curve tome --plot sweep.png
    python -m occ.analysis.sweep ego/ablation.json budgets/ablation.json --curve tome   # pooled
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys

_ALIASES = {'name': ('name', 'config', 'run'), 'bytes': ('bytes', 'bytes_sent', 'bytes_per_message'),
            'miou': ('miou', 'mIoU', 'm_iou')}


def _interp_log2(points: list, x: float):
    """Linear interpolation of (log2 bytes, mIoU) points (sorted) at x; None outside their span."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    if points and math.isclose(points[-1][0], x):
        return points[-1][1]
    return None


STRATEGY_NAMES = ('tome', 'topk', 'random', 'full', 'ego')


def strategy_of(name: str) -> str:
    """The strategy a run name stands for: 'collab_common__strategy-topk_budget_bytes-20000' (a
    tools/ablate.py --grid point) or 'collab_budget_topk_20k' -> 'topk'; '' if none."""
    parts = name.replace('-', '_').split('_')
    return next((s for s in STRATEGY_NAMES if s in parts), '')


def budget_report(rows, ego_name: str = 'ego', full_name: str = 'full', fraction: float = 1 / 16,
                  curve: str | None = None) -> dict:
    """Summarise a sweep.

    Args:
        rows: iterable of dicts with ``name``, ``bytes``, ``miou``.
        fraction: the message size, relative to full sharing, to read the curve at.
        curve: only rows whose strategy (``strategy_of``) is this one, plus the full row,
            form the curve read at ``fraction`` (None: every row but ego-only).
    Returns:
        dict ``rows`` (each with ``bytes``, ``log2_bytes`` (None for 0 bytes), ``miou``,
        ``gain_retained``), ``ego_miou``, ``full_miou``, ``full_bytes``, ``target_bytes``,
        ``miou_at_target`` and ``retained_at_target`` (None when the target lies outside the
        measured budgets, with the reason in ``note``).
    """
    rows = [dict(name=str(r['name']), bytes=float(r['bytes']), miou=float(r['miou'])) for r in rows]
    ego = ([r for r in rows if r['name'] == ego_name] or [r for r in rows if strategy_of(r['name']) == 'ego']
           or [r for r in rows if r['bytes'] == 0])
    if not ego:
        raise ValueError(f'budget_report: no ego-only row (name {ego_name!r} or bytes 0)')
    full = ([r for r in rows if r['name'] == full_name] or [r for r in rows if strategy_of(r['name']) == 'full']
            or [max(rows, key=lambda r: r['bytes'])])
    ego, full = ego[0], full[0]
    if full['bytes'] <= 0:
        raise ValueError('budget_report: the full-sharing row sends 0 bytes')
    gain = full['miou'] - ego['miou']
    out_rows = []
    for r in sorted(rows, key=lambda r: r['bytes']):
        out_rows.append(dict(r, log2_bytes=math.log2(r['bytes']) if r['bytes'] > 0 else None,
                             gain_retained=(r['miou'] - ego['miou']) / gain if gain else None))
    target = full['bytes'] * fraction
    on_curve = [r for r in rows if r['bytes'] > 0 and r is not ego
                and (curve is None or r is full or strategy_of(r['name']) == curve)]
    if curve is not None and len(on_curve) < 2:
        raise ValueError(f'budget_report: no {curve!r} rows besides full sharing')
    pts = sorted({(math.log2(r['bytes']), r['miou']) for r in on_curve})
    at = _interp_log2(pts, math.log2(target))
    note = ''
    if at is None:
        note = f'target {target:.0f} B is outside the measured budgets'
    elif not gain:
        note = 'full sharing does not beat ego-only: retained gain undefined'
    return dict(rows=out_rows, ego_miou=ego['miou'], full_miou=full['miou'], full_bytes=full['bytes'],
                target_bytes=target, miou_at_target=at,
                retained_at_target=(at - ego['miou']) / gain if at is not None and gain else None,
                note=note, curve=curve)


def format_report(rep: dict) -> str:
    """Markdown table plus the one-line answer."""
    lines = ['| run | bytes | log2(bytes) | mIoU | gain retained |', '|---|---:|---:|---:|---:|']
    for r in rep['rows']:
        lg = '-' if r['log2_bytes'] is None else f"{r['log2_bytes']:.2f}"
        g = '-' if r['gain_retained'] is None else f"{100 * r['gain_retained']:.1f} %"
        lines.append(f"| {r['name']} | {r['bytes']:.0f} | {lg} | {r['miou']:.2f} | {g} |")
    if rep['retained_at_target'] is None:
        lines.append(f"\nAt {rep['target_bytes']:.0f} B (1/16 of full): {rep['note']}")
    else:
        on = f" on the {rep['curve']} curve" if rep.get('curve') else ''
        lines.append(f"\nAt {rep['target_bytes']:.0f} B (1/16 of full){on}: mIoU {rep['miou_at_target']:.2f}, "
                     f"{100 * rep['retained_at_target']:.1f} % of full sharing's gain over ego-only")
    return '\n'.join(lines)


def plot_sweep(rep: dict, path: str, title: str = '') -> None:
    """mIoU against bytes per message/frame (log x): a line per strategy, ego-only as a dashed
    horizontal line, full sharing as a star; a dotted vertical line at 1/16 of full. Atomic write."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from occ.utils.io import atomic_save_figure

    fig, ax = plt.subplots(figsize=(7, 4.2))
    rows = [r for r in rep['rows'] if r['bytes'] > 0]
    full = [r for r in rows if r['bytes'] == rep['full_bytes'] and r['miou'] == rep['full_miou']]
    groups: dict = {}
    for r in rows:
        if r in full:
            continue
        groups.setdefault(strategy_of(r['name']) or r['name'], []).append(r)
    for i, (name, rs) in enumerate(sorted(groups.items())):
        rs = sorted(rs, key=lambda r: r['bytes'])
        ax.plot([r['bytes'] for r in rs], [r['miou'] for r in rs], marker='o', color=f'C{i}', label=name)
    if full:
        ax.plot([full[0]['bytes']], [full[0]['miou']], marker='*', ms=14, ls='', color='k',
                label='full sharing')
    ax.axhline(rep['ego_miou'], ls='--', color='gray', label='ego only')
    ax.axvline(rep['target_bytes'], ls=':', color='gray', lw=1)
    ax.set_xscale('log', base=2)
    ax.set_xlabel('bytes sent (log2 scale)')
    ax.set_ylabel('mIoU (%)')
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    atomic_save_figure(fig, path, dpi=110, bbox_inches='tight')


def load_rows(path: str) -> list:
    """Rows from a CSV (header row) or JSON (list of objects); errors name the file."""
    if not os.path.isfile(path):
        raise ValueError(f'{path}: sweep table not found')
    with open(path, newline='') as f:
        raw = json.load(f) if path.endswith('.json') else list(csv.DictReader(f))
    if not isinstance(raw, list) or not raw:
        raise ValueError(f'{path}: expected a non-empty list of rows')
    rows = []
    for i, r in enumerate(raw):
        # tools/ablate.py's ablation.json keeps the test metrics (bytes_sent) under 'metrics'.
        r = {**(r.get('metrics') or {}), **r} if isinstance(r.get('metrics'), dict) else r
        if r.get('status') == 'failed' or r.get('miou', r.get('mIoU', '')) is None:
            print(f'{path}: row {i} ({r.get("name", "?")}) has no result; skipped', file=sys.stderr)
            continue
        row = {}
        for key, names in _ALIASES.items():
            hit = [n for n in names if n in r]
            if not hit:
                raise ValueError(f'{path}: row {i} lacks a {key!r} column (one of {names}); has {sorted(r)}')
            row[key] = r[hit[0]]
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('tables', nargs='+', help='CSV or JSON sweep tables (tools/ablate.py ablation.json); '
                    'rows of several tables are pooled (e.g. the ego-only run and the budget runs)')
    ap.add_argument('--curve', default=None, choices=STRATEGY_NAMES[:3],
                    help='strategy whose curve is read at 1/16 of full (default: all compressed rows)')
    ap.add_argument('--plot', default=None, metavar='PNG', help='also draw mIoU against bytes')
    ap.add_argument('--title', default='')
    args = ap.parse_args(argv)
    rep = budget_report([r for t in args.tables for r in load_rows(t)], curve=args.curve)
    print(format_report(rep))
    if args.plot:
        plot_sweep(rep, args.plot, args.title)
        print(f'plot: {args.plot}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
