# Temporal ablation, T = 1 past keyframe(s), concatenation + conv fusion (BEVDet4D-style).
# Everything else as temporal_t2.py (history in training only; val/test stream).
_base_ = ['./temporal_t2.py']

model = dict(temporal=dict(num_history=1))
train_dataloader = dict(dataset=dict(num_history=1))
