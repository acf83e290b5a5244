# Runtime shared by every config: logging, checkpoints, hooks, seeds.
# Unscoped types (dict(type='LiftSplat')) resolve in occ's registries (occ/registry.py).
default_scope = 'occ'
# mmengine's RUNNERS.build(cfg) (tools/train.py, tools/test.py) builds OccRunner: atomic,
# verified checkpoints. A plain Runner.from_cfg(cfg) runs the same config without them.
runner_type = 'occ.OccRunner'
# Mixed precision is chosen per config by optim_wrapper.type (AmpOptimWrapper in the GPU
# schedule, OptimWrapper on CPU); tools/train.py --amp switches a CPU-style config on a GPU.

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    # The logger line carries loss terms, lr, time/iter, data time and the ETA.
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Atomic checkpoint + atomic last_checkpoint pointer (occ.engine.checkpoint).
    checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=500,
                    max_keep_ckpts=3, save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
custom_hooks = [
    # 'raise' stops with the iteration and the NaN/Inf loss term; 'skip' skips that step.
    dict(type='NonFiniteLossHook', action='raise'),
    dict(type='RunStatsHook'),
]

log_processor = dict(type='LogProcessor', window_size=10, by_epoch=False)
vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
# No fixed `name`: mmengine then names the visualizer after the run (config + timestamp), so
# several runs in one process (tests, notebooks) each log into their own work dir.
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_level = 'INFO'

load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
