# Demo ablation: full CPU input size 128x352 instead of 64x176 (about 2x the cost per iteration).
_base_ = ['../occ_cpu_demo.py']
img_size = (128, 352)
train_dataloader = dict(dataset=dict(img_size=img_size))
val_dataloader = dict(dataset=dict(img_size=img_size))
test_dataloader = val_dataloader
