# One collaboration model for the whole bandwidth sweep: every training step draws a strategy
# (tome / topk / random / full) and a budget log-uniform in 2 kB .. 200 kB, so the same weights
# are then tested at every grid point of the sweep (tools/ablate.py collab_common.py --grid ...
# --load-from), the way Where2comm trains once and sweeps its threshold at inference.
# docs/COLLAB.md, "Sweep".
_base_ = ['./collab_common.py']
model = dict(collab=dict(train_mix=dict(strategies=('tome', 'topk', 'random', 'full'),
                                        budget_range=(2000, 200000))))
