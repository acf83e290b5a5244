"""Occupancy heads: dense channel-to-height (DenseOccHead) vs sparse coarse-to-fine (SparseOccHead).

Both heads take the same BEV features [1, C, X, Y] and are trained on the
same real Occ3D frame (tests/fixtures, coarsened 2x for the 100x100x8 grid)
with the same losses (class-weighted CE + Lovász-softmax on mask_camera; the
dense head applies them to all camera-visible voxels, the sparse head to its
active ones). Head settings come from configs/_base_/models/lss_dense.py and
lss_sparse.py, with only the grid and the losses set here. One training step = forward + loss + backward;
the sparse head keeps GT-occupied voxels as it does in training. A third
row, ``sparse_keep_all``, runs the sparse head with pruning disabled (every
voxel of every level kept, i.e. a dense 3-D decoder of the same network):
it isolates what pruning buys.

Time: median over ``--repeat`` steps after one warm-up, dense and sparse
interleaved in this process (the sparse/dense ratio is what to compare; the
machine may be loaded). One thread by default: on a loaded 2-core machine two
threads per process mostly measure contention (spconv's CPU kernels suffer
most: 3-7x slower steps in our runs). Peak memory: each (head, grid) runs in a fresh child
process; the figure is the peak resident-set growth over one training step
(peak RSS during the step minus the RSS before it).

    python benchmarks/bench_heads.py [--repeat 3] [--threads 1] [--grids 100x100x8,200x200x16]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, ROOT)

LABELS = os.path.join(ROOT, 'tests/fixtures/occ3d-sample/29796060110c4163b07f06eff4af0753/labels.npz')
CHANNELS = 64
KINDS = ('dense', 'sparse', 'sparse_keep_all')
LOSSES = [dict(type='WeightedCELoss', class_weight='auto'), dict(type='LovaszSoftmaxLoss')]


def load_labels(grid, path=LABELS):
    """Real Occ3D labels at ``grid`` (200x200x16 as is, coarser by majority vote) -> (sem, mask) tensors [1, X, Y, Z]."""
    from occ.data.occ3d_io import load_occ3d_labels
    from occ.data.transforms import downsample_labels
    lab = load_occ3d_labels(path, (200, 200, 16))
    factor = 200 // grid[0]
    sem, masks = downsample_labels(lab['semantics'], {'mask_camera': lab['mask_camera']}, factor)
    if sem.shape != tuple(grid):
        raise ValueError(f'{path}: cannot coarsen 200x200x16 labels to {grid}')
    return torch.from_numpy(sem)[None], torch.from_numpy(masks['mask_camera'])[None].bool()


def build_head(kind, grid):
    from mmengine.config import Config

    import occ.models  # noqa: F401
    from occ.registry import MODELS
    name = 'lss_dense' if kind == 'dense' else 'lss_sparse'
    cfg = Config.fromfile(os.path.join(ROOT, f'configs/_base_/models/{name}.py')).model.head.to_dict()
    cfg['in_channels'] = CHANNELS
    cfg['losses'] = LOSSES
    if kind == 'dense':
        cfg['num_z'] = grid[2]
    else:
        cfg['grid_shape'] = tuple(grid)
    if kind == 'sparse_keep_all':
        cfg['keep_threshold'] = -1.0          # sigmoid > -1 everywhere: nothing pruned
    torch.manual_seed(0)
    return MODELS.build(cfg).train()


def train_step(kind, head, bev, sem, mask):
    """One forward + loss + backward; returns (seconds, active voxels at the last level)."""
    head.zero_grad(set_to_none=True)
    bev = bev.detach().requires_grad_(True)
    t0 = time.perf_counter()
    if kind == 'dense':
        out = head(bev)
    else:
        out = head(bev, voxel_semantics=sem, mask=mask)
    losses = head.loss(out, sem, mask)
    sum(losses.values()).backward()
    dt = time.perf_counter() - t0
    active = int(np.prod(sem.shape)) if kind == 'dense' else out['sparse'][0].shape[0]
    return dt, active


def _rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def child_memory(kind, grid, threads):
    """Peak RSS growth of one training step, measured in this (fresh) process.

    If the step sets a new lifetime peak, ``ru_maxrss`` is exact; otherwise a
    1 ms sampler of /proc/self/statm gives the step's peak.
    """
    torch.set_num_threads(threads)
    sem, mask = load_labels(grid)
    head = build_head(kind, grid)
    bev = torch.randn(1, CHANNELS, grid[0], grid[1], generator=torch.Generator().manual_seed(0))
    before = _rss_bytes()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sampled = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            sampled.append(_rss_bytes())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    train_step(kind, head, bev, sem, mask)
    done.set()
    thread.join()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak = maxrss if maxrss > maxrss_before else max(sampled)
    return max(0, peak - before)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--grids', default='100x100x8,200x200x16')
    ap.add_argument('--child', nargs=2, metavar=('KIND', 'GRID'), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        grid = tuple(int(v) for v in args.child[1].split('x'))
        print(json.dumps({'peak_bytes': child_memory(args.child[0], grid, args.threads)}))
        return

    torch.set_num_threads(args.threads)
    rows = []
    for gtxt in args.grids.split(','):
        grid = tuple(int(v) for v in gtxt.split('x'))
        sem, mask = load_labels(grid)
        bev = torch.randn(1, CHANNELS, grid[0], grid[1], generator=torch.Generator().manual_seed(0))
        heads = {k: build_head(k, grid) for k in KINDS}
        times = {k: [] for k in heads}
        active = {}
        for k in heads:                                  # warm-up (spconv builds its kernels)
            _, active[k] = train_step(k, heads[k], bev, sem, mask)
        for _ in range(args.repeat):
            for k in heads:
                dt, active[k] = train_step(k, heads[k], bev, sem, mask)
                times[k].append(dt)
        mem = {}
        for k in heads:
            res = subprocess.run([sys.executable, __file__, '--child', k, gtxt, '--threads', str(args.threads)],
                                 capture_output=True, text=True, check=True)
            mem[k] = json.loads(res.stdout.strip().splitlines()[-1])['peak_bytes']
        t = {k: statistics.median(v) for k, v in times.items()}
        rows.append((gtxt, t, mem, active))

    print(f'threads={args.threads} repeat={args.repeat} C={CHANNELS} batch=1 (forward + loss + backward)')
    print('| grid | head | step time (s) | peak RSS growth (MiB) | voxels decoded | time / dense | memory / dense |')
    print('|---|---|---|---|---|---|---|')
    for gtxt, t, mem, active in rows:
        for k in KINDS:
            print(f"| {gtxt} | {k} | {t[k]:.3f} | {mem[k] / 2**20:.0f} | {active[k]:,} | "
                  f"{t[k] / t['dense']:.2f} | {mem[k] / max(mem['dense'], 1):.2f} |")


if __name__ == '__main__':
    main()
