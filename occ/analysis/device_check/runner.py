"""Run the device-check sections, each in its own process, under one time budget; write one JSON.

The parent process imports neither torch nor CUDA: it starts one child per
section (``python -m occ.analysis.device_check --child NAME ...``), gives it a
time cap (the smaller of the section's cap and what is left of the global
budget), and merges the child's result file into the report. The report is
rewritten atomically after every section, so a run that is cut short still
leaves every finished section on disk.

Statuses: ``ok`` (every check passed), ``failed`` (a check did not pass: the
numbers say which), ``error`` (an exception, a crash or a non-zero exit: the
message and the log tail are kept), ``timeout`` (the cap ran out; partial
results are kept), ``skipped`` (with the reason).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import os.path as osp
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Optional

STATUSES = ('ok', 'failed', 'error', 'timeout', 'skipped')
FINAL_RESERVE_S = 5.0      # kept back from the budget to write the final report
MIN_SECTION_S = 10.0       # a section is not started with less than this left
REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


@dataclass
class Section:
    """One section: ``module:function`` taking a :class:`SectionContext`, caps in seconds."""
    target: str
    cap_s: float
    tiny_cap_s: float
    needs_world: bool = False

    def function(self) -> Callable:
        import importlib
        mod, fn = self.target.split(':')
        return getattr(importlib.import_module(mod), fn)


_P = 'occ.analysis.device_check.'
# Order matters only for the budget: cheap correctness first, then speed, training and DDP.
# Caps: (GPU machine, --tiny on CPU). The tiny caps are generous because a shared 2-core
# machine can be 5-10x slower under load; at light load the whole tiny run takes about a minute.
SECTIONS: dict[str, Section] = {
    'environment': Section(_P + 'environment:section', 60, 120),
    'world': Section(_P + 'world:section', 120, 150),
    'bev_pool': Section(_P + 'parity:bev_pool_section', 60, 90),
    'sparse_head': Section(_P + 'parity:sparse_head_section', 60, 90),
    'ray_iou': Section(_P + 'parity:ray_iou_section', 90, 90, needs_world=True),
    'evaluator': Section(_P + 'parity:evaluator_section', 90, 90, needs_world=True),
    'inference': Section(_P + 'inference:section', 90, 150, needs_world=True),
    'train_flashocc': Section(_P + 'training:flashocc_section', 150, 240, needs_world=True),
    'train_bevformer': Section(_P + 'training:bevformer_section', 150, 240, needs_world=True),
    'ddp': Section(_P + 'ddp:section', 120, 240, needs_world=True),
}


@dataclass
class CheckOptions:
    """Everything a run needs (serialised to JSON for the section processes).

    ``None`` for ``iters``/``fps_warmup``/``fps_repeats`` means the mode's default
    (full: 40 / 10 / 200, tiny: 3 / 1 / 3).
    """
    out: str
    log: Optional[str] = None
    device: str = 'auto'                  # 'auto' (CUDA when available), 'cuda' or 'cpu'
    tiny: bool = False
    work_dir: Optional[str] = None        # default: <dir of --out>/device_check_work
    world: Optional[str] = None           # an existing world root to reuse instead of generating one
    budget_s: float = 480.0
    sections: Optional[list] = None       # None = all, in SECTIONS order
    iters: Optional[int] = None
    fps_warmup: Optional[int] = None
    fps_repeats: Optional[int] = None
    wheels: Optional[str] = None          # folder of carried wheels (reported by 'environment')
    seed: int = 0

    def resolved(self) -> 'CheckOptions':
        o = dataclasses.replace(self)
        o.out = osp.abspath(o.out)
        o.log = osp.abspath(o.log or osp.splitext(o.out)[0] + '.log')
        o.work_dir = osp.abspath(o.work_dir or osp.join(osp.dirname(o.out), 'device_check_work'))
        if o.world:
            o.world = osp.abspath(o.world)
        if o.wheels:
            o.wheels = osp.abspath(o.wheels)
        if o.iters is None:
            o.iters = 3 if o.tiny else 40
        if o.fps_warmup is None:
            o.fps_warmup = 1 if o.tiny else 10
        if o.fps_repeats is None:
            o.fps_repeats = 3 if o.tiny else 200
        if o.device not in ('auto', 'cuda', 'cpu'):
            raise ValueError(f"--device must be 'auto', 'cuda' or 'cpu', got {o.device!r}")
        names = list(SECTIONS) if not o.sections else list(o.sections)
        unknown = [n for n in names if n not in SECTIONS]
        if unknown:
            raise ValueError(f'unknown section(s) {unknown}; sections: {list(SECTIONS)}')
        o.sections = names
        return o


class SkipSection(Exception):
    """Raised by a section (or part of one) that cannot run here; the message is the reason."""


@dataclass
class SectionContext:
    """What a section function gets: options, its deadline, the world and a result checkpoint."""
    opts: CheckOptions
    name: str
    deadline: float                       # time.time() by which the section should return
    part_path: str
    world: Optional[dict] = None          # the 'world' section's result (root, info files)
    device: str = 'cpu'                   # resolved: 'cuda' or 'cpu'
    cuda: bool = False                    # CUDA usable in this process

    def remaining(self) -> float:
        return self.deadline - time.time()

    def log(self, msg: str) -> None:
        print(f'[{self.name}] {msg}', flush=True)

    def checkpoint(self, result: dict) -> None:
        """Save partial results now: kept if the section is then killed at its cap."""
        save_json(self.part_path, dict(result, status='running'))


def jsonable(obj):
    """Strict-JSON version of ``obj``: numpy/torch scalars and arrays to lists, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, 'tolist'):            # numpy / torch
        return jsonable(obj.tolist())
    if hasattr(obj, 'item'):
        return jsonable(obj.item())
    return str(obj)


