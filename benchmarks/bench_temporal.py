"""Temporal memory latency per frame: streaming vs recomputing the history.

Runs OccNet (configs/_base_/models/lss_dense.py, CPU default: 6 cameras at
64x176, 100x100x8 grid, C = 64) in eval mode on a synthetic sequence of
random frames with a moving ego, in one process:

- baseline: the single-frame model (temporal=None),
- for each fusion: streaming (memory kept across frames) and recompute
  (``streaming=False``: the T history frames are re-encoded every frame).

Both temporal modes are checked to give the same logits before timing.
Also reports the fusion module alone (the cost streaming adds on top of the
single-frame model).

    python benchmarks/bench_temporal.py [--T 2] [--frames 6] [--threads 2]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

from mmengine.config import Config  # noqa: E402

from occ.geometry import planar_pose  # noqa: E402
from occ.registry import MODELS  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
PC_RANGE = [-40.0, -40.0, -1.0, 40.0, 40.0, 5.4]
FUSIONS = ('ConcatConvFusion', 'TemporalSelfAttention', 'ConvGRUFusion')
KEYS = ('imgs', 'intrinsics', 'cam2ego', 'img_aug', 'ego2global', 'bev_aug')


def pose(x, y, yaw):
    return planar_pose(x, y, yaw)


def make_frames(n, hw, seed=0):
    """Random images from a six-camera outward rig, ego driving a gentle curve."""
    h, w = hw
    g = torch.Generator().manual_seed(seed)
    intr = torch.tensor([[80.0, 0, w / 2], [0, 80.0, h / 2], [0, 0, 1]]).expand(6, 3, 3)
    cams = []
    for yaw in (55, 0, -55, 110, 180, -110):
        a = math.radians(yaw)
        m = torch.eye(4)
        m[:3, :3] = torch.stack([torch.tensor([math.sin(a), -math.cos(a), 0.0]), torch.tensor([0.0, 0.0, -1.0]),
                                 torch.tensor([math.cos(a), math.sin(a), 0.0])], 1)
        m[:3, 3] = torch.tensor([1.0, 0.0, 1.6])
        cams.append(m)
    cam2ego = torch.stack(cams)
    return [dict(imgs=torch.randn(6, 3, h, w, generator=g), intrinsics=intr.clone(), cam2ego=cam2ego.clone(),
                 img_aug=torch.eye(4).expand(6, 4, 4).clone(), ego2global=pose(10.0 + 4.0 * k, 5.0, 0.05 * k),
                 bev_aug=torch.eye(4)) for k in range(n)]


def make_batch(frames, k, t):
    b = {key: frames[k][key][None] for key in KEYS}
    if t:
        idx = [k - t + i for i in range(t)]
        b['history'] = {key: torch.stack([frames[max(i, 0)][key] for i in idx])[None] for key in KEYS}
        b['history']['valid'] = torch.tensor([[i >= 0 for i in idx]])
    b.update(scene_token=['bench'], frame_idx=torch.tensor([k]), sample_token=[f'bench-{k}'])
    return b


def build(fusion, t):
    cfg = Config.fromfile(os.path.join(REPO, 'configs/_base_/models/lss_dense.py')).model.to_dict()
    cfg['depth_loss_weight'] = 0.0
    if fusion is not None:
        cfg['temporal'] = dict(type='TemporalFusion', fusion=dict(type=fusion, channels=64), num_history=t,
                               pc_range=PC_RANGE)
    torch.manual_seed(0)
    return MODELS.build(cfg).eval()


@torch.no_grad()
def run_sequence(model, frames, t, with_history):
    """Per-frame wall times (s) and logits over the whole sequence."""
    if hasattr(model, 'reset_temporal_state'):
        model.reset_temporal_state()
    times, logits = [], []
    for k in range(len(frames)):
        b = make_batch(frames, k, t if with_history else 0)
        t0 = time.perf_counter()
        logits.append(model(b, mode='tensor')['logits'])
        times.append(time.perf_counter() - t0)
    return times, logits


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--T', type=int, default=2, help='history frames')
    ap.add_argument('--frames', type=int, default=6, help='frames in the sequence (timed: all but the first)')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--img', type=int, nargs=2, default=(64, 176), metavar=('H', 'W'))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    frames = make_frames(args.frames, tuple(args.img))

    def per_frame(times):   # first frame warms caches (bev_pool plan, allocator); not timed
        rest = sorted(times[1:])
        return rest[len(rest) // 2]

    base = build(None, 0)
    run_sequence(base, frames[:2], 0, False)
    t_base = per_frame(run_sequence(base, frames, 0, False)[0])
    print(f'threads={args.threads} T={args.T} frames={args.frames} img={tuple(args.img)}; median ms/frame')
    print(f'{"model":<34}{"ms/frame":>10}{"x single":>10}')
    print(f'{"single frame (T=0)":<34}{1e3 * t_base:>10.1f}{1.0:>10.2f}')
    for fusion in FUSIONS:
        model = build(fusion, args.T)
        model.temporal.streaming = True
        ts, ls = run_sequence(model, frames, args.T, False)
        model.temporal.streaming = False
        tr, lr = run_sequence(model, frames, args.T, True)
        # recurrent memory: equal only while the history reaches the scene start
        n_eq = len(frames) if not model.temporal.recurrent else args.T + 1
        for k in range(n_eq):
            if not torch.allclose(ls[k], lr[k], atol=1e-4):
                raise SystemExit(f'{fusion}: streaming and recomputed logits differ at frame {k}')
        s, r = per_frame(ts), per_frame(tr)
        print(f'{fusion + " stream":<34}{1e3 * s:>10.1f}{s / t_base:>10.2f}')
        print(f'{fusion + " recompute":<34}{1e3 * r:>10.1f}{r / t_base:>10.2f}   (recompute / stream = {r / s:.2f})')
        # the fusion module alone, on one frame with a full memory
        bev = torch.randn(1, 64, 100, 100)
        state = None
        with torch.no_grad():
            for k in range(args.T + 1):
                b = make_batch(frames, k, 0)
                t0 = time.perf_counter()
                model.temporal.streaming = True
                _, state = model.temporal(bev, b, state=state)
                dt = time.perf_counter() - t0
        print(f'{"  fusion alone":<34}{1e3 * dt:>10.1f}{dt / t_base:>10.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
