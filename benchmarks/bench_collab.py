"""Collaboration cost: message size and fusion time per strategy; local vs global attention.

    python benchmarks/bench_collab.py [--repeat 3] [--threads 2]

Part 1 runs CollabFusion (sender encode + link + receiver decode/re-pose/attention) for one
ego and two neighbours on the CPU model's BEV (64 x 100 x 100), every strategy at the budgets
of the sweep, and prints bytes, tokens and time relative to full sharing measured in the same
process. Part 2 times LocalTokenAttention (k nearest within a radius) against the same module
made global (every token attends to every cell: k = n, infinite radius) on a 50 x 50 ego grid.
Timings are medians of ``--repeat`` runs after one warm-up.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from occ.geometry import planar_pose
from occ.models.collab import CollabFusion, LocalTokenAttention
from occ.models.collab.tokens import bev_cell_centres

C, X = 64, 100
RNG = (-40.0, -40.0, -1.0, 40.0, 40.0, 5.4)


def _pose(x, y, yaw):
    return planar_pose(x, y, math.radians(yaw))


def _median_time(fn, repeat):
    """Median (wall seconds, process CPU seconds) of ``repeat`` calls after a warm-up."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def bench_strategies(repeat):
    g = torch.Generator().manual_seed(0)
    bev = torch.randn(1, C, X, X, generator=g)
    nbs = torch.randn(1, 2, C, X, X, generator=g)
    batch = dict(ego2global=_pose(0, 0, 0)[None],
                 neighbors=dict(ego2global=torch.stack([_pose(10, 5, 30), _pose(-15, 3, -60)])[None],
                                valid=torch.ones(1, 2, dtype=torch.bool)))
    runs = [('full', 0)] + [(s, b) for s in ('tome', 'topk', 'random') for b in (2000, 20000, 200000)]
    rows = []
    for strat, budget in runs:
        torch.manual_seed(0)
        m = CollabFusion(C, RNG, strategy=strat, budget_bytes=budget,
                         codec=dict(type='WireCodec', quant='fp32' if strat == 'full' else 'fp16'),
                         compressors=dict(tome=dict(select_ratio=0.5))).eval()
        with torch.no_grad():
            _, nbytes = m(bev, batch, nbs)
            t = _median_time(lambda: m(bev, batch, nbs), repeat)
        rows.append((strat, budget, float(nbytes) / 2, m.last_stats['tokens_received'], *t))
    base_w, base_c = rows[0][4], rows[0][5]
    print('| strategy | budget (B) | bytes/message | tokens received (2 msgs) | wall | CPU time | '
          'wall vs full | CPU vs full |')
    print('|---|---:|---:|---:|---:|---:|---:|---:|')
    for strat, budget, nb, tok, w, c in rows:
        print(f'| {strat} | {budget or "-"} | {nb:.0f} | {tok} | {w * 1000:.0f} ms | {c * 1000:.0f} ms | '
              f'{w / base_w:.2f}x | {c / base_c:.2f}x |')


def bench_attention(repeat):
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    q_pos = bev_cell_centres(50, 50, RNG)
    query = torch.randn(q_pos.shape[0], C, generator=g)
    print('\n| tokens | local k=8, 2 m (wall / CPU) | global (wall / CPU) | global / local (wall / CPU) |')
    print('|---:|---:|---:|---:|')
    for n in (64, 512):
        tok = torch.randn(n, C, generator=g)
        pos = torch.rand(n, 2, generator=g) * 80 - 40
        size = torch.randint(1, 20, (n,), generator=g).float()
        local = LocalTokenAttention(C, 4, k=8, radius=2.0, zero_init=False)
        glob = LocalTokenAttention(C, 4, k=n, radius=float('inf'), zero_init=False)
        glob.load_state_dict(local.state_dict())
        with torch.no_grad():
            tl = _median_time(lambda: local(query, q_pos, tok, pos, size), repeat)
            tg = _median_time(lambda: glob(query, q_pos, tok, pos, size), repeat)
        print(f'| {n} | {tl[0] * 1000:.0f} / {tl[1] * 1000:.0f} ms | {tg[0] * 1000:.0f} / {tg[1] * 1000:.0f} ms '
              f'| {tg[0] / tl[0]:.1f}x / {tg[1] / tl[1]:.1f}x |')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bench_strategies(args.repeat)
    bench_attention(args.repeat)


if __name__ == '__main__':
    main()
