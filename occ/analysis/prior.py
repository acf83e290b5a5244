"""The non-learned baseline: per-voxel class prior from the training labels.

For every voxel position of the model grid, the class seen there most often
over the training split (ties to the lower class index). A model that does
not beat this has learned nothing beyond "roads are at the bottom, the ego
lane is free".
"""
from __future__ import annotations

import os
import os.path as osp

import numpy as np

from occ.constants import FREE, NUM_CLASSES
from occ.data.dataset import reduce_to_grid
from occ.data.infos import InfoFile
from occ.data.occ3d_io import load_occ3d_labels, save_prediction


def class_prior(info_file: str, grid_shape: tuple, data_root: str | None = None,
                mask: str = 'camera') -> np.ndarray:
    """Most frequent class per voxel over the samples of ``info_file``.

    Args:
        info_file: ``occ_infos_train.pkl``.
        grid_shape: (X, Y, Z) of the model grid; label files are coarsened to it
            exactly as the dataset does (``occ.data.dataset.reduce_to_grid``).
        data_root: root the ``occ_path`` entries are relative to (default: the info file's).
        mask: ``'camera'`` counts only camera-visible voxels (the ones the metric scores;
            positions never observed fall back to all labels), ``'none'`` counts all.
    Returns: uint8 [X, Y, Z] class indices 0..17.
    """
    if mask not in ('camera', 'none'):
        raise ValueError(f"class_prior: mask must be 'camera' or 'none', got {mask!r}")
    infos = InfoFile.read(info_file, ('token', 'occ_path'))
    if not infos:
        raise ValueError(f'{info_file}: no samples to compute a class prior from')
    if data_root is None:
        data_root = infos.dataroot
    nvox = int(np.prod(grid_shape))
    seen = np.zeros(nvox * NUM_CLASSES, np.int64)
    every = np.zeros(nvox * NUM_CLASSES, np.int64)
    base = np.arange(nvox, dtype=np.int64) * NUM_CLASSES
    for info in infos:
        path = osp.join(data_root, info['occ_path'])
        lab = reduce_to_grid(load_occ3d_labels(path), tuple(grid_shape), path)
        idx = base + lab['semantics'].reshape(-1).astype(np.int64)
        every += np.bincount(idx, minlength=every.size)
        if mask == 'camera':
            vis = lab['mask_camera'].reshape(-1).astype(bool)
            seen += np.bincount(idx[vis], minlength=seen.size)
    every = every.reshape(*grid_shape, NUM_CLASSES)
    if mask == 'none':
        return every.argmax(-1).astype(np.uint8)
    seen = seen.reshape(*grid_shape, NUM_CLASSES)
    prior = np.where(seen.sum(-1) > 0, seen.argmax(-1), every.argmax(-1))
    return prior.astype(np.uint8)


def write_prior_predictions(prior: np.ndarray, info_file: str, out_dir: str) -> int:
    """Write ``prior`` as the prediction of every sample of ``info_file``; returns the count."""
    if prior.dtype != np.uint8 or prior.ndim != 3 or prior.max() > FREE:
        raise ValueError(f'prior must be uint8 [X, Y, Z] with classes 0..{FREE}')
    os.makedirs(out_dir, exist_ok=True)
    infos = InfoFile.read(info_file)
    for info in infos:
        save_prediction(osp.join(out_dir, f"{info['token']}.npz"), prior)
    return len(infos)
