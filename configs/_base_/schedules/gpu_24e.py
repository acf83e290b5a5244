# The usual 24-epoch Occ3D-nuScenes schedule (FlashOcc / BEVDet-Occ style), iteration based:
# 28,130 training samples / (8 GPUs x 4 per GPU) = 880 iters per epoch -> 21,120 iters.
# AdamW lr 1e-4 (for a total batch of 32), 200-iter linear warm-up, cosine to 1e-3 x lr.
iters_per_epoch = 880
max_iters = 24 * iters_per_epoch
warmup_iters = 200

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=4 * iters_per_epoch)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='AmpOptimWrapper',          # fp16 autocast on CUDA (needs a GPU)
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-2),
    clip_grad=dict(max_norm=5.0, norm_type=2),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup_iters, end=max_iters,
         eta_min_ratio=1e-3),
]
# Top-level configs set default_hooks.checkpoint.interval=iters_per_epoch (mmengine
# forbids two _base_ files defining the same key).
# Linear LR scaling when the total batch differs from 32 (mmengine applies it when enabled).
auto_scale_lr = dict(enable=False, base_batch_size=32)
