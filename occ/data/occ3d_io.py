"""Read and write Occ3D-format label and prediction files with errors that name the file.

Occ3D layout: ``gts/<scene_name>/<sample_token>/labels.npz`` with ``semantics``,
``mask_lidar``, ``mask_camera``, each uint8 [X, Y, Z]. Predictions:
``<sample_token>.npz`` with ``semantics`` uint8 [X, Y, Z] and optionally
``semantics_future`` uint8 [H, X, Y, Z].
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from occ.utils.io import atomic_save_npz

LABEL_KEYS = ('semantics', 'mask_lidar', 'mask_camera')


class OccFileError(ValueError):
    """A label or prediction file is missing, corrupt, or has the wrong content."""


def occ3d_label_path(root: str, scene_name: str, sample_token: str) -> str:
    return os.path.join(root, 'gts', scene_name, sample_token, 'labels.npz')


def _load_npz(path: str, keys, what: str) -> dict:
    if not os.path.isfile(path):
        raise OccFileError(f'{path}: {what} file not found')
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise OccFileError(f'{path}: {what} file lacks key(s) {missing} (has {z.files})')
            return {k: z[k] for k in z.files}
    except OccFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise OccFileError(f'{path}: corrupt or truncated {what} file ({type(e).__name__}: {e})') from e


def _check(path: str, name: str, arr: np.ndarray, shape, ndim: int) -> None:
    if arr.ndim != ndim:
        raise OccFileError(f'{path}: "{name}" has {arr.ndim} dims {tuple(arr.shape)}, expected {ndim}')
    if shape is not None and tuple(arr.shape[-3:]) != tuple(shape):
        raise OccFileError(f'{path}: "{name}" grid is {tuple(arr.shape[-3:])}, expected {tuple(shape)}')
    if arr.dtype != np.uint8:
        raise OccFileError(f'{path}: "{name}" has dtype {arr.dtype}, expected uint8')


def load_occ3d_labels(path: str, grid_shape=None) -> dict:
    """Load an Occ3D ``labels.npz``: dict of uint8 [X, Y, Z] arrays for LABEL_KEYS.

    Raises OccFileError naming ``path`` when the file is missing, truncated,
    lacks a key, or a grid has the wrong shape or dtype.
    """
    z = _load_npz(path, LABEL_KEYS, 'Occ3D labels')
    out = {}
    for k in LABEL_KEYS:
        _check(path, k, z[k], grid_shape, 3)
        out[k] = z[k]
    if grid_shape is None and not (out['semantics'].shape == out['mask_lidar'].shape
                                   == out['mask_camera'].shape):
        raise OccFileError(f'{path}: semantics/mask shapes differ '
                           f'{[out[k].shape for k in LABEL_KEYS]}')
    bad = out['semantics'] > 17
    if bad.any():
        raise OccFileError(f'{path}: "semantics" has values outside 0..17 '
                           f'(e.g. {int(out["semantics"][bad][0])})')
    return out


def save_occ3d_labels(path: str, semantics, mask_lidar, mask_camera) -> None:
    atomic_save_npz(path, semantics=np.asarray(semantics, np.uint8),
                    mask_lidar=np.asarray(mask_lidar, np.uint8),
                    mask_camera=np.asarray(mask_camera, np.uint8))


def load_prediction(path: str, grid_shape=None, horizons: int | None = None) -> dict:
    """Load a prediction ``<token>.npz``: ``semantics`` [X,Y,Z] and, if present, ``semantics_future`` [H,X,Y,Z]."""
    z = _load_npz(path, ('semantics',), 'prediction')
    _check(path, 'semantics', z['semantics'], grid_shape, 3)
    out = {'semantics': z['semantics']}
    if 'semantics_future' in z:
        _check(path, 'semantics_future', z['semantics_future'], grid_shape, 4)
        if horizons is not None and z['semantics_future'].shape[0] < horizons:
            raise OccFileError(f'{path}: "semantics_future" has {z["semantics_future"].shape[0]} '
                               f'horizons, expected at least {horizons}')
        out['semantics_future'] = z['semantics_future']
    for k in ('bytes_sent',):
        if k in z:
            out[k] = z[k]
    return out


def save_prediction(path: str, semantics, semantics_future=None, **extra) -> None:
    arrays = {'semantics': np.asarray(semantics, np.uint8)}
    if semantics_future is not None:
        arrays['semantics_future'] = np.asarray(semantics_future, np.uint8)
    arrays.update({k: np.asarray(v) for k, v in extra.items()})
    atomic_save_npz(path, **arrays)
