"""Ablations: run configs (x a grid of overrides), tabulate accuracy, time and memory.

Each run is a separate process (``python -m occ.analysis.ablate --worker ...``)
that trains, then tests, in one mmengine Runner, so its peak RSS is its own.
Results are collected from ``<run>/metrics.json`` and ``<run>/train_stats.json``
into ``ablation.json``, ``ablation.md`` (table) and ``ablation.png`` (plot).

With ``--load-from CKPT`` nothing is trained: every run tests the same weights
under its own config (e.g. one collaboration model at many bandwidth budgets,
as Where2comm sweeps its threshold at inference time).

Protocol (``occ.analysis.protocol``): ``--seeds N`` trains every run with seeds
0..N-1 (``randomness.seed`` and the training set's augmentation seed; run
``<name>__seed<k>``); ``ablation.md`` then gives mean ± std over the seeds per
metric (``--metrics``) and, against ``--baseline NAME``, the paired difference
with a 95 % interval (bootstrap over evaluation frames and seeds, mIoU recomputed
from summed per-frame confusion matrices, which every run's OccMetric writes to
``<run>/frame_stats.npz``) and a verdict: better, worse or within noise. The
per-config numbers go to ``ablation_summary.json``; the plot draws ± std error bars.

Held-out test sets: ``--test-root DIR`` also tests every trained run's last checkpoint on
the nuScenes root DIR (e.g. towns of a world seed never used for any choice), in
``<run>/test_<name of DIR>/``, and writes the same table for it as
``ablation_<name of DIR>.{md,json,png}`` (``ablation_<name>_summary.json`` with seeds/baseline):
settings are chosen on the validation table, the held-out table reports them.
"""
from __future__ import annotations

import argparse
import ast
import itertools
import json
import math
import os
import os.path as osp
import subprocess
import sys
import time

