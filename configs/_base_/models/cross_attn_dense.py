# Cross-attention view transform (BEVFormer-style spatial cross-attention,
# CrossAttentionBEV) + the dense channel-to-height head of lss_dense.
#
# 50 x 50 learned BEV queries (bev_downsample=2 over the 100 x 100 grid) with
# 4-point pillars read the stride-8 and stride-16 FPN maps of all cameras;
# the result is upsampled to 100 x 100. No depth net, so no depth loss.
_base_ = ['./lss_dense.py']

_ca_channels = 64

model = dict(
    neck=dict(out_ids=(0, 1)),                 # strides 8 and 16 (ResNet layer2, layer3)
    view_transform=dict(
        _delete_=True,
        type='CrossAttentionBEV',
        in_channels=_ca_channels,
        embed_dims=_ca_channels,
        pc_range=[-40.0, -40.0, -1.0, 40.0, 40.0, 5.4],
        voxel_size=0.8,
        bev_downsample=2,
        in_indices=(0, 1),
        num_layers=2,
        num_heads=4,
        num_points=2,
        num_z=4,
        num_cams=6),
    depth_loss_weight=0.0,
)
