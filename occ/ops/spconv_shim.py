"""Make spconv's CPU wheel usable without a CUDA driver.

spconv 2.x asks ``torch.cuda.current_stream()`` for a stream handle before
every sparse op, even when all tensors live on the CPU; without a driver that
call raises. Its CPU kernels ignore the stream, so handing them 0 (the null
stream) is correct. On a machine with CUDA the original function is kept.

The patch is applied once, when ``occ.ops`` is imported. It replaces the
function in ``spconv.pytorch.cppcore`` (so modules imported later pick up the
patched one) and in every already-imported spconv module that bound the name
with ``from spconv.pytorch.cppcore import get_current_stream``.

Second fix, found by the dense-conv3d test: spconv 2.3.8's CPU kernels give
WRONG results (differences of order 1, not rounding) when torch runs more than
one intra-op thread; with one thread they equal dense conv3d exactly. So every
sparse-conv kernel in ``spconv.pytorch.ops`` runs with one torch thread when
its tensors are on the CPU (CUDA calls are untouched).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import sys

import torch

_PATCHED = False


def _null_stream_if_no_cuda(original):
    def get_current_stream():
        # Checked per call, not at patch time, so a process that initialises
        # CUDA later still gets real streams.
        if torch.cuda.is_available():
            return original()
        return 0
    get_current_stream.__wrapped__ = original
    get_current_stream.__doc__ = 'CUDA stream handle, or 0 when CUDA is absent (occ spconv shim).'
    return get_current_stream


def _silence_fx_tracing_notice() -> None:
    # Every spconv module forward calls torch.fx's is_fx_tracing(), whose first
    # call logs a once-per-process deprecation notice aimed at spconv's authors,
    # not at users. Emit it once here with that logger muted (it is cached, so
    # it stays quiet). Private torch API: skipped if it is not there.
    try:
        from torch.fx import _symbolic_trace
        notice = _symbolic_trace.is_fx_tracing_warning
    except (ImportError, AttributeError):
        return
    fx_log = logging.getLogger(_symbolic_trace.__name__)
    level = fx_log.level
    fx_log.setLevel(logging.ERROR)
    try:
        notice()
    finally:
        fx_log.setLevel(level)


# spconv.pytorch.ops kernels whose CPU path races with several threads (forward and backward).
_CPU_KERNEL_PREFIXES = ('indice_conv', 'implicit_gemm', 'indice_maxpool', 'indice_avgpool',
                        'get_indice_pairs', 'global_pool_rearrange')


@contextlib.contextmanager
def _one_torch_thread():
    prev = torch.get_num_threads()
    if prev == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _single_threaded_on_cpu(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        on_cuda = any(isinstance(a, torch.Tensor) and a.is_cuda
                      for a in (*args, *kwargs.values()))
        if on_cuda:
            return fn(*args, **kwargs)
        with _one_torch_thread():
            return fn(*args, **kwargs)
    wrapper.__occ_single_threaded__ = True
    return wrapper


def _serialise_cpu_kernels(ops_module) -> None:
    # spconv.pytorch.functional calls ``ops.<name>(...)`` through the module at
    # call time, so replacing the module attributes reaches every caller.
    for name in dir(ops_module):
        fn = getattr(ops_module, name)
        if (name.startswith(_CPU_KERNEL_PREFIXES) and callable(fn)
                and not getattr(fn, '__occ_single_threaded__', False)):
            setattr(ops_module, name, _single_threaded_on_cpu(fn))


def apply_spconv_shim() -> bool:
    """Patch spconv's ``get_current_stream`` everywhere it is bound; serialise its CPU kernels.

    Returns True if spconv is installed (patched now or earlier), False if
    spconv cannot be imported (sparse heads then raise a clear error).
    """
    global _PATCHED
    if _PATCHED:
        return True
    try:
        import spconv.pytorch  # noqa: F401  (imports ops, hash, utils)
        from spconv.pytorch import cppcore
    except ImportError:
        return False
    _silence_fx_tracing_notice()
    from spconv.pytorch import ops
    _serialise_cpu_kernels(ops)
    original = cppcore.get_current_stream
    patched = _null_stream_if_no_cuda(original)
    cppcore.get_current_stream = patched
    for name, module in list(sys.modules.items()):
        if name.startswith('spconv.') and getattr(module, 'get_current_stream', None) is original:
            setattr(module, 'get_current_stream', patched)
    _PATCHED = True
    return True


def spconv_available() -> bool:
    """True if spconv can be imported and the shim is in place."""
    return apply_spconv_shim()


def require_spconv(what: str):
    """Return ``spconv.pytorch`` (shim applied) or raise naming the missing wheel."""
    if not apply_spconv_shim():
        raise ImportError(
            f'{what} needs spconv: `pip install spconv==2.3.8` (CPU) or '
            f'`pip install spconv-cu121==2.3.8` (CUDA >= 12.1); see pyproject extras [cpu]/[cu121].')
    import spconv.pytorch as spconv
    return spconv


apply_spconv_shim()