from occ.utils.io import atomic_save_figure, atomic_save_json, atomic_write_bytes

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def parse_value(text: str):
    """'0.5' -> 0.5, '(64,176)' -> (64, 176), 'True' -> True, 'lss' -> 'lss'."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def split_values(text: str) -> list:
    """Comma-separated values, keeping commas inside brackets: '(64,176),(128,352)' -> 2 values."""
    out, depth, cur = [], 0, ''
    for ch in text:
        depth += ch in '([{'
        depth -= ch in ')]}'
        if ch == ',' and depth == 0:
            out.append(cur)
            cur = ''
        else:
            cur += ch
    out.append(cur)
    return [v.strip() for v in out if v.strip()]


def expand_runs(configs: list, grid: list) -> list:
    """Cartesian product of configs and ``key=v1,v2`` grid entries.

    Returns a list of dicts ``{name, config, options: {key: text}}``; ``name``
    is unique and filesystem-safe.
    """
    axes = []
    for g in grid or []:
        if '=' not in g:
            raise ValueError(f'--grid entry {g!r}: expected key=v1,v2,...')
        key, vals = g.split('=', 1)
        values = split_values(vals)
        if not values:
            raise ValueError(f'--grid entry {g!r}: no values')
        axes.append([(key.strip(), v) for v in values])
    runs = []
    for cfg in configs:
        if not osp.isfile(cfg):
            raise FileNotFoundError(f'{cfg}: config file not found')
        stem = osp.splitext(osp.basename(cfg))[0]
        for combo in itertools.product(*axes) if axes else [()]:
            opts = dict(combo)
            tag = '_'.join(f'{k.split(".")[-1]}-{v}' for k, v in combo)
            name = stem + ('__' + tag if tag else '')
            name = ''.join(c if c.isalnum() or c in '-_.' else '-' for c in name)
            runs.append({'name': name, 'config': cfg, 'options': opts})
    names = [r['name'] for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f'ablation runs with the same name: {names} (pass each config once)')
    return runs


FRAME_STATS = 'frame_stats.npz'      # per-frame statistics of a run's test (OccMetric frame_stats)


def expand_seeds(runs: list, seeds: int) -> list:
    """Each run ``seeds`` times (``<name>__seed<k>``, k = 0..seeds-1); every run gets its
    ``group`` (the name without the seed) and ``seed_index``; one seed keeps names as they are
    (and the config's own seed)."""
    out = []
    for run in runs:
        for k in range(seeds):
            r = dict(run, group=run['name'], seed_index=k)
            if seeds > 1:
                r.update(name=f"{run['name']}__seed{k}", seed=k)
            out.append(r)
    return out


def protocol_options(run: dict, run_dir: str) -> dict:
    """Config overrides a run needs beyond its grid point: its seed (``randomness.seed``, an
    OccDataset training set's augmentation ``seed`` and a collaboration model's
    ``model.collab.seed``) and, when its test evaluator is OccMetric,
    the per-frame statistics file for the paired bootstrap."""
    from mmengine.config import Config
    cfg = Config.fromfile(run['config'], import_custom_modules=False)   # read only
    out = {}
    if run.get('seed') is not None:
        out['randomness.seed'] = str(run['seed'])
        ds = cfg.get('train_dataloader', {}).get('dataset', {})
        if isinstance(ds, dict) and str(ds.get('type', '')).split('.')[-1] == 'OccDataset':
            out['train_dataloader.dataset.seed'] = str(run['seed'])
        # A collaboration model's own random streams (link loss and pose noise, random
        # selection, train_mix) are seeded by model.collab.seed: a new seed redraws them too,
        # unless the grid point fixes that seed itself.
        collab = cfg.get('model', {}).get('collab')
        if isinstance(collab, dict) and 'model.collab.seed' not in run.get('options', {}):
            out['model.collab.seed'] = str(run['seed'])
    ev = cfg.get('test_evaluator')
    if isinstance(ev, dict) and str(ev.get('type', '')).split('.')[-1] == 'OccMetric':
        out['test_evaluator.frame_stats'] = osp.join(run_dir, FRAME_STATS)
    return out


# ----------------------------------------------------------------------------- worker

def worker(config: str, work_dir: str, options: dict, iters: int | None,
           load_from: str | None = None, data_root: str | None = None) -> dict:
    """Train then test one config in this process (only test ``load_from`` when given);
    write ``metrics.json``; return metrics. ``iters`` and ``data_root`` act as tools/train.py's
    ``--iters`` / ``--data-root``; ``options`` are dotted config overrides (the grid point)."""
    from mmengine.registry import RUNNERS

    from occ.engine.config import load_config

    opts = {k: parse_value(v) if isinstance(v, str) else v for k, v in options.items()}
    cfg = load_config(config, opts, work_dir, data_root=data_root, max_iters=iters)
    if load_from is not None:          # test only: these weights under this config
        if not osp.isfile(load_from):
            raise FileNotFoundError(f'{load_from}: checkpoint to test not found')
        cfg.load_from, cfg.resume = load_from, False
    else:
        hooks = list(cfg.get('custom_hooks', []))
        if not any(h.get('type') == 'RunStatsHook' for h in hooks):
            cfg.custom_hooks = hooks + [dict(type='RunStatsHook')]
    runner = RUNNERS.build(cfg)       # the config's runner_type (occ.OccRunner)
    if load_from is None:
        runner.train()
    metrics = runner.test()
    metrics = {k: float(v) if isinstance(v, (int, float)) else v for k, v in metrics.items()}
    atomic_save_json(osp.join(work_dir, 'metrics.json'), metrics)
    return metrics


# ----------------------------------------------------------------------------- collect

def _metric(metrics: dict, key: str):
    v = metrics.get(key)
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def collect(run: dict, run_dir: str, metric: str) -> dict:
    """One table row from a finished (or failed) run's files."""
    row = {'name': run['name'], 'config': run['config'], 'options': run['options'],
           'status': 'ok', metric: None}
    row.update({k: run[k] for k in ('group', 'seed_index', 'seed') if k in run})
    if osp.isfile(osp.join(run_dir, FRAME_STATS)):
        row['frame_stats'] = osp.join(run_dir, FRAME_STATS)
    m_path, s_path = osp.join(run_dir, 'metrics.json'), osp.join(run_dir, 'train_stats.json')
    if osp.isfile(m_path):
        metrics = json.load(open(m_path))
        row[metric] = _metric(metrics, metric)
        row['metrics'] = metrics
    else:
        row['status'] = 'failed'
    if osp.isfile(s_path):
        stats = json.load(open(s_path))
        row.update({k: stats.get(k) for k in ('train_time_s', 'peak_rss_mb', 'peak_cuda_mb', 'final_loss')})
        row['iters'] = stats.get('max_iters')
    return row


def markdown_table(rows: list, metric: str) -> str:
    keys = sorted({k for r in rows for k in r['options']})
    head = ['run'] + keys + [metric, 'train time (s)', 'iters', 'peak RSS (MiB)', 'peak CUDA (MiB)',
                             'final loss', 'status']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]

    def f(v, nd=2):
        if v is None:
            return '–'
        return f'{v:.{nd}f}' if isinstance(v, float) else str(v)

    for r in rows:
        cells = [r['name']] + [str(r['options'].get(k, '')) for k in keys] + [
            f(r.get(metric)), f(r.get('train_time_s'), 1), f(r.get('iters')), f(r.get('peak_rss_mb'), 0),
            f(r.get('peak_cuda_mb'), 0), f(r.get('final_loss'), 4), r['status']]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot(rows: list, metric: str, path: str, logx: bool = False) -> str:
    """Line plot of ``metric`` against a single numeric grid key (one line per config),
    else a bar chart per run. Written atomically; returns the kind drawn."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    keys = sorted({k for r in rows for k in r['options']})
    numeric = len(keys) == 1 and all(
        isinstance(parse_value(r['options'][keys[0]]), (int, float))
        and not isinstance(parse_value(r['options'][keys[0]]), bool) for r in rows)
    fig, ax = plt.subplots(figsize=(7, 4))
    if numeric:
        key = keys[0]
        for cfg in dict.fromkeys(r['config'] for r in rows):
            pts = sorted((parse_value(r['options'][key]), r.get(metric)) for r in rows
                         if r['config'] == cfg and r.get(metric) is not None)
            if pts:
                ax.plot(*zip(*pts), marker='o', label=osp.splitext(osp.basename(cfg))[0])
        ax.set_xlabel(key)
        if logx:
            ax.set_xscale('log')
        ax.legend(fontsize=8)
        kind = 'line'
    else:
        vals = [r.get(metric) if r.get(metric) is not None else 0.0 for r in rows]
        ax.bar(range(len(rows)), vals, color=['C0' if r['status'] == 'ok' else 'C3' for r in rows])
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([r['name'] for r in rows], rotation=30, ha='right', fontsize=7)
        kind = 'bar'
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    atomic_save_figure(fig, path, dpi=110, bbox_inches='tight')
    return kind


def run_ablation(configs: list, grid: list, work_root: str, iters: int | None = None,
                 metric: str = 'miou', logx: bool = False, env: dict | None = None,
                 load_from: str | None = None, data_root: str | None = None,
                 seeds: int = 1, baseline: str | None = None, metrics=None, n_boot: int = 1000,
                 test_roots=()) -> list:
    """Run every (config, grid point) in its own process, then write the table and the plot.
    With ``load_from`` every run only tests that checkpoint. ``seeds`` > 1 trains each
    ``seeds`` times; with several seeds or a ``baseline`` the table and plot follow the
    protocol (mean ± std over seeds of ``metrics``; paired bootstrap against ``baseline``).
    ``test_roots``: nuScenes roots on which every trained run's last checkpoint is also tested
    (one table per root, ``ablation_<root name>.*``)."""
    if seeds < 1:
        raise ValueError(f'--seeds must be >= 1, got {seeds}')
    if seeds > 1 and load_from is not None:
        raise ValueError('--seeds trains each config several times; --load-from only tests one checkpoint')
    test_roots = list(test_roots or ())
    if test_roots and load_from is not None:
        raise ValueError('--test-root tests the checkpoints this ablation trains; with --load-from, '
                         'run the ablation again with --data-root instead')
    tags = [test_root_tag(r) for r in test_roots]
    for root, tag in zip(test_roots, tags):
        if not osp.isdir(root):
            raise ValueError(f'--test-root {root}: no such directory')
    if len(set(tags)) != len(tags):
        raise ValueError(f'--test-root: two roots with the same folder name {tags}')
    runs = expand_seeds(expand_runs(configs, grid), seeds)
    if baseline is not None and baseline not in {r['group'] for r in runs}:
        raise ValueError(f'--baseline {baseline!r} is not one of the runs: '
                         f'{sorted(dict.fromkeys(r["group"] for r in runs))}')
    os.makedirs(work_root, exist_ok=True)
    rows, held_out = [], {tag: [] for tag in tags}
    for i, run in enumerate(runs):
        run_dir = osp.join(work_root, run['name'])
        cmd = [sys.executable, '-m', 'occ.analysis.ablate', '--worker', run['config'], '--work-dir', run_dir]
        if iters is not None:
            cmd += ['--iters', str(iters)]
        if load_from is not None:
            cmd += ['--load-from', load_from]
        if data_root is not None:
            cmd += ['--data-root', data_root]
        options = dict(run['options'], **protocol_options(run, run_dir))
        if options:
            cmd += ['--options'] + [f'{k}={v}' for k, v in options.items()]
        print(f'[{i + 1}/{len(runs)}] {run["name"]}', flush=True)
        t0 = time.perf_counter()
        proc_env = dict(os.environ, **(env or {}))
        proc_env['PYTHONPATH'] = os.pathsep.join(
            [ROOT] + [p for p in proc_env.get('PYTHONPATH', '').split(os.pathsep) if p])
        res = subprocess.run(cmd, cwd=os.getcwd(), env=proc_env)
        row = collect(run, run_dir, metric)
        if load_from is not None:
            row['load_from'] = load_from
        row['wall_s'] = round(time.perf_counter() - t0, 1)
        if res.returncode != 0:
            row['status'] = f'failed (exit {res.returncode}, see {run_dir})'
        rows.append(row)
        for root, tag in zip(test_roots, tags):
            held_out[tag].append(_test_on_root(run, run_dir, root, tag, metric, row['status'], proc_env))
    tables = [('ablation', rows)] + [(f'ablation_{tag}', held_out[tag]) for tag in tags]
    for stem, table in tables:
        _write_table(work_root, stem, table, metric, logx, seeds, baseline, metrics, n_boot)
    return rows


def test_root_tag(root: str) -> str:
    """The name a held-out root's table and run folders carry: its folder name."""
    return osp.basename(osp.normpath(root))