def save_json(path: str, obj) -> None:
    from occ.utils.io import atomic_save_json
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    atomic_save_json(path, jsonable(obj), allow_nan=False)


def finish_status(result: dict) -> dict:
    """Fill ``status`` from the checks when the section did not set it."""
    if result.get('status') in STATUSES:
        return result
    checks = result.get('checks') or {}
    result['status'] = 'failed' if any(v is False for v in checks.values()) else 'ok'
    return result


# ---------------------------------------------------------------------- child side
def run_child(name: str, opts_path: str, part_path: str, deadline: float, world_path: Optional[str]) -> int:
    """Body of one section process: run the section, write its result to ``part_path``."""
    with open(opts_path) as f:
        opts = CheckOptions(**json.load(f))
    world = None
    if world_path and osp.isfile(world_path):
        with open(world_path) as f:
            world = json.load(f)
    t0 = time.time()
    try:
        import torch
        cuda = torch.cuda.is_available()
        device = 'cuda' if opts.device == 'cuda' or (opts.device == 'auto' and cuda) else 'cpu'
        ctx = SectionContext(opts=opts, name=name, deadline=deadline, part_path=part_path, world=world,
                             device=device, cuda=cuda)
        if device == 'cuda' and not cuda and name != 'environment':
            raise SkipSection('--device cuda was asked for, but torch.cuda.is_available() is False')
        result = SECTIONS[name].function()(ctx) or {}
        finish_status(result)
    except SkipSection as e:
        result = {'status': 'skipped', 'reason': str(e)}
    except Exception as e:   # noqa: BLE001  (every failure is data for the report)
        traceback.print_exc()
        result = {'status': 'error', 'error': f'{type(e).__name__}: {e}',
                  'traceback': traceback.format_exc()[-4000:]}
    result['seconds'] = round(time.time() - t0, 2)
    save_json(part_path, result)
    return 0


# ---------------------------------------------------------------------- parent side
class Interrupted(Exception):
    """SIGTERM/SIGINT reached the parent (e.g. the wrapper's hard time limit)."""


