"""Checkpoint files: atomic writes and a cheap integrity check before loading.

mmengine writes checkpoints with a plain ``put`` and the ``last_checkpoint``
pointer with ``open(..., 'w')``: a kill in the middle leaves a truncated file
that ``--resume`` then trips over with an unhelpful zip error. Here every
checkpoint and pointer is written to a temporary file and ``os.replace``-d,
and every load first checks that the file is a complete torch zip archive.
"""
from __future__ import annotations

import os
import os.path as osp
import zipfile
from collections import deque

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from occ.registry import HOOKS
from occ.utils.io import atomic_write_bytes


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or otherwise unreadable."""


def verify_checkpoint(path: str) -> None:
    """Raise CheckpointError naming ``path`` unless it is a complete torch checkpoint.

    ``torch.save`` writes a zip archive whose central directory sits at the
    end of the file, so truncation is detected by opening it; ``testzip``
    then checks every member's CRC (reading the file once, no unpickling).
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise CheckpointError(f'{path}: checkpoint file not found')
    if osp.getsize(path) == 0:
        raise CheckpointError(f'{path}: checkpoint file is empty (interrupted write?)')
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise CheckpointError(
            f'{path}: corrupt or truncated checkpoint ({type(e).__name__}: {e}); '
            'delete it and resume from an earlier one') from e
    if bad is not None:
        raise CheckpointError(f'{path}: corrupt checkpoint (member {bad!r} fails its CRC check)')


def load_state_dict(path: str) -> dict:
    """The model weights of a checkpoint (mmengine's ``state_dict`` entry, or a bare state dict),
    with DDP's ``module.`` prefixes removed; CheckpointError naming ``path`` if it is unreadable.

    mmengine checkpoints hold more than tensors (message hub, schedulers), which torch's
    default ``weights_only=True`` rejects: load only checkpoints you trust.
    """
    import torch
    verify_checkpoint(path)
    ckpt = torch.load(path, map_location='cpu', weights_only=False)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f'{path}: no state dict inside (found {type(ckpt).__name__})')
    return {k.removeprefix('module.'): v for k, v in state.items()}


def resolve_last_checkpoint(work_dir: str) -> str | None:
    """Checkpoint named by ``work_dir/last_checkpoint``, or None if there is no pointer."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        target = f.read().strip()
    if not target:
        raise CheckpointError(f'{pointer}: empty last_checkpoint pointer')
    if not osp.isfile(target):
        raise CheckpointError(f'{pointer}: points to {target}, which does not exist')
    return target


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook made crash-safe.

    Differences from the parent's save step, in order:
    the checkpoint is written atomically (``OccRunner.save_checkpoint``), then
    the ``last_checkpoint`` pointer is replaced atomically, and only then are
    checkpoints beyond ``max_keep_ckpts`` deleted. The parent deletes first and
    writes the pointer with a truncating ``open``, so a kill at the wrong
    moment can leave a pointer that is empty or names a deleted file.
    """

    def _save_checkpoint_with_step(self, runner, step, meta):
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir, ckpt_filename, self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args,
            **self.args)
        if is_main_process():
            atomic_write_bytes(osp.join(runner.work_dir, 'last_checkpoint'),
                               str(self.last_ckpt).encode())
        if self.max_keep_ckpts > 0:
            ids = list(self.keep_ckpt_ids)
            if not ids or ids[-1] != step:
                ids.append(step)
            while len(ids) > self.max_keep_ckpts:
                old = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(ids.pop(0)))
                if is_main_process() and self.file_backend.isfile(old):
                    self.file_backend.remove(old)
            self.keep_ckpt_ids = deque(ids, maxlen=self.max_keep_ckpts)
            runner.message_hub.update_info('keep_ckpt_ids', ids)
