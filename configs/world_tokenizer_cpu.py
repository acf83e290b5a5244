# World model, stage 1: the VQ-VAE scene tokenizer (OccTokenizer) on ground-truth occupancy,
# every frame reconstructed alone (no anchor). CPU grid 100 x 100 x 8.
#
#   python tools/train.py configs/world_tokenizer_cpu.py          # -> work_dirs/world_tokenizer_cpu
#   python tools/test.py configs/world_tokenizer_cpu.py work_dirs/world_tokenizer_cpu/iter_<N>.pth
#
# test: reconstruction mIoU / IoU of every val frame, unmasked (docs/WORLD.md, "Tokenizer"):
# 50 x 50 tokens of a 512-code book; the codebook usage is in tools/eval_world.py's table.
_base_ = [
    './_base_/datasets/world_sequences.py',
    './_base_/models/world_occworld.py',
    './_base_/schedules/cpu_demo.py',
    './_base_/default_runtime.py',
]

# single frames: every keyframe of a split, no past or future needed
_frames = dict(num_history=0, num_future=0, require_history=False, min_future=0)
train_dataloader = dict(batch_size=4, dataset=_frames)
test_dataloader = dict(dataset=_frames)
test_evaluator = dict(parts=['VoxelIoU'])

val_cfg = None                 # no val loop (the schedule base has one)
max_iters = 1000             # ~5 epochs of the 200 train frames, batch 4
train_cfg = dict(max_iters=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters, eta_min_ratio=0.01),
]
optim_wrapper = dict(optimizer=dict(lr=3e-3))
default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
