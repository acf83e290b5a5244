# Real nuScenes + Occ3D-nuScenes gts (data/nuscenes/gts, tools/create_data.py) -> OccDataset, GPU defaults.
# The dataset sections below read these variables when *this* file is parsed: a child
# config that changes one (img_size, load_depth, data_root, ...) writes it into the
# dataset dicts it applies to, as configs/occ_cpu_demo.py does (tools/*.py --data-root
# moves every dataset and evaluator path to another root).
data_root = 'data/nuscenes'
img_size = (256, 704)          # (H, W) network input (BEVDet/FlashOcc setting)
grid_voxel = 0.4               # Occ3D-nuScenes 200 x 200 x 16
pc_range = [-40.0, -40.0, -1.0, 40.0, 40.0, 5.4]   # (x, y, z min; x, y, z max) m: Occ3D, as the model parts
num_history = 0                # T past frames (temporal models set this)
num_future = 0                 # H future label frames (world models set this)
load_depth = False             # LiDAR depth targets per pixel (depth-supervised lift-splat)
batch_size = 4
num_workers = 8

# Train-time augmentation; geometry stays exact (see occ/data/dataset.py docstring).
data_aug = dict(
    img=dict(scale=(0.94, 1.11), rot=(-5.4, 5.4), flip=0.5, crop_y=(0.7, 1.0)),
    bev=dict(rot=(-22.5, 22.5), flip_x=0.5, flip_y=0.5),
)

_dataset = dict(
    type='OccDataset',
    data_root=data_root,
    img_size=img_size,
    grid_voxel=grid_voxel,
    pc_range=pc_range,
    num_history=num_history,
    num_future=num_future,
    load_depth=load_depth,
    depth_source='lidar',
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=num_workers,
    persistent_workers=False,          # workers must be re-forked to see set_epoch
    # EpochSyncSampler (occ.engine) = DefaultSampler + dataset.set_epoch: resumable augmentation.
    sampler=dict(type='EpochSyncSampler', shuffle=True),
    # Scoped name: mmengine's Runner looks collate_fn up in its root FUNCTIONS registry.
    collate_fn=dict(type='occ.occ_collate'),
    dataset=dict(_dataset, info_file=data_root + '/occ_infos_train.pkl', aug=data_aug, test_mode=False),
)
val_dataloader = dict(
    batch_size=batch_size,
    num_workers=num_workers,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='occ.occ_collate'),
    dataset=dict(_dataset, info_file=data_root + '/occ_infos_val.pkl', aug=None, test_mode=True),
)
test_dataloader = val_dataloader
