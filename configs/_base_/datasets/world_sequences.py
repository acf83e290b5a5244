# Label-only occupancy sequences for the world model (occ.data.OccSequenceDataset): the past
# 2 s (4 frames + the current one) and the next 3 s (6 frames) at 2 Hz, each frame in its own
# ego frame. No images are read. Forecasts are scored unmasked, per horizon (OccWorld protocol),
# with the static / dynamic / moving split (occ.evaluation.ForecastMotionSplit).
data_root = 'data/demo'
grid_voxel = 0.8               # 100 x 100 x 8
num_history = 4
num_future = 6

_seq = dict(type='OccSequenceDataset', data_root=data_root, grid_voxel=grid_voxel,
            num_history=num_history, num_future=num_future)
train_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='EpochSyncSampler', shuffle=True),
    collate_fn=dict(type='occ.occ_collate'),
    # full history and at least one future frame: every sample trains the forecaster
    dataset=dict(_seq, info_file=data_root + '/occ_infos_train.pkl', require_history=True, min_future=1))
test_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='occ.occ_collate'),
    # OccWorld scores every sample with the full history and the whole 3 s future
    dataset=dict(_seq, info_file=data_root + '/occ_infos_val.pkl', require_history=True,
                 min_future=num_future))
test_evaluator = dict(type='OccMetric', mask='none', ray_iou=False,
                      parts=['VoxelIoU', 'ForecastIoU', 'ForecastMotionSplit'])
# no validation inside a run (configs also set val_cfg = None: the schedule base defines it)
val_dataloader = None
val_evaluator = None
