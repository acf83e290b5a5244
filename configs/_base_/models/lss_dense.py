# Lift-splat + dense channel-to-height head (FlashOcc-style), sized for a 2-core CPU.
#
# Input: 6 cameras at the dataset's img_size (CPU default 64x176 or 128x352; any
# size divisible by 32 works: LiftSplat reads it from the batch).
# Grid: Occ3D range at 0.8 m -> 100 x 100 x 8 (occ.geometry.CPU_GRID).
# ResNet-18 up to layer3 (random init: no weights are downloaded), FPN at
# stride 16, 44 depth bins over 1-45 m, C = 64, a light BEV encoder (one
# full-resolution block + one stride-2 stage, 1x1 fuse).
# Measured step cost (tools/benchmark.py, 64x176, 6 cameras, weighted CE + depth
# loss, one thread on a shared 2-core machine under load average ~9): 0.56 CPU-s
# per forward+backward at batch 1, 0.39 CPU-s per frame at batch 2 (0.78 per step);
# roughly 0.35 s / 0.5 s wall per step on a free 2-core CPU. Backbone+FPN and the
# BEV head cost about the same; lift-splat with its cached plan ~1 %. Details:
# docs/PERFORMANCE.md, "Model forward/backward per config".
#
# No top-level img_size / grid_voxel here: the dataset base defines them and
# mmengine forbids the same key in two bases. To change the grid, override
# model.view_transform.voxel_size and model.head.num_z together.

_lss_channels = 64
_lss_voxel = 0.8
_lss_range = [-40.0, -40.0, -1.0, 40.0, 40.0, 5.4]
_lss_num_z = 8                   # (5.4 - (-1.0)) / 0.8

model = dict(
    type='OccNet',
    data_preprocessor=dict(type='OccDataPreprocessor'),
    backbone=dict(type='ResNetBackbone', depth=18, out_indices=(2, 3), norm='BN', frozen_stages=-1,
                  pretrained=None),
    neck=dict(type='FPNNeck', in_channels=[128, 256], out_channels=_lss_channels, out_ids=(1,)),
    view_transform=dict(type='LiftSplat', in_channels=_lss_channels, out_channels=_lss_channels,
                        depth_bins=(1.0, 45.0, 1.0), downsample=16, pc_range=_lss_range,
                        voxel_size=_lss_voxel),
    head=dict(type='DenseOccHead', in_channels=_lss_channels, mid_channels=_lss_channels, num_z=_lss_num_z,
              hidden_channels=_lss_channels,
              encoder=dict(num_blocks=1, num_down_blocks=1, down_channels=2 * _lss_channels, fuse_kernel=1),
              # Lovasz-softmax helps mIoU but costs more than the whole network on CPU
              # at 100x100x8 (see docs/PERFORMANCE.md); demo configs add it deliberately.
              losses=[dict(type='WeightedCELoss', class_weight='auto')]),
    depth_loss_weight=0.5,       # needs load_depth=True in the dataset; set 0 to train without LiDAR depth
    use_mask_camera=True,
)
