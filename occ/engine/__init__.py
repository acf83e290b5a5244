"""Training engine around mmengine's Runner: atomic checkpoints, loss guards, run stats.

Importing this package registers the hooks (``occ.registry.HOOKS``) and the
``EpochSyncSampler`` (mmengine ``DATA_SAMPLERS``).
"""
from occ.engine.checkpoint import AtomicCheckpointHook, CheckpointError, verify_checkpoint
from occ.engine.config import load_config, select_optim_wrapper, sync_schedule
from occ.engine.non_finite import NonFiniteLossError, NonFiniteLossHook
from occ.engine.prediction_writer import PredictionWriterHook
from occ.engine.run_stats import RunStatsHook
from occ.engine.runner import OccRunner
from occ.engine.sampler import EpochSyncSampler

__all__ = [
    'AtomicCheckpointHook', 'CheckpointError', 'verify_checkpoint', 'load_config',
    'select_optim_wrapper', 'sync_schedule', 'NonFiniteLossError', 'NonFiniteLossHook',
    'PredictionWriterHook', 'RunStatsHook', 'OccRunner', 'EpochSyncSampler',
]
