# World model, stage 1: the VQ-VAE scene tokenizer on ground-truth occupancy (CPU scale).
#
#   python tools/train.py configs/world_tokenizer_cpu.py --work-dir work_dirs/world_tokenizer
#   (or the whole pipeline with baselines: python tools/train_world.py, docs/WORLD.md)
#
# Only label files are read (OccSequenceDataset), no images. The synthetic
# world written by `tools/make_synthetic.py --out data/temporal` (2 Hz scenes
# of 40 frames) is the default; any nuScenes root with Occ3D gts works.
_base_ = [
    './_base_/models/world_occworld.py',
    './_base_/schedules/cpu_demo.py',
    './_base_/default_runtime.py',
]
custom_imports = dict(imports=['occ.models.world'], allow_failed_imports=False)

data_root = 'data/temporal'
grid_voxel = 0.8
batch_size = 4

_seq = dict(type='OccSequenceDataset', data_root=data_root, grid_voxel=grid_voxel,
            num_history={{_base_.num_history}}, num_future={{_base_.num_future}})
train_dataloader = dict(
    batch_size=batch_size, num_workers=0,
    sampler=dict(type='EpochSyncSampler', shuffle=True),
    collate_fn=dict(type='occ_collate'),
    # Full history and at least one future frame: every sample trains the forecaster.
    dataset=dict(_seq, info_file=data_root + '/occ_infos_train.pkl', require_history=True, min_future=1))
test_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='occ_collate'),
    # OccWorld scores every sample with full history and the whole 3 s future.
    dataset=dict(_seq, info_file=data_root + '/occ_infos_val.pkl', require_history=True,
                 min_future={{_base_.num_future}}))
# Without masks: OccWorld's forecasting protocol scores every voxel (occ.evaluation.forecast).
test_evaluator = dict(type='OccMetric', mask='none', ray_iou=False)
val_dataloader = None
val_evaluator = None
val_cfg = None

# Lovasz sorts the errors of every voxel per class (18 x 80k per frame), costly on a CPU:
# the CPU configs use CE only; the base model config (GPU scale) keeps both.
# A short run also needs a faster EMA codebook than the 0.99 of long schedules.
model = dict(occ_losses=[dict(type='WeightedCELoss')],
             tokenizer=dict(quantizer=dict(decay=0.9, restart_every=10)))
train_cfg = dict(max_iters=200)
optim_wrapper = dict(optimizer=dict(lr=3e-3))
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=100, max_keep_ckpts=1))
