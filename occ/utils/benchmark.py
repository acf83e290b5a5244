"""Model speed and memory measurement on random batches that follow the batch contract.

``tools/benchmark.py CONFIG...`` is a thin wrapper over :func:`benchmark_model`.
"""
from __future__ import annotations

import gc
import math
import resource
import sys
import time
from typing import Sequence

import torch

from occ.constants import NUM_CLASSES


def camera_rig(num_cams: int = 6, img_size: Sequence[int] = (64, 176), height: float = 1.5,
               fov_deg: float = 70.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A nuScenes-like ring of cameras looking outward, evenly spaced in yaw.

    Returns intrinsics [N, 3, 3] and cam2ego [N, 4, 4] (camera x right, y down, z forward).
    """
    H, W = img_size
    f = (W / 2) / math.tan(math.radians(fov_deg) / 2)
    K = torch.tensor([[f, 0.0, (W - 1) / 2], [0.0, f, (H - 1) / 2], [0.0, 0.0, 1.0]])
    mats = []
    for i in range(num_cams):
        yaw = 2 * math.pi * i / num_cams
        T = torch.eye(4)
        T[:3, 0] = torch.tensor([math.sin(yaw), -math.cos(yaw), 0.0])    # camera x (right) in ego
        T[:3, 1] = torch.tensor([0.0, 0.0, -1.0])                        # camera y (down)
        T[:3, 2] = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0])     # camera z (forward)
        T[:3, 3] = torch.tensor([0.0, 0.0, height])
        mats.append(T)
    return K.expand(num_cams, 3, 3).clone(), torch.stack(mats)


def random_batch(batch_size: int = 1, num_cams: int = 6, img_size: Sequence[int] = (64, 176),
                 grid_shape: Sequence[int] = (100, 100, 8), with_depth: bool = False, seed: int = 0,
                 device: str = 'cpu') -> dict:
    """A flat batch dict with the contract's keys, random images/labels and a plausible camera rig."""
    g = torch.Generator().manual_seed(seed)
    B, N, (H, W) = batch_size, num_cams, img_size
    K, cam2ego = camera_rig(N, img_size)
    X, Y, Z = grid_shape
    batch = {
        'imgs': torch.randn(B, N, 3, H, W, generator=g),
        'intrinsics': K.expand(B, N, 3, 3).clone(),
        'cam2ego': cam2ego.expand(B, N, 4, 4).clone(),
        'img_aug': torch.eye(4).expand(B, N, 4, 4).clone(),
        'bev_aug': torch.eye(4).expand(B, 4, 4).clone(),
        'ego2global': torch.eye(4).expand(B, 4, 4).clone(),
        'voxel_semantics': torch.randint(0, NUM_CLASSES, (B, X, Y, Z), generator=g).to(torch.uint8),
        'mask_camera': (torch.rand(B, X, Y, Z, generator=g) < 0.5).to(torch.uint8),
        'mask_lidar': (torch.rand(B, X, Y, Z, generator=g) < 0.5).to(torch.uint8),
        'sample_token': [f'sample{i}' for i in range(B)],
    }
    if with_depth:
        d = 1 + 40 * torch.rand(B, N, H, W, generator=g)
        batch['depth'] = torch.where(torch.rand(B, N, H, W, generator=g) < 0.05, d, torch.zeros_like(d))
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2 ** 20 if sys.platform == 'darwin' else r / 1024


def benchmark_model(model: torch.nn.Module, batch: dict, repeat: int = 3, warmup: int = 1,
                    backward: bool = True) -> dict:
    """Time forward (predict-style, no grad) and forward+backward (loss mode) on one batch.

    Returns wall seconds per frame (batch size divides the step time), CPU
    seconds per frame (process time summed over threads: on a machine shared
    with other jobs it is far steadier than wall time), the peak RSS
    of the process (CPU; includes everything allocated so far), and on CUDA
    the peak allocated GPU memory.
    """
    device = next(model.parameters()).device
    cuda = device.type == 'cuda'
    data = model.data_preprocessor(batch, False)['inputs']
    B = data['imgs'].shape[0]

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    def fwd():
        with torch.no_grad():
            model(data, mode='tensor')

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        losses = model(data, mode='loss')
        sum(v for k, v in losses.items() if k.startswith('loss')).backward()

    result = {'batch_size': B}
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for name, fn, train in (('forward', fwd, False), ('forward_backward', fwd_bwd, True)):
        if name == 'forward_backward' and not backward:
            continue
        model.train(train)
        for _ in range(warmup):
            fn()
        ts, cpu = [], []
        for _ in range(repeat):
            sync()
            t, c = time.perf_counter(), time.process_time()
            fn()
            sync()
            ts.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        result[f'{name}_s_per_frame'] = min(ts) / B
        result[f'{name}_cpu_s_per_frame'] = min(cpu) / B
        gc.collect()
    result['peak_rss_mb'] = peak_rss_mb()
    if cuda:
        result['peak_cuda_mb'] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return result
