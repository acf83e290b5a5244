#!/usr/bin/env python
"""One prepared GPU check: CUDA-vs-CPU correctness, AMP training, DDP and inference speed -> one JSON.

    python tools/device_check.py --out work_dirs/device_check/device_check.json      # GPU machine
    python tools/device_check.py --device cpu --tiny --out /tmp/dc.json               # here, ~1 min
    bash tools/device_check.sh                # on the GPU machine: installs the carried wheels first

Sections (``--sections`` to pick some): environment, world, bev_pool, sparse_head,
ray_iou, evaluator, inference, train_flashocc, train_bevformer, ddp. Each runs in
its own process under a cap; ``--budget`` bounds the whole run (default 480 s, so
the check ends well inside a 10-minute command). The JSON is rewritten after
every section; the log (default: next to it, ``.log``) holds every section's
output. See occ/analysis/device_check and docs/PERFORMANCE.md, "GPU check".
Exit code: 0 when every section is ok or skipped, 1 otherwise.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

from occ.analysis.device_check import SECTIONS, CheckOptions, run_device_check  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True, help='the JSON report')
    p.add_argument('--log', help='the log (default: the JSON path with .log)')
    p.add_argument('--device', choices=('auto', 'cuda', 'cpu'), default='auto',
                   help='auto = CUDA when available (default)')
    p.add_argument('--tiny', action='store_true',
                   help='tiny world and tiny config variants (the CPU test; numbers are not meaningful)')
    p.add_argument('--budget', type=float, default=480.0, help='seconds for the whole run (default 480)')
    p.add_argument('--sections', nargs='+', choices=list(SECTIONS), help='run only these sections')
    p.add_argument('--work-dir', help='world, DDP run and section files (default: <out dir>/device_check_work)')
    p.add_argument('--world', help='reuse this synthetic world root instead of generating one')
    p.add_argument('--iters', type=int, help='training iterations per run (default 40; --tiny 3)')
    p.add_argument('--fps-warmup', type=int, help='untimed inference calls (default 10; --tiny 1)')
    p.add_argument('--fps-repeats', type=int, help='timed inference calls (default 200; --tiny 3)')
    p.add_argument('--wheels', help='folder of the carried wheels, listed in the environment section')
    p.add_argument('--seed', type=int, default=0, help='seed of the synthetic world')
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    opts = CheckOptions(out=a.out, log=a.log, device=a.device, tiny=a.tiny, work_dir=a.work_dir, world=a.world,
                        budget_s=a.budget, sections=a.sections, iters=a.iters, fps_warmup=a.fps_warmup,
                        fps_repeats=a.fps_repeats, wheels=a.wheels, seed=a.seed)
    try:
        report = run_device_check(opts)
    except ValueError as e:
        print(f'device_check: {e}', file=sys.stderr)
        return 2
    bad = {n: s for n, s in report['summary'].items() if s not in ('ok', 'skipped')}
    print(f"device_check: {report['elapsed_s']} s, report {opts.out}" + (f'; not ok: {bad}' if bad else ''))
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
