#!/usr/bin/env python
"""Run a set of configs (optionally over a grid of overrides); table and plot of the results.

    python tools/ablate.py configs/occ_cpu_demo.py configs/ablations/demo_no_depth.py --iters 200
    python tools/ablate.py configs/occ_cpu_demo.py --grid optim_wrapper.optimizer.lr=1e-3,2e-3,4e-3 --logx

Each run trains and tests in its own process under ``<work-root>/<run>/``;
``<work-root>/ablation.md`` (metric, training time, peak memory per run),
``ablation.json`` and ``ablation.png`` are written atomically.
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

from occ.analysis.ablate import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
