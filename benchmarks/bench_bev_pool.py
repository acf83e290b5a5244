"""Voxel pooling throughput: occ.ops.bev_pool vs the original LSS "cumsum trick".

The baseline is what Lift-Splat-Shoot does on every forward pass: materialise
the [B, N, D, h, w, C] outer product, voxelise the geometry, sort the ranks,
cumsum, and take differences at interval boundaries. occ's pooling re-uses a
plan built once per calibration (its build time is reported separately) and
runs a CSR matmul. Both are run in the same process on the same inputs, and the
results are checked equal before timing.

    python benchmarks/bench_bev_pool.py [--repeat 5] [--threads 2] [--backward]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

from occ.models.view_transforms.frustum import create_frustum, frustum_to_ego  # noqa: E402
from occ.ops.bev_pool import bev_pool, build_bev_pool_plan  # noqa: E402

PC_RANGE = (-40.0, -40.0, -1.0, 40.0, 40.0, 5.4)

CASES = {
    # name: (img H, W, stride, depth bins (min, max, step), C, grid X, Y, Z)
    'cpu-default': ((64, 176), 16, (1.0, 45.0, 1.0), 64, (100, 100, 8)),
    'nuscenes': ((256, 704), 16, (1.0, 60.0, 1.0), 80, (200, 200, 16)),
}


def lss_cumsum_pool(depth, feats, geom, pc_range, grid):
    """Baseline: LSS voxel pooling with the cumsum trick, geometry sorted every call.

    depth [B, N, D, h, w], feats [B, N, h, w, C], geom [B, N, D, h, w, 3] -> [B, C, X, Y].
    """
    B, N, D, h, w = depth.shape
    C = feats.shape[-1]
    X, Y, Z = grid
    x = (depth.unsqueeze(-1) * feats.unsqueeze(2)).reshape(-1, C)
    lo = torch.tensor(pc_range[:3])
    size = (torch.tensor(pc_range[3:]) - lo) / torch.tensor([X, Y, Z], dtype=torch.float32)
    g = ((geom - lo) / size).floor().long().reshape(-1, 3)
    bidx = torch.arange(B).view(B, 1).expand(B, N * D * h * w).reshape(-1)
    keep = (g >= 0).all(1) & (g[:, 0] < X) & (g[:, 1] < Y) & (g[:, 2] < Z)
    x, g, bidx = x[keep], g[keep], bidx[keep]
    ranks = ((bidx * Z + g[:, 2]) * X + g[:, 0]) * Y + g[:, 1]
    order = ranks.argsort()
    x, g, bidx, ranks = x[order], g[order], bidx[order], ranks[order]
    x = x.cumsum(0)
    last = torch.ones(x.shape[0], dtype=torch.bool)
    last[:-1] = ranks[1:] != ranks[:-1]
    x, g, bidx = x[last], g[last], bidx[last]
    x = torch.cat((x[:1], x[1:] - x[:-1]))
    out = torch.zeros(B, Z, X, Y, C, dtype=x.dtype)
    out[bidx, g[:, 2], g[:, 0], g[:, 1]] = x
    return out.sum(1).permute(0, 3, 1, 2)


def make_inputs(case, batch=1, seed=0):
    (H, W), stride, dbins, C, grid = CASES[case]
    g = torch.Generator().manual_seed(seed)
    N = 6
    frustum = create_frustum((H, W), stride, dbins)
    D, h, w = frustum.shape[:3]
    # a nuScenes-like ring: six cameras 60 degrees apart, 1.5 m high, looking outward
    fx = W * 0.9
    K = torch.tensor([[fx, 0, W / 2], [0, fx, H / 2], [0, 0, 1.0]])
    cam2ego = []
    for i in range(N):
        yaw = torch.tensor(i * torch.pi / 3)
        # camera axes (x right, y down, z forward) in ego (x forward, y left, z up)
        fwd = torch.stack([torch.cos(yaw), torch.sin(yaw), torch.tensor(0.0)])
        right = torch.stack([torch.sin(yaw), -torch.cos(yaw), torch.tensor(0.0)])
        down = torch.tensor([0.0, 0.0, -1.0])
        T = torch.eye(4)
        T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = right, down, fwd, torch.tensor([0.0, 0.0, 1.5])
        cam2ego.append(T)
    cam2ego = torch.stack(cam2ego).expand(batch, N, 4, 4)
    intr = K.expand(batch, N, 3, 3)
    img_aug = torch.eye(4).expand(batch, N, 4, 4)
    bev_aug = torch.eye(4).expand(batch, 4, 4)
    geom = frustum_to_ego(frustum, intr, cam2ego, img_aug, bev_aug)
    depth = torch.rand(batch, N, D, h, w, generator=g).softmax(2)
    feats = torch.randn(batch, N, h, w, C, generator=g)
    return depth, feats, geom, grid


def timeit(fn, repeat):
    """(min wall seconds, min CPU seconds) over ``repeat`` runs after one warm-up."""
    fn()
    ts, cs = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        ts.append(time.perf_counter() - t)
        cs.append(time.process_time() - c)
    return min(ts), min(cs)


def run(case, repeat, backward):
    depth, feats, geom, grid = make_inputs(case)
    plan = build_bev_pool_plan(geom, PC_RANGE, grid)
    # a plan is built once per calibration; with per-step random augmentation, once per step
    t_plan = timeit(lambda: build_bev_pool_plan(geom, PC_RANGE, grid), repeat)[0]
    ref = lss_cumsum_pool(depth, feats, geom, PC_RANGE, grid)
    out = bev_pool(depth, feats, plan)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)

    def fwd_bwd(fn):
        d = depth.clone().requires_grad_()
        f = feats.clone().requires_grad_()
        fn(d, f).sum().backward()

    if backward:
        t_base = timeit(lambda: fwd_bwd(lambda d, f: lss_cumsum_pool(d, f, geom, PC_RANGE, grid)), repeat)
        t_ours = timeit(lambda: fwd_bwd(lambda d, f: bev_pool(d, f, plan)), repeat)
    else:
        t_base = timeit(lambda: lss_cumsum_pool(depth, feats, geom, PC_RANGE, grid), repeat)
        t_ours = timeit(lambda: bev_pool(depth, feats, plan), repeat)
    B, N, D, h, w = depth.shape
    return dict(case=case, points=B * N * D * h * w, D=D, C=feats.shape[-1], grid='x'.join(map(str, grid)),
                base_ms=1e3 * t_base[0], ours_ms=1e3 * t_ours[0], plan_ms=1e3 * t_plan,
                speedup=t_base[0] / t_ours[0], speedup_cpu=t_base[1] / t_ours[1],
                speedup_with_plan=t_base[0] / (t_ours[0] + t_plan))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--repeat', type=int, default=5)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--cases', nargs='+', default=list(CASES))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {args.threads} threads, min of {args.repeat} runs')
    print('| case | points (N·D·h·w) | D | C | grid | pass | LSS cumsum (ms) | occ bev_pool (ms) | speed-up (wall) '
          '| speed-up (CPU time) | plan build (ms) | speed-up incl. plan build |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|')
    for case in args.cases:
        if case not in CASES:
            sys.exit(f'unknown case {case!r}; choose from {sorted(CASES)}')
        for backward in (False, True):
            r = run(case, args.repeat, backward)
            print(f"| {r['case']} | {r['points']:,} | {r['D']} | {r['C']} | {r['grid']} | "
                  f"{'fwd+bwd' if backward else 'fwd'} | {r['base_ms']:.1f} | {r['ours_ms']:.1f} | "
                  f"{r['speedup']:.1f}x | {r['speedup_cpu']:.1f}x | {r['plan_ms']:.1f} | "
                  f"{r['speedup_with_plan']:.1f}x |", flush=True)


if __name__ == '__main__':
    main()
