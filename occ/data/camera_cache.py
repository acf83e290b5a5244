"""Frozen camera-model outputs per keyframe, cached once for the camera-driven world model.

The camera model (``OccNet``, e.g. the temporal T=2 concat model) is run once
over every frame of a split *in scene order* in eval mode, so a streaming
temporal model fuses the frames before each one exactly as at test time (and
resets at scene starts). Per frame one ``<cache_dir>/<sample_token>.npz``:

| key | dtype / shape | meaning |
|---|---|---|
| ``bev`` | float16 [C, X, Y] | the fused BEV the occupancy head reads (own ego frame) |
| ``semantics`` | uint8 [X, Y, Z] | argmax of the occupancy head: the camera model's current-frame prediction |

The world model's training then never re-runs the image network.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from occ.utils.io import atomic_save_npz


def cache_path(cache_dir: str, token: str) -> str:
    return os.path.join(cache_dir, f'{token}.npz')


@torch.no_grad()
def cache_camera_outputs(model, dataset, cache_dir: str, overwrite: bool = False, log=print) -> int:
    """Run ``model.forward_features`` over ``dataset`` (one frame at a time, in its order) and cache.

    Args:
        model: an ``OccNet`` (its preprocessor is used); put in eval mode here.
        dataset: an ``OccDataset`` in test mode, frames of each scene consecutive and in order
            (the info files are); the streaming memory resets at scene changes by itself.
        cache_dir: output folder.
    Returns:
        the number of frames written.
    """
    from occ.data.collate import occ_collate
    model.eval()
    if hasattr(model, 'reset_temporal_state'):
        model.reset_temporal_state()
    n = 0
    for i in range(len(dataset)):
        sample = dataset[i]
        path = cache_path(cache_dir, sample['sample_token'])
        if os.path.exists(path) and not overwrite and not getattr(model, 'temporal', None):
            continue        # a streaming model must see every frame; a single-frame one may skip
        batch = model.data_preprocessor(occ_collate([sample]), False)['inputs']
        out = model.forward_features(batch)
        atomic_save_npz(path, compressed=False, bev=out['bev'][0].half().cpu().numpy(),
                        semantics=out['logits'][0].argmax(0).to(torch.uint8).cpu().numpy())
        n += 1
        if log and (i + 1) % 20 == 0:
            log(f'camera cache: {i + 1}/{len(dataset)} frames')
    return n


def load_camera_frame(cache_dir: str, token: str) -> dict:
    """``bev`` float32 [C, X, Y] and ``semantics`` uint8 [X, Y, Z] of one cached frame."""
    path = cache_path(cache_dir, token)
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path}: no cached camera output (run tools/cache_camera_bev.py first)')
    with np.load(path) as z:
        return {'bev': z['bev'].astype(np.float32), 'semantics': z['semantics']}


__all__ = ['cache_camera_outputs', 'cache_path', 'load_camera_frame']
