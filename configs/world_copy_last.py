# Forecasting baseline: every future frame = the current ground-truth frame (nothing to train).
#   python tools/test.py configs/world_copy_last.py        (or next to a world model: tools/eval_world.py)
_base_ = [
    './_base_/datasets/world_sequences.py',
    './_base_/schedules/cpu_demo.py',
    './_base_/default_runtime.py',
]
model = dict(type='CopyLastForecaster', num_future={{_base_.num_future}}, voxel_size={{_base_.grid_voxel}})
val_cfg = None
max_iters = 1
train_cfg = dict(max_iters=max_iters)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=max_iters)]
