#!/usr/bin/env python
"""Score world-model stages and baselines per horizon on the same batches; paired intervals over seeds.

    python tools/eval_world.py configs/world_residual_forecaster_cpu.py configs/world_ego_warp.py \
        configs/world_copy_last.py configs/world_residual_tokenizer_cpu.py --oracle --baseline world_ego_warp
    python tools/eval_world.py ... --seeds 3 --ratio-to world_copy_last --data-root data/world_test --split train

A trained config (tokenizer or forecaster) loads the newest checkpoint of
``<work-root>/<config stem>`` (seed index 0) and ``<work-root>/<stem>__seed<k>`` (the
names ``tools/ablate.py --seeds`` gives); baselines have no weights. Writes
``world_eval.md`` / ``.json`` (per-horizon mIoU / IoU, static / dynamic / moving-voxel
mIoU, current-frame reconstruction and codebook usage, and with ``--baseline`` the paired
differences with 95 % bootstrap intervals) into ``--out`` (default ``--work-root``).
Library: ``occ.analysis.world.report``.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('configs', nargs='+', help='world-model configs: tokenizers, forecasters, baselines')
    p.add_argument('--work-root', default='work_dirs', help='where the trained configs\' work dirs are')
    p.add_argument('--seeds', type=int, default=1, metavar='N', help='seed indices 0..N-1 of every trained config')
    p.add_argument('--baseline', metavar='NAME', help='config stem every forecaster is compared with (paired)')
    p.add_argument('--ratio-to', metavar='NAME',
                   help='config stem whose 1-3 s average mIoU every model\'s is divided by (e.g. world_copy_last)')
    p.add_argument('--oracle', action='store_true',
                   help='also score each forecaster\'s tokenizer oracle (future frames from their own tokens)')
    p.add_argument('--data-root', metavar='DIR', help='nuScenes root to test on (as tools/test.py --data-root)')
    p.add_argument('--split', help='info file occ_infos_<SPLIT>.pkl of that root (default: the configs\' val)')
    p.add_argument('--max-batches', type=int, help='score only the first N test batches')
    p.add_argument('--n-boot', type=int, default=1000, help='bootstrap replicates of the paired intervals')
    p.add_argument('--out', help='output folder (default --work-root)')
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from occ.analysis.world import report
    text = report(args.configs, args.work_root, args.seeds, args.baseline, args.data_root, args.split,
                  args.oracle, args.max_batches, args.out, args.n_boot, ratio_to=args.ratio_to)
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
