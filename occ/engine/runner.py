"""OccRunner: mmengine's Runner with atomic checkpoints and checked loads."""
from __future__ import annotations

import os
import os.path as osp
import re

from mmengine.dist import master_only
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from occ.engine.checkpoint import CheckpointError, load_checkpoint_file, resolve_last_checkpoint
from occ.registry import RUNNERS


def _is_local(path: str) -> bool:
    return '://' not in str(path)


@RUNNERS.register_module()
class OccRunner(Runner):
    """Runner whose checkpoints are never half-written and never silently half-read.

    Configs select it with ``runner_type = 'occ.OccRunner'`` (configs/_base_/default_runtime.py);
    ``mmengine.registry.RUNNERS.build(cfg)`` builds it. It adds no config semantics: the same
    config runs on a plain ``Runner.from_cfg(cfg)``, only without the guarantees below.

    * ``save_checkpoint`` lets mmengine write ``.<name>.tmp`` next to the target,
      fsyncs it and ``os.replace``-s it into place (atomic on POSIX).
    * ``load_checkpoint`` (used by ``--resume``, ``load_from`` and testing)
      first runs :func:`verify_checkpoint`, so a truncated file fails with an
      error naming it instead of a zip-reader message; it unpickles with
      ``weights_only=True`` and refuses a checkpoint that lacks model weights
      unless ``allow_partial_load`` is set (the tools' ``--allow-partial``).
    * ``load_or_resume`` resumes from the newest complete checkpoint.
    """

    #: Load a checkpoint that lacks some model weights (warning instead of CheckpointError).
    allow_partial_load: bool = False

    @master_only
    def save_checkpoint(self, out_dir, filename, file_client_args=None, save_optimizer=True,
                        save_param_scheduler=True, meta=None, by_epoch=True, backend_args=None):
        kwargs = dict(file_client_args=file_client_args, save_optimizer=save_optimizer,
                      save_param_scheduler=save_param_scheduler, meta=meta,
                      by_epoch=by_epoch, backend_args=backend_args)
        if not _is_local(out_dir) or file_client_args is not None or backend_args is not None:
            return super().save_checkpoint(out_dir, filename, **kwargs)
        os.makedirs(out_dir, exist_ok=True)
        tmp_name = f'.{filename}.tmp'
        tmp_path = osp.join(out_dir, tmp_name)
        try:
            super().save_checkpoint(out_dir, tmp_name, **kwargs)
            fd = os.open(tmp_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp_path, osp.join(out_dir, filename))
        finally:
            if osp.exists(tmp_path):
                os.remove(tmp_path)

    def load_checkpoint(self, filename, map_location='cpu', strict=False,
                        revise_keys=((r'^module\.', ''),)):
        """Load ``filename`` into the model (``--resume``, ``load_from``, testing).

        The file is verified and read with ``torch.load(weights_only=True)``
        (:func:`occ.engine.checkpoint.load_checkpoint_file`). Model weights missing from
        the checkpoint (or of another shape) are a CheckpointError naming the file, unless
        ``self.allow_partial_load`` (``--allow-partial`` of the tools): a checkpoint without
        matching weights would otherwise test a random model.
        """
        if not _is_local(filename):
            return super().load_checkpoint(filename, map_location=map_location, strict=strict,
                                           revise_keys=list(revise_keys))
        checkpoint = load_checkpoint_file(filename, map_location=map_location)
        if not isinstance(checkpoint, dict):
            raise CheckpointError(f'{filename}: not an mmengine checkpoint '
                                  f'(found {type(checkpoint).__name__})')
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        self._check_model_keys(model, checkpoint, filename, revise_keys)
        checkpoint = _load_checkpoint_to_model(model, checkpoint, strict,
                                               revise_keys=list(revise_keys))
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def _check_model_keys(self, model, checkpoint, filename, revise_keys) -> None:
        state = checkpoint.get('state_dict', checkpoint)
        if not isinstance(state, dict):
            raise CheckpointError(f'{filename}: no state dict inside')
        for pattern, repl in revise_keys:
            state = {re.sub(pattern, repl, k): v for k, v in state.items()}
        own = model.state_dict()
        missing = [k for k in own if k not in state and 'num_batches_tracked' not in k]
        reshaped = [k for k in own if k in state and hasattr(state[k], 'shape')
                    and tuple(state[k].shape) != tuple(own[k].shape)]
        if not missing and not reshaped:
            return
        bad = missing + reshaped
        what = ', '.join(([f'{len(missing)} are missing from it'] if missing else [])
                         + ([f'{len(reshaped)} have another shape'] if reshaped else []))
        msg = (f'{filename}: of the {len(own)} model weights {what} '
               f'(e.g. {", ".join(bad[:3])}); it was not written for this model')
        if not self.allow_partial_load:
            raise CheckpointError(msg + '. Pass --allow-partial to load the matching weights anyway')
        self.logger.warning(msg + '; loading the matching weights only (--allow-partial)')

    def load_or_resume(self) -> None:
        # Auto-resume picks the newest complete checkpoint itself: a missing, stale or
        # dangling ``last_checkpoint`` falls back to the newest ``iter_*.pth`` that verifies.
        if not self._has_loaded and self._resume and self._load_from is None:
            target = resolve_last_checkpoint(self.work_dir)
            if target is None:
                self.logger.warning(f'--resume: no checkpoint in {self.work_dir}; '
                                    'training starts from scratch')
            self._load_from = target
        super().load_or_resume()