def last_checkpoint(run_dir: str) -> str | None:
    """The checkpoint a finished run's ``last_checkpoint`` pointer names (relative to the run), or None."""
    ptr = osp.join(run_dir, 'last_checkpoint')
    if not osp.isfile(ptr):
        return None
    path = open(ptr).read().strip()
    path = path if osp.isabs(path) else osp.join(run_dir, path)
    return path if osp.isfile(path) else None


def _test_on_root(run: dict, run_dir: str, root: str, tag: str, metric: str, status: str, env: dict) -> dict:
    """Test a trained run's last checkpoint on another nuScenes root; its table row."""
    test_dir = osp.join(run_dir, f'test_{tag}')
    ckpt = last_checkpoint(run_dir) if status == 'ok' else None
    if ckpt is None:
        row = collect(run, test_dir, metric)
        row['status'] = f'not tested on {root}: the run has no checkpoint ({status})'
        return row
    cmd = [sys.executable, '-m', 'occ.analysis.ablate', '--worker', run['config'], '--work-dir', test_dir,
           '--load-from', ckpt, '--data-root', root]
    options = dict(run['options'], **protocol_options(run, test_dir))
    if options:
        cmd += ['--options'] + [f'{k}={v}' for k, v in options.items()]
    print(f'    test on {root}', flush=True)
    res = subprocess.run(cmd, cwd=os.getcwd(), env=env)
    row = collect(run, test_dir, metric)
    row.update(load_from=ckpt, test_root=root)
    for k in ('train_time_s', 'peak_rss_mb', 'peak_cuda_mb', 'final_loss', 'iters'):
        row.pop(k, None)                 # a test-only run has no training of its own
    if res.returncode != 0:
        row['status'] = f'failed (exit {res.returncode}, see {test_dir})'
    return row


