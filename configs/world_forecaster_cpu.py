# World model, stage 2 (plain OccWorld): the causal token forecaster on the frozen tokenizer of
# configs/world_tokenizer_cpu.py; a forecast frame is decoded from its (expected) tokens alone.
#
#   python tools/train.py configs/world_tokenizer_cpu.py       # stage 1 -> work_dirs/world_tokenizer_cpu
#   python tools/train.py configs/world_forecaster_cpu.py      # stage 2 reads that work dir
#   python tools/eval_world.py configs/world_forecaster_cpu.py  # per-horizon table with the baselines
_base_ = [
    './_base_/datasets/world_sequences.py',
    './_base_/models/world_occworld.py',
    './_base_/schedules/cpu_demo.py',
    './_base_/default_runtime.py',
]

model = dict(
    _delete_=True,
    type='OccForecasterModel',
    tokenizer={{_base_.tokenizer}},
    tokenizer_ckpt='work_dirs/world_tokenizer_cpu',     # a checkpoint file, or a work dir (its newest)
    forecaster={{_base_.forecaster}},
    context=dict(type='GroundTruthContext'),
    num_future={{_base_.num_future}},
    losses=[dict(type='WeightedCELoss', class_weight=None)],
    token_loss_weight=1.0,
    occ_loss_weight=0.5)

val_cfg = None                 # no val loop (the schedule base has one)
max_iters = 150
train_cfg = dict(max_iters=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=37),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=37, end=max_iters, eta_min_ratio=0.01),
]
optim_wrapper = dict(optimizer=dict(lr=1e-3))
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
