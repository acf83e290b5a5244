#!/usr/bin/env python
"""Run a set of configs (optionally over a grid of overrides); table and plot of the results.

    python tools/ablate.py configs/occ_cpu_demo.py configs/ablations/demo_no_depth.py --iters 200
    python tools/ablate.py configs/occ_cpu_demo.py --grid optim_wrapper.optimizer.lr=1e-3,2e-3,4e-3 --logx

Each run trains and tests in its own process under ``<work-root>/<run>/``;
``<work-root>/ablation.md`` (metric, training time, peak memory per run),
``ablation.json`` and ``ablation.png`` are written atomically.

Separating an effect from noise (occ/analysis/protocol.py):

    python tools/ablate.py configs/ablations/temporal_t{0,2}.py --seeds 3 --baseline temporal_t0 \
        --metrics miou,iou,miou_history_only --iters 480 --data-root data/temporal

trains every config with seeds 0..2; ``ablation.md`` gives mean ± std over the
seeds and, against the baseline, the paired difference with a 95 % bootstrap
interval over evaluation frames and seeds, and a verdict (better / worse /
within noise); ``ablation.png`` draws ± std error bars.
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

from occ.analysis.ablate import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
