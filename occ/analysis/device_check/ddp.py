"""DDP through the real entry point: ``torchrun --nproc_per_node 1 tools/train.py CONFIG --launcher pytorch``.

Runs the check's variant of the FlashOcc-style config (``check_configs``: the
generated world, a short run) for a few iterations with ``python -m
torch.distributed.run``, which is what the ``torchrun`` script runs. On CUDA the
process group uses NCCL (the config's ``env_cfg``) and the config's own
optimiser wrapper (fp16 AMP in the GPU schedule); ``NCCL_DEBUG=INFO`` makes NCCL
announce itself, which is how the check knows NCCL was really used. On CPU
tools/train.py joins a gloo group instead. Checks: exit code 0, one finite
loss per iteration, a verified final checkpoint, and NCCL seen (CUDA only).
"""
from __future__ import annotations

import glob
import json
import os
import os.path as osp
import shutil
import signal
import socket
import subprocess
import sys
import time

from occ.analysis.device_check import check_configs
from occ.analysis.device_check.runner import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def read_scalars(work_dir: str) -> list:
    """Rows of mmengine's ``<work_dir>/<timestamp>/vis_data/scalars.json`` (newest run)."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        return []
    with open(files[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


def section(ctx) -> dict:
    import math

    from occ.engine import verify_checkpoint
    iters = check_configs.DDP_ITERS['tiny' if ctx.opts.tiny else 'full']
    batch = 1 if ctx.opts.tiny else 4
    wd = osp.join(ctx.opts.work_dir, 'ddp')
    if osp.isdir(wd):
        shutil.rmtree(wd)                       # no resume from an earlier run's checkpoint
    config = check_configs.write_variant('flashocc', ctx.world['root'], ctx.opts.tiny, ctx.device == 'cuda',
                                         osp.join(ctx.opts.work_dir, 'configs'))
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '1',
           '--master_addr', '127.0.0.1', '--master_port', str(free_port()),
           osp.join(REPO, 'tools', 'train.py'), config, '--launcher', 'pytorch', '--work-dir', wd,
           '--cfg-options', f'train_dataloader.batch_size={batch}', 'train_dataloader.num_workers=2']
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '4'))
    if ctx.device == 'cuda':
        env['NCCL_DEBUG'] = 'INFO'
    else:
        env['CUDA_VISIBLE_DEVICES'] = ''       # --device cpu on a CUDA machine: gloo, as on a laptop
    ctx.log(' '.join(cmd))
    t0 = time.time()
    out_path = osp.join(ctx.opts.work_dir, 'ddp_torchrun.log')
    with open(out_path, 'w') as out_f:
        # own process group: on a time-out the agent and its workers go together
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out_f, stderr=subprocess.STDOUT,
                                preexec_fn=os.setpgrp)
        try:
            rc = proc.wait(max(10.0, ctx.remaining() - 5))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    with open(out_path, errors='replace') as f:
        out = f.read() + ('' if rc is not None else '\n[timed out]')
    seconds = time.time() - t0
    print(out[-20000:], flush=True)             # into the log
    rows = read_scalars(wd)
    losses = [row['loss'] for row in rows if 'loss' in row]
    times = [row['time'] for row in rows if 'time' in row]
    ckpt = osp.join(wd, f'iter_{iters}.pth')
    ckpt_ok = False
    if osp.isfile(ckpt):
        try:
            verify_checkpoint(ckpt)
            ckpt_ok = True
        except Exception as e:   # noqa: BLE001
            ckpt_ok = f'{type(e).__name__}: {e}'
    stats = {}
    if osp.isfile(osp.join(wd, 'train_stats.json')):
        with open(osp.join(wd, 'train_stats.json')) as f:
            stats = json.load(f)
    backend = 'nccl' if ctx.device == 'cuda' else 'gloo'
    result = {'command': ' '.join(cmd), 'config': config, 'returncode': rc, 'seconds': round(seconds, 1),
              'backend': backend,
              'iters': iters, 'batch_size': batch, 'losses': losses, 'iter_time_s': times,
              'train_stats': stats, 'checkpoint': ckpt if osp.isfile(ckpt) else None}
    checks = {'exit_code_0': rc == 0,
              'one_finite_loss_per_iter': len(losses) == iters and all(math.isfinite(v) for v in losses),
              'checkpoint_verified': ckpt_ok is True}
    if ctx.device == 'cuda':
        checks['nccl_used'] = 'NCCL INFO' in out or 'NCCL version' in out
    if rc != 0:
        result['output_tail'] = out[-3000:]
    result['checks'] = checks
    return result
