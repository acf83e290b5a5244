# Full nuScenes variant of lss_dense: ResNet-50, 256x704 input, 200x200x16 grid
# (0.4 m), 59 depth bins over 1-60 m, C = 80 (FlashOcc-like M0 size).
# CPU forward+backward at batch 1 is exercised by tests/test_occnet_full.py (slow);
# peak memory is printed there and recorded in docs/PERFORMANCE.md.
_base_ = ['./lss_dense.py']

_r50_channels = 80

model = dict(
    backbone=dict(depth=50, out_indices=(3, 4)),
    neck=dict(in_channels=[1024, 2048], out_channels=256, out_ids=(0,)),
    view_transform=dict(in_channels=256, out_channels=_r50_channels, mid_channels=256,
                        depth_bins=(1.0, 60.0, 1.0), voxel_size=0.4),
    head=dict(in_channels=_r50_channels, mid_channels=256, num_z=16, hidden_channels=512,
              encoder=dict(num_blocks=2, num_down_blocks=2, down_channels=2 * _r50_channels, fuse_kernel=3)),
)
