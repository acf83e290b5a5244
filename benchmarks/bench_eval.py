#!/usr/bin/env python
"""Evaluation throughput vs straightforward baselines, measured in the same process.

    python benchmarks/bench_eval.py [--frames 200] [--files 30] [--seed 0]

1. Voxel confusion metrics on 200x200x16 frames in memory: ``occ.evaluation``
   (one pass fills camera, lidar and unmasked histograms) vs the Occ3D
   challenge code's per-frame numpy evaluation (boolean mask indexing, then
   ``np.bincount(18 * gt + pred)``), for the camera mask alone and for all
   three masks. The histograms must be identical.
2. The evaluation tool end to end on compressed ``.npz`` files (GT in the
   Occ3D layout, one prediction file per frame, RayIoU off): ``tools/eval_occ.py``
   with 1 and 2 loader threads vs a sequential ``np.load`` + baseline loop.
3. RayIoU ray casting: the vectorised caster vs a per-ray Python traversal
   (same rays, same answers), and seconds per frame with 1 and 8 origins.

Frames are the real Occ3D frame (tests/fixtures/occ3d-sample) flipped and
shifted, predictions the GT shifted 1-3 voxels with 2 % label noise, so the
amount of free space is realistic. Timings: best of ``--repeats`` alternating
runs; the numbers that matter are the ratios.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import math
import os
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from occ.constants import FREE  # noqa: E402
from occ.data.occ3d_io import save_occ3d_labels, save_prediction  # noqa: E402
from occ.evaluation import (ConfusionAccumulator, RayCaster, confusion_matrices,  # noqa: E402
                            lidar_ray_directions)
from occ.geometry import OCC3D_GRID  # noqa: E402


def real_frame():
    paths = sorted(glob.glob(os.path.join(ROOT, 'tests', 'fixtures', 'occ3d-sample', '*', 'labels.npz')))
    if paths:
        z = np.load(paths[0])
        return z['semantics'], z['mask_camera'], z['mask_lidar']
    # Fallback: a structured synthetic frame (ground, walls, trees, cars), same statistics order.
    sem = np.full((200, 200, 16), FREE, np.uint8)
    sem[:, :, 0] = 11
    sem[:, :20, :10] = 15
    sem[:, 180:, :8] = 16
    sem[90:100, 60:65, 1:4] = 4
    cam = np.zeros_like(sem)
    cam[60:140, 60:140, :8] = 1
    return sem, cam, np.maximum(cam, (sem != FREE).astype(np.uint8))


def make_frames(n_distinct: int, rng):
    sem, cam, lid = real_frame()
    frames = []
    for i in range(n_distinct):
        flip = [a for a in (0, 1) if rng.random() < 0.5]
        g, c, m = (np.ascontiguousarray(np.flip(a, flip)) if flip else a.copy() for a in (sem, cam, lid))
        p = np.roll(g, int(rng.integers(1, 4)), axis=int(rng.integers(0, 2))).copy()
        noise = rng.random(p.shape) < 0.02
        p[noise] = rng.integers(0, 18, int(noise.sum()))
        frames.append((p, g, c, m))
    return frames


# ---- baseline: the Occ3D challenge code's per-frame evaluation, written plainly -----------
def baseline_hist(pred, gt, mask):
    if mask is not None:
        m = mask.astype(bool)
        gt, pred = gt[m], pred[m]
    gt, pred = gt.flatten(), pred.flatten()
    k = (gt >= 0) & (gt < 18)
    return np.bincount(18 * gt[k].astype(int) + pred[k].astype(int), minlength=324).reshape(18, 18)


def run_baseline(frames, n, masks):
    hists = np.zeros((len(masks), 18, 18))
    for i in range(n):
        p, g, c, m = frames[i % len(frames)]
        for j, which in enumerate(masks):
            hists[j] += baseline_hist(p, g, {'camera': c, 'lidar': m, 'none': None}[which])
    return hists


def run_ours(frames, n, masks=('camera', 'lidar', 'none')):
    acc = ConfusionAccumulator()
    for i in range(n):
        p, g, c, m = frames[i % len(frames)]
        acc.add_hist(confusion_matrices(p, g, c, m, masks=masks))
    return acc.hist


def best_time(fn, repeats):
    best, out = math.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_confusion(frames, n, repeats):
    rows = {}
    for _ in range(repeats):        # alternate so that load changes hit all methods alike
        for name, fn in (('baseline, camera mask', lambda: run_baseline(frames, n, ['camera'])),
                         ('baseline, 3 masks', lambda: run_baseline(frames, n, ['camera', 'lidar', 'none'])),
                         ('occ.evaluation, camera mask', lambda: run_ours(frames, n, ['camera'])),
                         ('occ.evaluation, 3 masks', lambda: run_ours(frames, n))):
            t, out = best_time(fn, 1)
            if name not in rows or t < rows[name][0]:
                rows[name] = (t, out)
    ours = rows['occ.evaluation, 3 masks'][1]
    assert np.array_equal(rows['baseline, 3 masks'][1], ours), 'histograms differ'
    assert np.array_equal(rows['baseline, camera mask'][1][0], ours[0]), 'histograms differ'
    assert np.array_equal(rows['occ.evaluation, camera mask'][1][0], ours[0]), 'histograms differ'
    return {k: v[0] for k, v in rows.items()}


def bench_files(frames, m, repeats, tmp):
    eval_occ = _load_tool()
    gt_root, pred_dir = os.path.join(tmp, 'data'), os.path.join(tmp, 'pred')
    for i in range(m):
        p, g, c, l = frames[i % len(frames)]
        save_occ3d_labels(os.path.join(gt_root, 'gts', 'scene-0', f'tok{i:04d}', 'labels.npz'), g, l, c)
        save_prediction(os.path.join(pred_dir, f'tok{i:04d}.npz'), p)

    def baseline():
        h = np.zeros((3, 18, 18))
        for i in range(m):
            z = np.load(os.path.join(gt_root, 'gts', 'scene-0', f'tok{i:04d}', 'labels.npz'))
            p = np.load(os.path.join(pred_dir, f'tok{i:04d}.npz'))['semantics']
            g, c, l = z['semantics'], z['mask_camera'], z['mask_lidar']
            for j, mask in enumerate((c, l, None)):
                h[j] += baseline_hist(p, g, mask)
        return h

    def tool(workers):
        args = eval_occ.parse_args(['--gt', gt_root, '--pred', pred_dir, '--no-ray-iou',
                                    '--workers', str(workers)])
        with open(os.devnull, 'w') as devnull:
            return eval_occ.evaluate(args, out=devnull)

    rows = {}
    for _ in range(repeats):
        for name, fn in (('baseline: sequential np.load + per-mask bincount', baseline),
                         ('tools/eval_occ.py, 1 thread', lambda: tool(1)),
                         ('tools/eval_occ.py, 2 threads', lambda: tool(2))):
            t, out = best_time(fn, 1)
            if name not in rows or t < rows[name][0]:
                rows[name] = (t, out)
    return {k: v[0] for k, v in rows.items()}


def _load_tool():
    spec = importlib.util.spec_from_file_location('eval_occ', os.path.join(ROOT, 'tools', 'eval_occ.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def python_ray(sem, o, d):
    """Per-ray Python traversal (the naive reference): first non-free voxel and its exit distance."""
    vs, lo = OCC3D_GRID.voxel_size, OCC3D_GRID.lower
    p = [(o[a] - lo[a]) / vs for a in range(3)]
    v = [int(math.floor(x)) for x in p]
    step = [1 if d[a] >= 0 else -1 for a in range(3)]
    tmax = [((v[a] + (step[a] > 0)) - p[a]) / d[a] if d[a] != 0 else math.inf for a in range(3)]
    tdel = [step[a] / d[a] if d[a] != 0 else math.inf for a in range(3)]
    while True:
        a = 0 if (tmax[0] < tmax[1] and tmax[0] < tmax[2]) else (1 if tmax[1] < tmax[2] else 2)
        if sem[v[0], v[1], v[2]] < FREE:
            return int(sem[v[0], v[1], v[2]]), tmax[a] * vs
        v[a] += step[a]
        exit_d = tmax[a]
        tmax[a] += tdel[a]
        if not 0 <= v[a] < sem.shape[a]:
            return FREE, exit_d * vs


def bench_rays(frames, repeats):
    p, g = frames[0][0], frames[0][1]
    dirs = lidar_ray_directions()
    origin = np.array([[0.9858, 0.0, 1.8402]])
    sub = dirs[::28]                                        # ~500 rays for the Python loop
    t_py, ref = best_time(lambda: [python_ray(g, origin[0], d.tolist()) for d in sub], 1)
    t_vec, (out,) = best_time(lambda: RayCaster(origin, sub, OCC3D_GRID).cast(g), repeats)
    assert [r[0] for r in ref] == out[0].tolist(), 'ray labels differ'
    assert np.allclose([r[1] for r in ref], out[1].numpy()), 'ray depths differ'
    t1, _ = best_time(lambda: RayCaster(origin, dirs, OCC3D_GRID).cast(g, p), repeats)
    origins8 = np.random.default_rng(0).uniform([-30, -30, 1.8], [30, 30, 1.9], (8, 3))
    t8, _ = best_time(lambda: RayCaster(origins8, dirs, OCC3D_GRID).cast(g, p), repeats)
    return {'rays': len(sub), 'python_s': t_py, 'vectorised_s': t_vec, 'frame_1_origin_s': t1,
            'frame_8_origins_s': t8}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--frames', type=int, default=200, help='frames evaluated in memory')
    ap.add_argument('--files', type=int, default=30, help='frames written as files for the tool run')
    ap.add_argument('--repeats', type=int, default=2)
    ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    frames = make_frames(12, rng)

    conf = bench_confusion(frames, args.frames, args.repeats)
    base = conf['baseline, camera mask']
    print(f'\n1. voxel confusion metrics, {args.frames} frames of 200x200x16 in memory (identical histograms)')
    print('| method | s | frames/s | speed-up |\n|---|---|---|---|')
    for k, t in conf.items():
        ref = base if 'camera' in k else conf['baseline, 3 masks']
        print(f'| {k} | {t:.3f} | {args.frames / t:.0f} | {ref / t:.2f}x |')
    print(f'| occ.evaluation (3 masks) vs baseline camera mask only | | | {base / conf["occ.evaluation, 3 masks"]:.2f}x |')

    with tempfile.TemporaryDirectory() as tmp:
        files = bench_files(frames, args.files, args.repeats, tmp)
    b = files['baseline: sequential np.load + per-mask bincount']
    print(f'\n2. end to end from compressed .npz files, {args.files} frames, 3 masks, no RayIoU')
    print('| method | s | frames/s | speed-up |\n|---|---|---|---|')
    for k, t in files.items():
        print(f'| {k} | {t:.3f} | {args.files / t:.1f} | {b / t:.2f}x |')

    r = bench_rays(frames, args.repeats)
    print(f'\n3. RayIoU ray casting (identical labels and depths on {r["rays"]} rays)')
    print(f'| per-ray Python traversal | {r["python_s"] / r["rays"] * 1e6:.1f} us/ray | 1x |')
    per_ray_vec = r['frame_1_origin_s'] / (2 * 14040)
    print(f'| vectorised RayCaster, full frame (2 x 14040 rays) | {per_ray_vec * 1e6:.1f} us/ray '
          f'({r["python_s"] / r["rays"] / per_ray_vec:.0f}x) |')
    print(f'| one frame, GT + prediction, 1 origin x 14040 rays | {r["frame_1_origin_s"]:.2f} s |')
    print(f'| one frame, GT + prediction, 8 origins x 14040 rays | {r["frame_8_origins_s"]:.2f} s |')


if __name__ == '__main__':
    main()
