#!/usr/bin/env python
"""Synthetic world speed: culled ray casting vs brute force, and whole-database generation.

    python benchmarks/bench_synthetic.py [--size 128 352] [--frames 3]
    python benchmarks/bench_synthetic.py --generate [--baseline-tree DIR] [--rounds 3]

Ray casting. Baseline: every pixel ray against every primitive within range (no culling), the
approach of a first prototype; it is timed on 1/16 of the rays and scaled by 16.
Ours: ``cast_pinhole`` (projected-rectangle culling, nearest-first bands).
Both run on the same keyframes of the same world; the hits are compared too.
Also times a whole keyframe (6 cameras + LiDAR + labels at 0.8 m).

``--generate``: CPU seconds per keyframe of ``generate()`` (``--scenes`` 2 towns x ``--scene-frames`` 8
keyframes, 144x256 images, 0.8 m labels, 1 worker) for several configurations, each in a fresh subprocess with the
nuScenes devkit already imported (its one-time import cost is printed apart), interleaved over
``--rounds`` rounds so that all see the same machine load; the median per configuration and
its ratio to the first are printed. ``--baseline-tree DIR``: also time the generator of another
checkout (e.g. ``git archive <commit> | tar -x -C DIR``) with its default arguments, first.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
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


_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
c0 = time.process_time()
import nuscenes.nuscenes, nuscenes.can_bus.can_bus_api  # the devkit (~1-2 CPU-s to import), warm for all
t_import = time.process_time() - c0
from occ.data.synthetic import generate
kw = json.loads(sys.argv[3])
t0, c0 = time.perf_counter(), time.process_time()
scenes, frames = int(sys.argv[4]), int(sys.argv[5])
s = generate(sys.argv[2], scenes=scenes, frames=frames, seed=0, voxel=0.8, image_size=(144, 256), workers=1, progress=False, **kw)
print(json.dumps({'cpu': time.process_time() - c0, 'wall': time.perf_counter() - t0, 'keyframes': s['keyframes'],
                  'import': t_import}))
"""


def bench_generate(baseline_tree, rounds, camera_sweeps, scenes=2, frames=8):
    here = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
    configs = [('keyframes only (--lidar-sweeps 0 --no-radar)', here, {'lidar_sweeps': 0, 'radar': False}),
               ('flat ground (--kerb-height 0 --no-upward-endpoint-only)', here,
                {'kerb_height': 0.0, 'upward_endpoint_only': False}),
               ('default (kerbs, 20 Hz LiDAR sweeps, radar, CAN bus, annotations.json)', here, {})]
    if camera_sweeps:
        configs.append(('default + --camera-sweeps (12 Hz)', here, {'camera_sweeps': 5}))
    if baseline_tree:
        configs.insert(0, (f'baseline tree {baseline_tree} (its defaults)', os.path.abspath(baseline_tree), {}))
    cpu = {name: [] for name, _, _ in configs}
    imports = []
    env = dict(os.environ, OMP_NUM_THREADS='1')
    for r in range(rounds):
        for name, tree, kw in configs:
            with tempfile.TemporaryDirectory() as d:
                out = subprocess.run([sys.executable, '-c', _CHILD, tree, os.path.join(d, 'w'), json.dumps(kw),
                                      str(scenes), str(frames)],
                                     check=True, capture_output=True, text=True, env=env).stdout
            res = json.loads(out.strip().splitlines()[-1])
            cpu[name].append(res['cpu'] / res['keyframes'])
            imports.append(res['import'])
            print(f'round {r + 1}: {name}: {res["cpu"]:.2f} CPU-s, {res["wall"]:.2f} s wall', flush=True)
    print(f'\nimporting the nuScenes devkit (done before timing, in every run): {np.median(imports):.2f} CPU-s')
    ref = np.median(cpu[configs[0][0]])
    print('\n| configuration | CPU-s per keyframe (median of %d) | ratio |\n|---|---:|---:|' % rounds)
    for name, _, _ in configs:
        m = np.median(cpu[name])
        print(f'| {name} | {m:.3f} | {m / ref:.2f}x |')


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--size', type=int, nargs=2, default=(128, 352))
    p.add_argument('--frames', type=int, default=3)
    p.add_argument('--generate', action='store_true', help='time whole-database generation instead')
    p.add_argument('--baseline-tree', help='with --generate: another checkout to time first')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--camera-sweeps', action='store_true', help='with --generate: also time --camera-sweeps')
    p.add_argument('--scenes', type=int, default=2, help='with --generate: towns')
    p.add_argument('--scene-frames', type=int, default=8, help='with --generate: keyframes per town (the demo: 40)')
    a = p.parse_args()
    if a.generate:
        bench_generate(a.baseline_tree, a.rounds, a.camera_sweeps, a.scenes, a.scene_frames)
        return
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
    world.observed(0)                      # the scene's accumulated LiDAR returns (labels), cached
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
