"""The one loader for pickled user files (info files, submission pickles): no code runs from data.

``pickle.load`` imports and calls whatever a file names, so a booby-trapped
``.pkl`` runs its payload the moment it is read. :func:`safe_load` reads with
an unpickler that resolves only the globals plain data needs:

* builtins that are data types (dict, list, tuple, set, str, bytes, int, float, ...),
* numpy arrays, scalars and dtypes (both the numpy 1.x ``numpy.core`` and the
  numpy 2.x ``numpy._core`` spellings, so files written by either load),
* ``collections`` containers (OrderedDict, defaultdict, Counter, deque),
* ``_codecs.encode`` (how protocol-2 pickles store bytes).

That is everything an mmdet3d-style info file or an Occ3D submission holds.
Anything else (``os.system``, ``builtins.eval``, a project class) is refused
with :class:`UnsafePickleError` naming the file and the global; nothing is
imported or called first. Checkpoints go through torch's own ``weights_only``
unpickler instead (``occ.engine.checkpoint.load_checkpoint_file``), which
reuses :func:`numpy_globals`.
"""
from __future__ import annotations

import _compat_pickle
import builtins
import codecs
import collections
import os
import pickle

import numpy as np

# Builtins that only construct data. Not getattr, eval, exec, __import__, open, type, object.
_SAFE_BUILTINS = ('dict', 'list', 'tuple', 'set', 'frozenset', 'str', 'bytes', 'bytearray',
                  'int', 'float', 'complex', 'bool', 'slice', 'range')
_SAFE_COLLECTIONS = ('OrderedDict', 'defaultdict', 'Counter', 'deque')


def _numpy_core():
    """numpy's multiarray / numeric modules under whichever name this numpy has."""
    try:
        from numpy._core import multiarray, numeric      # numpy >= 2 (and 1.26's alias)
    except ImportError:                                  # pragma: no cover - older numpy
        from numpy.core import multiarray, numeric
    return multiarray, numeric


def numpy_globals() -> dict:
    """Qualified name -> object for what pickled numpy arrays, scalars and dtypes ask for."""
    multiarray, numeric = _numpy_core()
    out = {'numpy.ndarray': np.ndarray, 'numpy.dtype': np.dtype}
    for core in ('numpy.core', 'numpy._core'):
        out[f'{core}.multiarray._reconstruct'] = multiarray._reconstruct
        out[f'{core}.multiarray.scalar'] = multiarray.scalar
        out[f'{core}.numeric._frombuffer'] = numeric._frombuffer   # protocol-5 arrays
    dtypes = getattr(np, 'dtypes', None)                 # numpy >= 1.25 pickles dtype classes by name
    if dtypes is not None:
        for name in dir(dtypes):
            obj = getattr(dtypes, name)
            if isinstance(obj, type) and issubclass(obj, np.dtype):
                out[f'numpy.dtypes.{name}'] = obj
    return out


def _safe_globals() -> dict:
    out = {f'builtins.{n}': getattr(builtins, n) for n in _SAFE_BUILTINS}
    out.update({f'collections.{n}': getattr(collections, n) for n in _SAFE_COLLECTIONS})
    out['_codecs.encode'] = codecs.encode
    out.update(numpy_globals())
    return out


SAFE_GLOBALS = _safe_globals()


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asks for a global outside the allow-list; the message names the file and the global."""


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` resolves only :data:`SAFE_GLOBALS`."""

    def __init__(self, file, name: str = '<stream>'):
        super().__init__(file)
        self.name = name

    def find_class(self, module, name):
        # Protocol 0-2 pickles use Python 2 names (``__builtin__.set``), as pickle maps them.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        else:
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        obj = SAFE_GLOBALS.get(f'{module}.{name}')
        if obj is None:
            raise UnsafePickleError(
                f'{self.name}: refused to load: it asks for the Python global {module}.{name}; '
                'data files may only hold builtin data types, numpy arrays/dtypes and '
                'collections (the file may be booby-trapped)')
        return obj

    def persistent_load(self, pid):
        raise UnsafePickleError(f'{self.name}: refused to load: the pickle uses persistent ids')


def safe_load(path: str):
    """Unpickle ``path`` with :class:`RestrictedUnpickler`.

    Raises FileNotFoundError / OSError as ``open`` does, :class:`UnsafePickleError`
    for a forbidden global, and ``pickle.UnpicklingError`` / ``EOFError`` /
    ``ValueError`` for corrupt or truncated files (callers name the file).
    """
    path = os.fspath(path)
    with open(path, 'rb') as f:
        return RestrictedUnpickler(f, path).load()
