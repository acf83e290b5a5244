"""Research analysis on top of the library: ablation runs, the demo report, baselines, sweeps.

Orchestration, tables and plots live here, not in the model or engine packages:

- ``ablate``: run configs (x a ``--grid`` of overrides), one process each; table and plot;
- ``report``: the demo report (model vs class prior, training curve, pictures);
- ``prior``: the non-learned per-voxel class-prior baseline;
- ``sweep``: read a collaboration bandwidth sweep (gain kept at 1/16 of full sharing's bytes).

``tools/`` holds the thin command lines over these modules. Submodules are imported
on demand (plotting pulls in matplotlib).
"""