def _write_table(work_root, stem, rows, metric, logx, seeds, baseline, metrics, n_boot) -> None:
    """``<stem>.json`` (rows), ``<stem>.md`` and ``<stem>.png``; with seeds or a baseline the
    protocol's mean ± std, paired intervals and verdicts (``<stem>_summary.json``)."""
    atomic_save_json(osp.join(work_root, f'{stem}.json'), rows)
    if seeds > 1 or baseline is not None:
        from occ.analysis import protocol
        keys = list(dict.fromkeys([metric] + list(metrics or [])))
        summary = protocol.summarize(rows, keys, baseline, n_boot=n_boot)
        atomic_save_json(osp.join(work_root, f'{stem}_summary.json'), summary)
        atomic_write_bytes(osp.join(work_root, f'{stem}.md'), protocol.markdown(summary, keys).encode())
        protocol.plot(summary, metric, osp.join(work_root, f'{stem}.png'))
        return
    atomic_write_bytes(osp.join(work_root, f'{stem}.md'), markdown_table(rows, metric).encode())
    plot(rows, metric, osp.join(work_root, f'{stem}.png'), logx=logx)


def bandwidth_report(tables: list, out_dir: str, curve: str | None = 'tome') -> str:
    """Pool ablation tables of a collaboration sweep, write ``sweep.md`` and ``sweep.png``
    (mIoU against bytes, log2 x) into ``out_dir``; return the markdown."""
    from occ.analysis.sweep import budget_report, format_report, load_rows, plot_sweep
    rep = budget_report([r for t in tables for r in load_rows(t)], curve=curve)
    md = format_report(rep)
    atomic_write_bytes(osp.join(out_dir, 'sweep.md'), (md + '\n').encode())
    plot_sweep(rep, osp.join(out_dir, 'sweep.png'))
    return md


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('configs', nargs='+', help='config files')
    p.add_argument('--grid', nargs='*', default=[], metavar='KEY=V1,V2',
                   help='dotted config key (as --cfg-options) swept over values, e.g. '
                        'model.collab.budget_bytes=2000,20000; several keys: all combinations')
    p.add_argument('--work-root', default='work_dirs/ablation')
    p.add_argument('--iters', type=int, default=None,
                   help='train every run N iterations, the lr schedule ending at N (tools/train.py --iters)')
    p.add_argument('--data-root', default=None, metavar='DIR',
                   help="every run on this nuScenes root instead of its config's (tools/train.py --data-root)")
    p.add_argument('--metric', default='miou', help='metric key to tabulate and plot (default miou)')
    p.add_argument('--seeds', type=int, default=1, metavar='N',
                   help='train every run with seeds 0..N-1; the table gives mean ± std over them')
    p.add_argument('--baseline', default=None, metavar='NAME',
                   help='run name (config stem [+ grid tag]) to compare every other run against: paired '
                        'difference, 95 %% bootstrap interval over frames and seeds, verdict')
    p.add_argument('--metrics', default='miou,iou', metavar='K1,K2',
                   help='with --seeds/--baseline: metric keys of the table (default miou,iou; '
                        'e.g. miou_history_only)')
    p.add_argument('--bootstrap', type=int, default=1000, metavar='B', help='bootstrap replicates (default 1000)')
    p.add_argument('--logx', action='store_true', help='log x-axis for a numeric grid')
    p.add_argument('--test-root', nargs='+', default=[], metavar='DIR',
                   help='also test every trained run on these nuScenes roots (held-out towns); '
                        'one more table per root: ablation_<folder name>.md')
    p.add_argument('--load-from', default=None, metavar='CKPT',
                   help='do not train: test this checkpoint under every config')
    p.add_argument('--bandwidth-report', nargs='*', default=None, metavar='JSON',
                   help='also write sweep.md / sweep.png: mIoU against bytes sent (log2), one line per '
                        'collaboration strategy, ego-only and full sharing marked, and the share of full '
                        "sharing's gain kept at 1/16 of its bytes (occ.analysis.sweep); JSON: more "
                        'ablation.json tables to pool, e.g. a separately trained ego-only run')
    p.add_argument('--curve', default='tome', help='with --bandwidth-report: the strategy read at 1/16')
    # internal: one run in this process
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--work-dir', help=argparse.SUPPRESS)
    p.add_argument('--options', nargs='*', default=[], help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        opts = dict(o.split('=', 1) for o in args.options)
        worker(args.configs[0], args.work_dir, opts, args.iters, args.load_from, args.data_root)
        return 0
    if args.load_from is not None and not osp.isfile(args.load_from):
        p_err = f'{args.load_from}: checkpoint to test not found'
        print(p_err, file=sys.stderr)
        return 2
    try:
        rows = run_ablation(args.configs, args.grid, args.work_root, args.iters, args.metric, args.logx,
                            seeds=args.seeds, baseline=args.baseline, n_boot=args.bootstrap,
                            metrics=[k for k in args.metrics.split(',') if k],
                            load_from=args.load_from, data_root=args.data_root, test_roots=args.test_root)
    except ValueError as e:            # bad --seeds / --baseline, before any run started
        print(f'ablate: error: {e}', file=sys.stderr)
        return 2
    print(open(osp.join(args.work_root, 'ablation.md')).read())
    print(f'table: {osp.join(args.work_root, "ablation.md")}  plot: {osp.join(args.work_root, "ablation.png")}')
    for root in args.test_root:
        md = osp.join(args.work_root, f'ablation_{test_root_tag(root)}.md')
        print(f'\nheld-out {root}:\n' + open(md).read())
        print(f'table: {md}')
    if args.bandwidth_report is not None:
        tables = list(args.bandwidth_report) + [osp.join(args.work_root, 'ablation.json')]
        print(bandwidth_report(tables, args.work_root, args.curve))
        print(f'bandwidth plot: {osp.join(args.work_root, "sweep.png")}')
    return 0 if all(r['status'] == 'ok' for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
