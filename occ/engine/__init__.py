"""Training engine around mmengine's Runner: atomic checkpoints, loss guards, run stats.

Importing this package registers the hooks (``occ.registry.HOOKS``), the
``EpochSyncSampler`` (``occ.registry.DATA_SAMPLERS``) and ``OccRunner``
(``occ.registry.RUNNERS``); the registries import it on first use.
"""
from occ.engine.checkpoint import AtomicCheckpointHook, CheckpointError, verify_checkpoint
from occ.engine.config import enable_amp, load_config, set_data_root, set_max_iters
from occ.engine.non_finite import NonFiniteLossError, NonFiniteLossHook
from occ.engine.prediction_writer import PredictionWriterHook
from occ.engine.run_stats import RunStatsHook
from occ.engine.runner import OccRunner
from occ.engine.sampler import EpochSyncSampler

__all__ = [
    'AtomicCheckpointHook', 'CheckpointError', 'verify_checkpoint', 'load_config',
    'enable_amp', 'set_data_root', 'set_max_iters', 'NonFiniteLossError', 'NonFiniteLossHook',
    'PredictionWriterHook', 'RunStatsHook', 'OccRunner', 'EpochSyncSampler',
]
