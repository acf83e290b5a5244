"""Record wall time and peak memory of a training run in ``<work_dir>/train_stats.json``."""
from __future__ import annotations

import os.path as osp
import resource
import sys
import time

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from occ.registry import HOOKS
from occ.utils.io import atomic_save_json


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == 'darwin' else rss / 1024


@HOOKS.register_module()
class RunStatsHook(Hook):
    """Write ``train_stats.json``: training seconds, iterations, peak RSS and peak CUDA memory.

    ``tools/ablate.py`` reads it to tabulate cost next to accuracy. Time covers
    ``before_train`` to ``after_train`` (data loading included, checkpoint
    writes included); on resume only the resumed part is timed.
    """

    priority = 'VERY_LOW'

    def __init__(self, filename: str = 'train_stats.json'):
        self.filename = filename
        self._t0 = None
        self._start_iter = 0
        self._last_loss = None

    def before_train(self, runner) -> None:
        self._t0 = time.perf_counter()
        self._start_iter = runner.iter
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if outputs and 'loss' in outputs:
            self._last_loss = float(outputs['loss'].detach())

    def after_train(self, runner) -> None:
        if not is_main_process():
            return
        stats = {
            'train_time_s': round(time.perf_counter() - self._t0, 3),
            'iters': runner.iter - self._start_iter,
            'max_iters': runner.max_iters,
            'peak_rss_mb': round(peak_rss_mb(), 1),
            'peak_cuda_mb': (round(torch.cuda.max_memory_allocated() / 2**20, 1)
                             if torch.cuda.is_available() else None),
            'final_loss': self._last_loss,
        }
        atomic_save_json(osp.join(runner.work_dir, self.filename), stats)
