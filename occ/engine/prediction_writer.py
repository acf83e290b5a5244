"""Write each test prediction to ``<out_dir>/<sample_token>.npz`` as it is produced."""
from __future__ import annotations

import os

from mmengine.hooks import Hook

from occ.data.occ3d_io import save_prediction
from occ.registry import HOOKS


@HOOKS.register_module()
class PredictionWriterHook(Hook):
    """Save the model's ``mode='predict'`` outputs during ``runner.test()``.

    Each output dict carries ``sample_token`` and ``semantics`` (uint8 [X, Y, Z]),
    optionally ``semantics_future`` (uint8 [H, X, Y, Z]) and ``bytes_sent``.
    Files are written atomically; under DDP each rank writes the samples it
    evaluated (distinct tokens), so no two processes touch the same file.
    """

    def __init__(self, out_dir: str):
        self.out_dir = os.fspath(out_dir)
        self.count = 0

    def before_test(self, runner) -> None:
        os.makedirs(self.out_dir, exist_ok=True)
        self.count = 0

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        for out in outputs or []:
            token = out['sample_token']
            extra = {k: out[k] for k in ('bytes_sent',) if out.get(k) is not None}
            save_prediction(os.path.join(self.out_dir, f'{token}.npz'), out['semantics'],
                            semantics_future=out.get('semantics_future'), **extra)
            self.count += 1

    def after_test(self, runner) -> None:
        runner.logger.info(f'PredictionWriterHook: wrote {self.count} predictions to {self.out_dir}')
