"""Checkpoint files: atomic writes, an integrity check and a code-free load.

mmengine writes checkpoints with a plain ``put`` and the ``last_checkpoint``
pointer with ``open(..., 'w')``: a kill in the middle leaves a truncated file
that ``--resume`` then trips over with an unhelpful zip error. Here every
checkpoint and pointer is written to a temporary file and ``os.replace``-d,
every load first checks that the file is a complete torch zip archive, and
every load unpickles with ``torch.load(weights_only=True)``: a checkpoint is
data, never code (see :func:`load_checkpoint_file`).

Resume never loses finished work: the pointer stores the checkpoint's name
relative to the work dir (a copied work dir resumes from its own files), and
:func:`resolve_last_checkpoint` falls back to the newest ``iter_*.pth`` /
``epoch_*.pth`` that verifies when the pointer is missing, stale or dangling.
"""
from __future__ import annotations

import glob
import logging
import os
import os.path as osp
import pickle
import re
import zipfile
from collections import deque

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from occ.registry import HOOKS
from occ.utils.io import atomic_write_bytes

POINTER = 'last_checkpoint'
_NUMBERED = re.compile(r'^(iter|epoch)_(\d+)\.pth$')
# Temporary files of interrupted writes: ``.iter_4.pth.tmp`` (OccRunner.save_checkpoint)
# and ``.last_checkpoint.<random>.tmp`` (occ.utils.io.atomic_open).
_STALE_TMP = ('.*.pth.tmp', f'.{POINTER}.*.tmp')


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


class _HistoryBufferRecord:
    """Stands in for ``mmengine.logging.HistoryBuffer`` while unpickling a checkpoint.

    mmengine pickles a HistoryBuffer's ``__dict__`` plus its class-level table of
    statistics functions (as ``getattr(HistoryBuffer, 'mean')``). Letting torch's
    ``weights_only`` unpickler call the real ``getattr`` would open a path to any
    attribute of any allowed object; instead the record keeps only the three data
    fields and :func:`_restore_history_buffers` builds real buffers from them.
    """

    _FIELDS = ('max_length', '_log_history', '_count_history')

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError('HistoryBuffer state is not a dict')
        for key in self._FIELDS:
            setattr(self, key, state.get(key))


_HISTORY_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_statistic(obj, name):
    """The only ``getattr`` a checkpoint may call: ``HistoryBuffer.<min|max|current|mean>``."""
    if obj is _HistoryBufferRecord and name in _HISTORY_STATISTICS:
        return name
    raise pickle.UnpicklingError(f'forbidden call builtins.getattr({obj!r}, {name!r})')


def checkpoint_safe_globals() -> list:
    """(object, qualified name) pairs that mmengine 0.10 checkpoints need beyond torch's
    own ``weights_only`` allow-list: numpy arrays/scalars/dtypes (message-hub scalars,
    ``eta``) and the message hub's HistoryBuffer, through the stand-ins above."""
    from occ.utils.safe_pickle import numpy_globals
    pairs = [(obj, name) for name, obj in numpy_globals().items()]
    pairs.append((_HistoryBufferRecord, 'mmengine.logging.history_buffer.HistoryBuffer'))
    pairs.append((_history_buffer_statistic, 'builtins.getattr'))
    return pairs


def _restore_history_buffers(ckpt):
    from mmengine.logging import HistoryBuffer
    hub = ckpt.get('message_hub') if isinstance(ckpt, dict) else None
    scalars = hub.get('log_scalars') if isinstance(hub, dict) else None
    if not isinstance(scalars, dict):
        return ckpt
    for key, rec in list(scalars.items()):
        if isinstance(rec, _HistoryBufferRecord):
            log = [] if rec._log_history is None else rec._log_history
            count = [] if rec._count_history is None else rec._count_history
            scalars[key] = HistoryBuffer(log, count, int(rec.max_length or 1000000))
    return ckpt


def load_checkpoint_file(path: str, map_location='cpu'):
    """Verify ``path`` and load it with ``torch.load(weights_only=True)``.

    Tensors, containers and plain values load as usual; mmengine's message hub and
    numpy scalars go through :func:`checkpoint_safe_globals`. A file that asks for
    any other global (a booby-trapped checkpoint) raises CheckpointError naming the
    file and the global, before anything in it runs.
    """
    import torch
    path = os.fspath(path)
    verify_checkpoint(path)
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r'GLOBAL (\S+)', str(e)) or re.search(r'forbidden call (\S+\(.*?\))', str(e))
        what = found.group(1) if found else str(e).splitlines()[-1]
        if found and '.' not in what.split('(')[0]:
            what = 'builtins.' + what                  # torch prints builtins without their module
        raise CheckpointError(
            f'{path}: refused to load: the checkpoint asks for the Python global {what}; checkpoints '
            'may only hold tensors, numpy arrays and plain containers (the file may be '
            'booby-trapped)') from None
    except (RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f'{path}: unreadable checkpoint ({type(e).__name__}: {e})') from e
    return _restore_history_buffers(ckpt)


