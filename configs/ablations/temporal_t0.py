# Temporal ablation, T = 0: the single-frame baseline (no temporal memory).
# Compare with temporal_t1 / t2 / t4 (concat fusion) and temporal_t2_attn / t2_gru
# (docs/TEMPORAL.md). Same data, schedule and seed as configs/occ_cpu_demo.py.
_base_ = ['../occ_cpu_demo.py']

model = dict(temporal=None)
train_dataloader = dict(dataset=dict(num_history=0))
# history_mask_frames: every T is scored on the same "seen in the last 2 keyframes but
# not now" region (mask_camera_history -> OccMetric's miou_history_only), labels only.
val_dataloader = dict(dataset=dict(num_history=0, history_mask_frames=2))
test_dataloader = dict(dataset=dict(num_history=0, history_mask_frames=2))
