# Demo ablation: view transform = BEVFormer-style cross-attention instead of lift-splat
# (model part from configs/_base_/models/cross_attn_dense.py; no depth supervision).
_base_ = ['../occ_cpu_demo.py']

load_depth = False          # no depth net, so no LiDAR depth targets
train_dataloader = dict(dataset=dict(load_depth=load_depth))
val_dataloader = dict(dataset=dict(load_depth=load_depth))
test_dataloader = val_dataloader
model = dict(
    neck=dict(out_ids=(0, 1)), depth_loss_weight=0.0,
    view_transform=dict(_delete_=True, type='CrossAttentionBEV', in_channels=64, embed_dims=64,
                        pc_range=[-40.0, -40.0, -1.0, 40.0, 40.0, 5.4], voxel_size=0.8,
                        bev_downsample=2, in_indices=(0, 1), num_layers=2, num_heads=4,
                        num_points=2, num_z=4, num_cams=6))