def load_state_dict(path: str) -> dict:
    """The model weights of a checkpoint (mmengine's ``state_dict`` entry, or a bare state dict),
    with DDP's ``module.`` prefixes removed; CheckpointError naming ``path`` if it is unreadable
    or asks for code (:func:`load_checkpoint_file`)."""
    ckpt = load_checkpoint_file(path)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f'{path}: no state dict inside (found {type(ckpt).__name__})')
    return {k.removeprefix('module.'): v for k, v in state.items()}


def _number(path: str) -> int | None:
    m = _NUMBERED.match(osp.basename(path))
    return int(m.group(2)) if m else None


def _verifies(path: str) -> bool:
    try:
        verify_checkpoint(path)
        return True
    except CheckpointError:
        return False


def _pointer_target(work_dir: str, text: str) -> str:
    """The file a pointer names: relative names resolve in ``work_dir``; an absolute name
    outside ``work_dir`` (a work dir copied elsewhere, old pointers) means the file of the
    same name here when one exists."""
    if not osp.isabs(text):
        return osp.join(work_dir, text)
    here = osp.join(work_dir, osp.basename(text))
    if osp.realpath(osp.dirname(text)) != osp.realpath(work_dir) and osp.isfile(here):
        return here
    return text


def resolve_last_checkpoint(work_dir: str) -> str | None:
    """The checkpoint to resume ``work_dir`` from, or None when it holds none.

    The newest complete checkpoint wins: the pointer's target when it verifies and no
    newer numbered checkpoint (``iter_N.pth``/``epoch_N.pth``) does; otherwise the newest
    numbered one that verifies (a kill between writing a checkpoint and replacing the
    pointer, a deleted or truncated target). CheckpointError when a pointer exists but
    no checkpoint in the work dir verifies.
    """
    work_dir = os.fspath(work_dir)
    pointer = osp.join(work_dir, POINTER)
    target, problem = None, None
    if osp.isfile(pointer):
        with open(pointer) as f:
            text = f.read().strip()
        if not text:
            problem = f'{pointer}: empty last_checkpoint pointer'
        else:
            target = _pointer_target(work_dir, text)
            if not osp.isfile(target):
                problem = f'{pointer}: points to {target}, which does not exist'
            else:
                try:
                    verify_checkpoint(target)
                except CheckpointError as e:
                    problem = str(e)
            if problem:
                target = None
    if target is not None and _number(target) is None:
        return target                                      # a custom name: the pointer decides
    numbered = sorted((p for p in glob.glob(osp.join(glob.escape(work_dir), '*.pth'))
                       if _number(p) is not None), key=_number, reverse=True)
    newest = None
    for path in numbered:
        if target is not None and _number(target) is not None and _number(path) <= _number(target):
            break                                          # the pointer's target is at least as new
        if _verifies(path):
            newest = path
            break
        print_log(f'resume: skipping {path}: incomplete or corrupt', logger='current',
                  level=logging.WARNING)
    if newest is not None:
        why = problem or (f'{pointer} names {target}' if target else f'{work_dir} has no {POINTER}')
        print_log(f'resume: {why}; resuming from the newest complete checkpoint {newest}',
                  logger='current', level=logging.WARNING)
        return newest
    if target is not None:
        return target
    if problem:
        raise CheckpointError(f'{problem}, and no other complete checkpoint is in {work_dir} '
                              f'(delete {pointer} to start from scratch)')
    return None


def remove_stale_tmp(work_dir: str) -> list:
    """Delete temporary files left by interrupted checkpoint/pointer writes; returns their paths."""
    removed = []
    for pattern in _STALE_TMP:
        for path in glob.glob(osp.join(glob.escape(os.fspath(work_dir)), pattern)):
            try:
                os.remove(path)
                removed.append(path)
            except FileNotFoundError:
                pass
    return removed


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook made crash-safe.

    Differences from the parent's save step, in order:
    the checkpoint is written atomically (``OccRunner.save_checkpoint``), then
    the ``last_checkpoint`` pointer is replaced atomically, and only then are
    checkpoints beyond ``max_keep_ckpts`` deleted. The parent deletes first and
    writes the pointer with a truncating ``open``, so a kill at the wrong
    moment can leave a pointer that is empty or names a deleted file.
    The pointer holds the checkpoint's path relative to the work dir, so a
    copied work dir resumes from its own files; temporary files of writes that
    a kill interrupted are removed when training starts.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process():
            for d in {runner.work_dir, self.out_dir}:
                if isinstance(d, str) and osp.isdir(d):
                    for path in remove_stale_tmp(d):
                        runner.logger.info(f'removed {path} (left by an interrupted write)')

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
            name = str(self.last_ckpt)
            if '://' not in name:                      # local: relative to the work dir if inside it
                rel = osp.relpath(osp.abspath(name), runner.work_dir)
                name = rel if not rel.startswith(os.pardir) else osp.abspath(name)
            atomic_write_bytes(osp.join(runner.work_dir, POINTER), name.encode())
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