def _raise_interrupted(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def _log_tail(log_path: str, offset: int, lines: int = 40) -> str:
    try:
        with open(log_path, 'rb') as f:
            f.seek(offset)
            text = f.read().decode('utf-8', 'replace')
    except OSError:
        return ''
    return '\n'.join(text.splitlines()[-lines:])


def session_members(sid: int) -> list:
    """PIDs of the processes in session ``sid`` (Linux /proc; empty elsewhere)."""
    out = []
    if not osp.isdir('/proc'):
        return out
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open(f'/proc/{d}/stat') as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(')') + 2:].split()     # state, ppid, pgrp, session, ...
        if len(fields) > 3 and int(fields[3]) == sid:
            out.append(int(d))
    return out


def _kill_group(proc: subprocess.Popen, wait_s: float = 10.0) -> None:
    """End the section process and everything it started, TERM then KILL.

    The section runs in its own session; everything in that session goes, also
    processes in other process groups of it (torchrun's agent and workers).
    """
    for sig, wait in ((signal.SIGTERM, wait_s), (signal.SIGKILL, 10.0)):
        for pid in set(session_members(proc.pid)) | {proc.pid}:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        end = time.time() + wait
        while time.time() < end:
            if proc.poll() is not None and not session_members(proc.pid):
                return
            time.sleep(0.2)


def _run_section_process(name: str, opts: CheckOptions, opts_path: str, world_path: Optional[str],
                         timeout: float, log) -> dict:
    part = osp.join(opts.work_dir, 'parts', f'{name}.json')
    if osp.exists(part):
        os.remove(part)
    grace = min(15.0, 0.15 * timeout)
    deadline = time.time() + timeout - grace
    cmd = [sys.executable, '-m', 'occ.analysis.device_check', '--child', name, '--options', opts_path,
           '--part', part, '--deadline', f'{deadline:.3f}']
    if world_path:
        cmd += ['--world-info', world_path]
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env['PYTHONPATH'] = os.pathsep.join([REPO] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    log.flush()
    offset = log.tell()
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                            start_new_session=True)
    timed_out = False
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        rc = proc.returncode
    except BaseException:
        # the section runs in its own session: end it (and torchrun's workers) before we go
        _kill_group(proc, wait_s=3.0)
        raise
    seconds = round(time.time() - t0, 2)
    result = None
    if osp.isfile(part):
        try:
            with open(part) as f:
                result = json.load(f)
        except (OSError, ValueError):
            result = None
    if timed_out:
        result = dict(result or {}, status='timeout',
                      reason=f'stopped at its cap of {timeout:.0f} s (partial results kept)')
    elif result is None or result.get('status') == 'running':
        how = f'killed by signal {-rc}' if rc is not None and rc < 0 else f'exited with code {rc}'
        result = dict(result or {}, status='error', error=f'section process {how} before writing its result')
    if result['status'] in ('error', 'timeout'):
        result.setdefault('log_tail', _log_tail(opts.log, offset))
    result['seconds'] = seconds
    result['cap_s'] = round(timeout, 1)
    return result


def _targets(sections: dict) -> dict:
    """The issue's targets, read off the results (None = not measured in this run)."""
    out = {}
    parity = [sections.get(n, {}).get('cuda_vs_cpu') for n in ('bev_pool', 'sparse_head', 'ray_iou', 'evaluator')]
    ran = [p for p in parity if isinstance(p, dict) and p.get('status') in ('ok', 'failed')]
    out['cuda_equals_cpu'] = {
        'value': {n: (p or {}).get('status') if isinstance(p, dict) else p
                  for n, p in zip(('bev_pool', 'sparse_head', 'ray_iou', 'evaluator'), parity)},
        'met': all(p['status'] == 'ok' for p in ran) if ran else None}
    mem = [r.get('peak_reserved_mib') for r in sections.get('train_flashocc', {}).get('runs', [])
           if r.get('batch_size') == 4 and r.get('device') == 'cuda']
    mem = [m for m in mem if m is not None]
    out['r50_batch4_memory_le_24GiB'] = {'value_mib': max(mem) if mem else None,
                                         'met': (max(mem) <= 24 * 1024) if mem else None}
    fps = None
    for r in sections.get('inference', {}).get('runs', []):
        if r.get('config') == 'flashocc' and r.get('precision') == 'fp16' and r.get('device') == 'cuda':
            fps = r.get('fps')
    out['r50_fp16_fps_ge_92'] = {'value': fps, 'met': (fps >= 92) if fps is not None else None}
    return out


