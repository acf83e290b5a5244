"""Where ground truth and predictions come from: Occ3D folders, info files, submission files.

GT: an Occ3D layout ``<root>/gts/<scene>/<token>/labels.npz`` (``root`` may
also be the ``gts`` folder itself, or a flat ``<root>/<token>/labels.npz``
folder such as the real sample), or an info file (``occ_infos_*.pkl``,
CONTRACTS.md) giving tokens, scenes, poses and ``occ_path`` under its dataroot.

Predictions: a folder of ``<token>.npz`` (``occ.data.occ3d_io.save_prediction``),
or one submission file mapping token -> semantics: an ``.npz`` whose keys are
tokens, or a pickle of ``{token: array}`` / ``{token: {'semantics': ...}}``
(optionally wrapped as ``{'results': {...}}``). Pickles are read with the
restricted unpickler (``occ.utils.safe_pickle``): a submission that asks for
anything but plain data and numpy arrays is refused, naming the global.
"""
from __future__ import annotations

import os
import pickle
import threading
import zipfile
from collections import defaultdict

import numpy as np

from occ.data.occ3d_io import OccFileError, load_prediction
from occ.utils.safe_pickle import UnsafePickleError, safe_load


def discover_gt(root: str) -> dict:
    """token -> (labels.npz path, scene name or '') for every labels.npz under ``root``."""
    if not os.path.isdir(root):
        raise OccFileError(f'{root}: GT root is not a directory')
    base = os.path.join(root, 'gts') if os.path.isdir(os.path.join(root, 'gts')) else root
    found = {}
    for entry in sorted(os.scandir(base), key=lambda e: e.name):
        if not entry.is_dir():
            continue
        direct = os.path.join(entry.path, 'labels.npz')
        if os.path.isfile(direct):                     # flat: <token>/labels.npz
            found[entry.name] = (direct, '')
            continue
        for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):   # <scene>/<token>/
            path = os.path.join(sub.path, 'labels.npz')
            if sub.is_dir() and os.path.isfile(path):
                found[sub.name] = (path, entry.name)
    if not found:
        raise OccFileError(f'{root}: no labels.npz found (expected gts/<scene>/<token>/labels.npz '
                           f'or <token>/labels.npz)')
    return found


def infos_by_scene(infos: list) -> list:
    """Info dicts grouped by ``scene_name``, each group in time order."""
    scenes = defaultdict(list)
    for info in infos:
        scenes[info['scene_name']].append(info)
    return [sorted(frames, key=lambda i: i['timestamp']) for frames in scenes.values()]


def scene_sequences(infos: list) -> dict:
    """token -> list of the tokens that follow it in its scene (time order)."""
    nxt = {}
    for frames in infos_by_scene(infos):
        toks = [f['token'] for f in frames]
        for i, t in enumerate(toks):
            nxt[t] = toks[i + 1:]
    return nxt


def scene_history(infos: list) -> dict:
    """token -> list of the tokens before it in its scene, most recent first."""
    prev = {}
    for frames in infos_by_scene(infos):
        toks = [f['token'] for f in frames]
        for i, t in enumerate(toks):
            prev[t] = toks[:i][::-1]
    return prev


class PredictionSource:
    """Loads predictions by token from a folder, an ``.npz`` submission or a pickle submission."""

    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        if os.path.isdir(path):
            self.kind = 'folder'
            self.tokens = {f[:-4] for f in os.listdir(path) if f.endswith('.npz') and not f.startswith('.')}
        elif not os.path.isfile(path):
            raise OccFileError(f'{path}: prediction folder or file not found')
        elif zipfile.is_zipfile(path):
            self.kind = 'npz'
            try:
                with np.load(path, allow_pickle=False) as z:
                    self.tokens = set(z.files)
            except (OSError, ValueError, zipfile.BadZipFile) as e:
                raise OccFileError(f'{path}: corrupt submission npz ({type(e).__name__}: {e})') from e
        else:
            self.kind = 'pickle'
            try:
                data = safe_load(path)
            except UnsafePickleError as e:
                raise OccFileError(str(e)) from None
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as e:
                raise OccFileError(f'{path}: not a .npz or pickle submission '
                                   f'({type(e).__name__}: {e})') from e
            if isinstance(data, dict) and isinstance(data.get('results'), dict):
                data = data['results']
            if not isinstance(data, dict):
                raise OccFileError(f'{path}: submission pickle must be a dict token -> semantics, '
                                   f'got {type(data).__name__}')
            self._data = data
            self.tokens = set(data)

    def where(self, token: str) -> str:
        """Human-readable location of a token's prediction (for error messages)."""
        if self.kind == 'folder':
            return os.path.join(self.path, token + '.npz')
        return f'{self.path}[{token}]'

    def load(self, token: str) -> dict:
        """dict with ``semantics`` uint8 [X,Y,Z], optional ``semantics_future``, ``bytes_sent``."""
        if self.kind == 'folder':
            return load_prediction(self.where(token))
        if self.kind == 'npz':
            z = getattr(self._local, 'npz', None)
            if z is None:                              # one handle per worker thread
                z = self._local.npz = np.load(self.path, allow_pickle=False)
            try:
                value = z[token]
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
                raise OccFileError(f'{self.where(token)}: corrupt entry ({type(e).__name__}: {e})') from e
            return self._check({'semantics': value}, token)
        value = self._data[token]
        out = dict(value) if isinstance(value, dict) else {'semantics': value}
        if 'semantics' not in out:
            raise OccFileError(f'{self.where(token)}: entry has no "semantics" (keys {sorted(out)})')
        return self._check(out, token)

    def _check(self, out: dict, token: str) -> dict:
        for key, ndim in (('semantics', 3), ('semantics_future', 4)):
            if key not in out:
                continue
            a = np.asarray(out[key])
            if a.ndim != ndim or a.dtype != np.uint8:
                raise OccFileError(f'{self.where(token)}: "{key}" is {a.dtype} {a.shape}, '
                                   f'expected uint8 with {ndim} dims')
            out[key] = a
        return out
