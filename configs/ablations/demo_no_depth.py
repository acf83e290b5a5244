# Demo ablation: lift-splat without LiDAR depth supervision (depth learned from occupancy only).
_base_ = ['../occ_cpu_demo.py']

load_depth = False
model = dict(depth_loss_weight=0.0)
