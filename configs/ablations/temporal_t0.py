# Temporal ablation, T = 0: the single-frame baseline (no temporal memory).
# Compare with temporal_t1 / t2 / t4 (concat fusion) and temporal_t2_attn / t2_gru
# (docs/TEMPORAL.md). Same data, schedule and seed as configs/occ_cpu_demo.py.
_base_ = ['../occ_cpu_demo.py']

model = dict(temporal=None)
train_dataloader = dict(dataset=dict(num_history=0))
val_dataloader = dict(dataset=dict(num_history=0))
test_dataloader = dict(dataset=dict(num_history=0))
