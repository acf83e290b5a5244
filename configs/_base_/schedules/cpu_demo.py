# Short iteration-based CPU schedule: AdamW, linear warm-up then cosine, grad clipping, fp32.
# A config that trains for another number of iterations writes its own param_scheduler
# with the cosine ending at its max_iters (configs/occ_cpu_demo.py). From the command
# line, `tools/train.py --iters N` sets max_iters and ends the schedule at N (warm-up
# clipped to N // 4); `--cfg-options train_cfg.max_iters=N` alone keeps this schedule.
max_iters = 600
warmup_iters = 50

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=1e-2),
    clip_grad=dict(max_norm=35.0, norm_type=2),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup_iters, end=max_iters,
         eta_min_ratio=0.01),
]
# (Checkpoint/log intervals live in default_hooks of the top-level config: mmengine
# forbids two _base_ files defining the same key.)
