"""Write each test prediction to ``<out_dir>/<sample_token>.npz`` as it is produced."""
from __future__ import annotations

import os

import numpy as np

from mmengine.hooks import Hook

from occ.data.occ3d_io import save_prediction
from occ.registry import HOOKS


def upsample_grid(sem: np.ndarray, shape) -> np.ndarray:
    """Nearest-neighbour upsampling of the last three axes of ``sem`` to ``shape`` (X, Y, Z).

    Each coarse voxel becomes an f x f x f block (one integer f for all axes),
    the inverse of the dataset's label coarsening, so a 0.8 m model's output
    can be scored against 0.4 m Occ3D label files.
    """
    src = sem.shape[-3:]
    if tuple(src) == tuple(shape):
        return sem
    f = shape[0] // src[0]
    if f < 1 or any(t != s * f for s, t in zip(src, shape)):
        raise ValueError(f'cannot upsample a {tuple(src)} grid to {tuple(shape)}: '
                         'needs the same integer factor on every axis')
    for ax in (-3, -2, -1):
        sem = np.repeat(sem, f, axis=ax)
    return sem


@HOOKS.register_module()
class PredictionWriterHook(Hook):
    """Save the model's ``mode='predict'`` outputs during ``runner.test()``.

    Each output dict carries ``sample_token`` and ``semantics`` (uint8 [X, Y, Z]),
    optionally ``semantics_future`` (uint8 [H, X, Y, Z]) and ``bytes_sent``.
    Files are written atomically; under DDP each rank writes the samples it
    evaluated (distinct tokens), so no two processes touch the same file.

    Args:
        out_dir: destination folder.
        label_grid: (X, Y, Z) of the label files; predictions on a coarser model
            grid are upsampled to it (:func:`upsample_grid`). None keeps the model grid.
    """

    def __init__(self, out_dir: str, label_grid=None):
        self.out_dir = os.fspath(out_dir)
        self.label_grid = tuple(label_grid) if label_grid is not None else None
        self.count = 0

    def before_test(self, runner) -> None:
        os.makedirs(self.out_dir, exist_ok=True)
        self.count = 0

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        for out in outputs or []:
            token = out['sample_token']
            extra = {k: out[k] for k in ('bytes_sent',) if out.get(k) is not None}
            sem, fut = out['semantics'], out.get('semantics_future')
            if self.label_grid is not None:
                sem = upsample_grid(sem, self.label_grid)
                fut = None if fut is None else upsample_grid(fut, self.label_grid)
            save_prediction(os.path.join(self.out_dir, f'{token}.npz'), sem,
                            semantics_future=fut, **extra)
            self.count += 1

    def after_test(self, runner) -> None:
        runner.logger.info(f'PredictionWriterHook: wrote {self.count} predictions to {self.out_dir}')
