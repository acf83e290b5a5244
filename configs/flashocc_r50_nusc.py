# FlashOcc-style baseline on nuScenes + Occ3D-nuScenes: ResNet-50 at 256x704, lift-splat
# into BEV, channel-to-height dense head on the 200x200x16 grid, 24 epochs.
#
#   bash: torchrun --nproc_per_node 8 tools/train.py configs/flashocc_r50_nusc.py --launcher pytorch
#
# Expected cost -- ESTIMATE, not measured (no GPU was available to this project):
# ~9-11 GB GPU memory per GPU at batch 4 with AMP, roughly 0.6-0.8 s/iter on one
# A100 -> about 4-5 h for 24 epochs on 8 A100s (21,120 iters). Published FlashOcc
# M0 (R50, no temporal) is ~31-32 mIoU; with ImageNet init only. Random init (the
# framework never downloads weights) will score far lower: set
# model.backbone.pretrained to a local torchvision ResNet-50 file for real runs.
_base_ = [
    './_base_/datasets/nuscenes_occ3d.py',
    './_base_/models/lss_dense_r50_nusc.py',
    './_base_/schedules/gpu_24e.py',
    './_base_/default_runtime.py',
]

data_root = 'data/nuscenes'   # the dataset base's root; the evaluator reads its val infos too
# LiDAR depth targets for LiftSplat's depth loss (the dataset base loads none).
load_depth = True
train_dataloader = dict(dataset=dict(load_depth=load_depth))
val_dataloader = dict(dataset=dict(load_depth=load_depth))
test_dataloader = val_dataloader

val_evaluator = dict(type='OccMetric', mask='camera', ray_iou=True,
                     ann_file=data_root + '/occ_infos_val.pkl')
test_evaluator = val_evaluator

default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=880, max_keep_ckpts=5),   # once per epoch (gpu_24e.iters_per_epoch)
)
