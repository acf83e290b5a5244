"""Atomic writes: a file is either its old content or its complete new content.

Write to a temporary file in the same directory, flush and fsync, then
``os.replace`` (atomic on POSIX). A kill at any moment never leaves a
truncated checkpoint, prediction or label file behind. Files get the mode a
plain ``open`` would give them (0666 minus the umask), not ``mkstemp``'s 0600,
so other users of a shared dataset folder can read labels and info files.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import threading

import numpy as np

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask: from /proc on Linux (read-only), else by setting and restoring it."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str, mode: str = 'wb'):
    """Context manager yielding a file object; the file appears at ``path`` only on success."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=d)
    try:
        with os.fdopen(fd, mode) as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    with atomic_open(path, 'wb') as f:
        f.write(data)


def atomic_save_npz(path: str, compressed: bool = True, **arrays: np.ndarray) -> None:
    """``np.savez[_compressed]`` to ``path`` atomically (the name is kept as given)."""
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_json(path: str, obj, **kwargs) -> None:
    kwargs.setdefault('indent', 2)
    atomic_write_bytes(path, json.dumps(obj, **kwargs).encode())


def atomic_save_figure(fig, path: str, close: bool = True, **savefig_kwargs) -> None:
    """A matplotlib figure to ``path`` atomically (PNG unless ``format`` says otherwise);
    the figure is closed afterwards unless ``close=False``."""
    savefig_kwargs.setdefault('format', 'png')
    buf = io.BytesIO()
    fig.savefig(buf, **savefig_kwargs)
    if close:
        import matplotlib.pyplot as plt
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def atomic_torch_save(obj, path: str) -> None:
    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
