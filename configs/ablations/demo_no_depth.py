# Demo ablation: lift-splat without LiDAR depth supervision (depth learned from occupancy only).
_base_ = ['../occ_cpu_demo.py']
load_depth = False
train_dataloader = dict(dataset=dict(load_depth=load_depth))
val_dataloader = dict(dataset=dict(load_depth=load_depth))
test_dataloader = val_dataloader
model = dict(depth_loss_weight=0.0)
