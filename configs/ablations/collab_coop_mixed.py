# One collaboration model for the cooperative-visibility sweep (docs/COLLAB.md, "Sweep"): trained on
# cooperative labels (collab_coop.py), every training step draws a strategy (tome / tome4 / topk /
# random / full) and a budget log-uniform in 2.5 kB .. 1.28 MB (1/1024 .. 1/2 of the fp32 full
# message), so the same weights are then tested at every budget and strategy of the sweep
# (tools/ablate.py ... --load-from). tome4: ToMe inside the 4n most confident cells for n tokens.
_base_ = ['./collab_coop.py']
model = dict(collab=dict(
    compressors=dict(tome4=dict(type='tome', cells_per_token=4)),
    train_mix=dict(strategies=('tome', 'tome4', 'topk', 'random', 'full'), budget_range=(2500, 1280000))))
