#!/usr/bin/env python
"""Synthetic world rendering speed: culled ray casting vs brute force, in one process.

    python benchmarks/bench_synthetic.py [--size 128 352] [--frames 3]

Baseline: every pixel ray against every primitive within range (no culling), the
approach of a first prototype; it is timed on 1/16 of the rays and scaled by 16.
Ours: ``cast_pinhole`` (projected-rectangle culling, nearest-first bands).
Both run on the same keyframes of the same world; the hits are compared too.
Also times a whole keyframe (6 cameras + LiDAR + labels at 0.8 m).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

from occ.data.synthetic import build_world, render_frame  # noqa: E402
from occ.data.synthetic.primitives import intersect  # noqa: E402
from occ.data.synthetic.raycast import cast_pinhole  # noqa: E402
from occ.data.synthetic.sensors import CAMERA_RANGE, OBJECT_RANGE, _near, camera_rig, pixel_rays  # noqa: E402
from occ.geometry import OccGrid  # noqa: E402


def brute(prims, origin, dirs):
    best = np.full(len(dirs), np.inf)
    hit = np.full(len(dirs), -2)
    for s in range(0, len(prims), 64):
        ids = np.arange(s, min(len(prims), s + 64))
        t, _, _ = intersect(prims, np.tile(ids, len(dirs)), origin, np.repeat(dirs, len(ids), 0))
        t = t.reshape(len(dirs), len(ids))
        k = t.argmin(1)
        tk = t[np.arange(len(dirs)), k]
        better = tk < best
        best[better], hit[better] = tk[better], ids[k[better]]
    return best, hit


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--size', type=int, nargs=2, default=(128, 352))
    p.add_argument('--frames', type=int, default=3)
    a = p.parse_args()
    h, w = a.size
    world = build_world(0, 0, a.frames)
    rig = camera_rig((h, w))
    t_base = t_ours = c_base = c_ours = 0.0
    agree = total = 0
    for f in range(a.frames):
        e2g = world.ego2global(f)
        prims = world.prims_at(f, exclude=[world.agents[0]])
        for cam in rig:
            c2g = e2g @ cam['cam2ego']
            near = _near(prims, c2g[:3, 3], OBJECT_RANGE)
            dirs = pixel_rays(cam['intrinsics'], h, w) @ c2g[:3, :3].T
            t0, c0 = time.perf_counter(), time.process_time()
            ours = cast_pinhole(near, c2g, cam['intrinsics'], h, w, dirs, CAMERA_RANGE, ground=False)
            t_ours += time.perf_counter() - t0
            c_ours += time.process_time() - c0
            sub = np.arange(0, h * w, 16)
            t0, c0 = time.perf_counter(), time.process_time()
            bt, bh = brute(near, c2g[:3, 3], dirs[sub])
            t_base += (time.perf_counter() - t0) * 16
            c_base += (time.process_time() - c0) * 16
            agree += (bh == ours['hit'][sub]).sum()
            total += len(sub)
    t_frame, c_frame = [], []
    world.ground_seen(0)
    for f in range(a.frames):
        t0, c0 = time.perf_counter(), time.process_time()
        render_frame(world, f, 0, (144, 256), OccGrid.from_voxel(0.8))
        t_frame.append(time.perf_counter() - t0)
        c_frame.append(time.process_time() - c0)
    n = a.frames
    print(f'6 cameras at {h}x{w}, {n} keyframes: brute force {t_base / n:.2f} s/frame wall, {c_base / n:.2f} s CPU '
          f'(extrapolated from 1/16 of the rays); culled {t_ours / n:.3f} s wall, {c_ours / n:.3f} s CPU; speed-up '
          f'{t_base / t_ours:.0f}x wall, {c_base / c_ours:.0f}x CPU; same hit on {agree / total:.4f} of the rays')
    print(f'whole keyframe at 144x256 (6 cameras shaded + LiDAR + 0.8 m labels and masks): '
          f'{np.median(t_frame):.2f} s wall, {np.median(c_frame):.2f} s CPU (median of {n})')


if __name__ == '__main__':
    main()
