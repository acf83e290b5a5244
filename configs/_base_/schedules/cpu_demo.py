# Short iteration-based CPU schedule: AdamW, linear warm-up then cosine, grad clipping.
# occ.engine.config.sync_schedule stretches the cosine to train_cfg.max_iters, so
# `--cfg-options train_cfg.max_iters=N` is the only line a shorter/longer run changes.
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
