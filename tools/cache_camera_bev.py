#!/usr/bin/env python
"""Cache a trained camera model's BEV and occupancy prediction for every frame (camera-driven world model).

    python tools/cache_camera_bev.py configs/ablations/temporal_t2.py work_dirs/tabl_480/temporal_t2/iter_480.pth \
        --data-root data/demo --out work_dirs/world_camera_cache

Runs the model in eval mode over the train and val info files in scene order
(a streaming temporal model fuses its history as at test time) and writes
<out>/<sample_token>.npz with ``bev`` float16 [C, X, Y] and ``semantics``
uint8 [X, Y, Z] (occ.data.camera_cache).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--data-root', default='data/demo')
    p.add_argument('--splits', nargs='+', default=['train', 'val'])
    p.add_argument('--out', default='work_dirs/world_camera_cache')
    p.add_argument('--threads', type=int, default=1)
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)

    import occ.models  # noqa: F401
    from occ.engine import load_config
    from occ.engine.checkpoint import CheckpointError, load_state_dict
    from occ.data.camera_cache import cache_camera_outputs
    from occ.registry import DATASETS, MODELS

    try:                                  # first: a bad or booby-trapped checkpoint stops before any work
        state = load_state_dict(args.checkpoint)
    except CheckpointError as e:
        print(f'cache_camera_bev: {e}', file=sys.stderr)
        return 1
    cfg = load_config(args.config, data_root=args.data_root)
    model = MODELS.build(cfg.model)
    model.load_state_dict(state)
    for split in args.splits:
        ds_cfg = dict(cfg.test_dataloader.dataset)
        ds_cfg.update(data_root=args.data_root, info_file=os.path.join(args.data_root, f'occ_infos_{split}.pkl'),
                      aug=None, test_mode=True, num_history=0, num_future=0, load_depth=False)
        dataset = DATASETS.build(ds_cfg)
        t0 = time.time()
        n = cache_camera_outputs(model, dataset, args.out)
        print(f'{split}: {n} frames cached in {time.time() - t0:.0f} s -> {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
