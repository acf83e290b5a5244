"""Read and write Occ3D-format label and prediction files with errors that name the file.

Occ3D layout: ``gts/<scene_name>/<sample_token>/labels.npz`` with ``semantics``,
``mask_lidar``, ``mask_camera``, each uint8 [X, Y, Z] (a cooperative synthetic world adds
``semantics_coop`` and ``mask_camera_coop``, data/README.md). Predictions:
``<sample_token>.npz`` with ``semantics`` uint8 [X, Y, Z] and optionally
``semantics_future`` uint8 [H, X, Y, Z].
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from occ.utils.io import atomic_save_npz

LABEL_KEYS = ('semantics', 'mask_lidar', 'mask_camera')
# Written by the synthetic generator for each vehicle of a cooperative world (coop_labels.py):
# semantics with every connected vehicle's sensing pooled, and the voxels some vehicle's cameras see.
COOP_LABEL_KEYS = ('semantics_coop', 'mask_camera_coop')


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


def load_occ3d_labels(path: str, grid_shape=None, coop: bool = False) -> dict:
    """Load an Occ3D ``labels.npz``: dict of uint8 [X, Y, Z] arrays for LABEL_KEYS
    (and COOP_LABEL_KEYS with ``coop``; a file without them is then an error naming it).

    Raises OccFileError naming ``path`` when the file is missing, truncated,
    lacks a key, or a grid has the wrong shape or dtype.
    """
    keys = LABEL_KEYS + (COOP_LABEL_KEYS if coop else ())
    z = _load_npz(path, keys, 'Occ3D labels' + (' (cooperative: generate with --agents > 1)' if coop else ''))
    out = {}
    for k in keys:
        _check(path, k, z[k], grid_shape, 3)
        out[k] = z[k]
    if grid_shape is None and len({out[k].shape for k in keys}) > 1:
        raise OccFileError(f'{path}: semantics/mask shapes differ '
                           f'{[out[k].shape for k in keys]}')
    for k in ('semantics', 'semantics_coop'):
        bad = out[k] > 17 if k in out else None
        if bad is not None and bad.any():
            raise OccFileError(f'{path}: "{k}" has values outside 0..17 (e.g. {int(out[k][bad][0])})')
    return out


def save_occ3d_labels(path: str, semantics, mask_lidar, mask_camera, semantics_coop=None,
                      mask_camera_coop=None) -> None:
    """Write ``labels.npz`` (atomically); the cooperative grids only when given (both or neither)."""
    arrays = dict(semantics=semantics, mask_lidar=mask_lidar, mask_camera=mask_camera)
    if (semantics_coop is None) != (mask_camera_coop is None):
        raise ValueError(f'{path}: semantics_coop and mask_camera_coop go together')
    if semantics_coop is not None:
        arrays.update(semantics_coop=semantics_coop, mask_camera_coop=mask_camera_coop)
    atomic_save_npz(path, **{k: np.asarray(v, np.uint8) for k, v in arrays.items()})


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