def run_device_check(opts: CheckOptions, echo=print) -> dict:
    """Run the selected sections; returns the report (also written to ``opts.out``)."""
    opts = opts.resolved()
    os.makedirs(opts.work_dir, exist_ok=True)
    os.makedirs(osp.join(opts.work_dir, 'parts'), exist_ok=True)
    opts_path = osp.join(opts.work_dir, 'options.json')
    save_json(opts_path, dataclasses.asdict(opts))
    world_path = osp.join(opts.work_dir, 'parts', 'world_info.json')
    if osp.exists(world_path):
        os.remove(world_path)
    t_start = time.time()
    deadline = t_start + opts.budget_s
    report = {
        'schema': 1,
        'command': ' '.join(sys.argv),
        'started': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'mode': 'tiny' if opts.tiny else 'full',
        'options': dataclasses.asdict(opts),
        'log': opts.log,
        'sections': {},
    }
    old_handlers = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with open(opts.log, 'a', buffering=1) as log:
            _run_sections(opts, opts_path, world_path, report, deadline, t_start, log, echo)
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    return report


def _run_sections(opts, opts_path, world_path, report, deadline, t_start, log, echo) -> None:
    have_world = False
    log.write(f'\n===== device check {report["started"]} ({report["mode"]}, budget {opts.budget_s:.0f} s) =====\n')
    interrupted = None
    for name in opts.sections:
        sec = SECTIONS[name]
        cap = sec.tiny_cap_s if opts.tiny else sec.cap_s
        left = deadline - time.time() - FINAL_RESERVE_S
        if interrupted:
            result = {'status': 'skipped', 'reason': f'the check was interrupted ({interrupted})'}
        elif sec.needs_world and not have_world:
            result = {'status': 'skipped', 'reason': 'needs the synthetic world, which the world section '
                                                      'did not produce (see sections.world)'}
        elif left < MIN_SECTION_S:
            result = {'status': 'skipped', 'reason': f'global time budget of {opts.budget_s:.0f} s used up'}
        else:
            log.write(f'\n===== section {name} (cap {min(cap, left):.0f} s) =====\n')
            t0 = time.time()
            try:
                result = _run_section_process(name, opts, opts_path, world_path if have_world else None,
                                              min(cap, left), log)
            except Interrupted as e:          # its process group is already ended
                interrupted = str(e)
                result = {'status': 'error', 'error': f'interrupted by {e} while running',
                          'seconds': round(time.time() - t0, 2)}
        if name == 'world' and result.get('status') == 'ok':
            save_json(world_path, result['world'])
            have_world = True
        report['sections'][name] = result
        report['elapsed_s'] = round(time.time() - t_start, 1)
        save_json(opts.out, report)
        echo(f'device_check: {name:<16} {result["status"]:<8} {result.get("seconds", 0):6.1f} s'
             + (f'  ({result.get("reason") or result.get("error")})'
                if result['status'] in ('skipped', 'error', 'timeout') else ''))
    report['summary'] = {n: r['status'] for n, r in report['sections'].items()}
    report['targets'] = _targets(report['sections'])
    report['elapsed_s'] = round(time.time() - t_start, 1)
    save_json(opts.out, report)
    log.write(f'\n===== done in {report["elapsed_s"]} s: {json.dumps(report["summary"])} =====\n')
