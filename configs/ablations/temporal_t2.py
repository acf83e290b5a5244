# Temporal ablation, T = 2 past keyframes, concatenation + conv fusion (BEVDet4D-style).
# Training recomputes the 2 history BEV maps with the same encoder (no grad);
# val/test stream: the memory is kept across consecutive samples of a scene, so
# the dataset loads no history there (docs/TEMPORAL.md).
_base_ = ['../occ_cpu_demo.py']

model = dict(
    temporal=dict(
        type='TemporalFusion',
        fusion=dict(type='ConcatConvFusion', channels=64),      # C of lss_dense.py
        num_history=2,
        history_stride=1,
        pc_range=[-40.0, -40.0, -1.0, 40.0, 40.0, 5.4],
        history_grad=False,
        streaming=True,
    ),
)
# History only in training (val/test stream), so the dataloaders are set directly:
# a top-level num_history would give val/test history too.
train_dataloader = dict(dataset=dict(num_history=2, history_stride=1))
# history_mask_frames: every T is scored on the same "seen in the last 2 keyframes but
# not now" region (mask_camera_history -> OccMetric's miou_history_only), labels only.
val_dataloader = dict(dataset=dict(num_history=0, history_mask_frames=2))
test_dataloader = dict(dataset=dict(num_history=0, history_mask_frames=2))
