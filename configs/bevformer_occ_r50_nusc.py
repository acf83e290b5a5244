# BEVFormer-style occupancy on nuScenes + Occ3D-nuScenes: ResNet-50 at 256x704, BEV queries
# cross-attend to the projected 3D reference points of each pillar (CrossAttentionBEV,
# deformable sampling with grid_sample), channel-to-height dense head on 200x200x16, 24 epochs.
#
#   torchrun --nproc_per_node 8 tools/train.py configs/bevformer_occ_r50_nusc.py --launcher pytorch
#
# Expected cost -- ESTIMATE, not measured (no GPU was available to this project):
# ~14-18 GB GPU memory per GPU at batch 4 with AMP (attention over 100x100 queries x
# 6 cameras x 4 heights), roughly 1.0-1.3 s/iter on one A100 -> ~7-8 h for 24 epochs on
# 8 A100s. No depth supervision (cross-attention has no depth distribution).
_base_ = [
    './_base_/datasets/nuscenes_occ3d.py',
    './_base_/models/cross_attn_dense.py',
    './_base_/schedules/gpu_24e.py',
    './_base_/default_runtime.py',
]

# Data as the dataset base gives it: 256x704 input, no depth targets.
data_root = 'data/nuscenes'   # the dataset base's root; the evaluator reads its val infos too

_channels = 128

model = dict(
    backbone=dict(depth=50, out_indices=(2, 3)),                 # layer2 (512 ch), layer3 (1024 ch)
    neck=dict(in_channels=[512, 1024], out_channels=_channels, out_ids=(0, 1)),   # strides 8, 16
    view_transform=dict(in_channels=_channels, embed_dims=_channels, voxel_size=0.4,
                        bev_downsample=2, num_layers=3, num_heads=8, num_points=4, num_z=4),
    head=dict(in_channels=_channels, mid_channels=256, num_z=16, hidden_channels=256,
              encoder=dict(num_blocks=2, num_down_blocks=2, down_channels=2 * _channels,
                           fuse_kernel=3)),
)

val_evaluator = dict(type='OccMetric', mask='camera', ray_iou=True,
                     ann_file=data_root + '/occ_infos_val.pkl')
test_evaluator = val_evaluator

default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=880, max_keep_ckpts=5),
)
