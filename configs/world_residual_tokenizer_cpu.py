# Residual world model, stage 1: a *conditional* VQ-VAE (ConditionalOccTokenizer, docs/WORLD.md).
# Every training pair is a frame and an earlier frame 1..6 steps back ego-warped into it (its
# anchor, AnchoredPairs + EgoWarpAnchors); tokens carry what the anchor does not, the decoder
# adds a residual to it.
#
#   python tools/train.py configs/world_residual_tokenizer_cpu.py   # -> work_dirs/world_residual_tokenizer_cpu
#
# test: the current frame reconstructed given the previous frame ego-warped.
_base_ = [
    './_base_/datasets/world_sequences.py',
    './_base_/models/world_occworld.py',
    './_base_/schedules/cpu_demo.py',
    './_base_/default_runtime.py',
]

# The anchors of every stage of this model: ego-warp on the 0.8 m grid.
# anchor dropout blanks a random BEV box of half the anchors: in the first runs (anchor
# features everywhere in the decoder) the codebook collapsed and the tokens carried nothing.
# prior_boost 4 (reconstructions from true tokens) was chosen on TRAIN scenes (conditional
# reconstruction at gaps 1/3/6 with boost 0/1/2/4/8: 4 best at every gap, docs/WORLD.md).
anchors = dict(type='EgoWarpAnchors', voxel_size={{_base_.grid_voxel}}, prior_boost=4.0, dropout=0.5)
model = dict(
    _delete_=True,
    type='OccTokenizerModel',
    tokenizer=dict(type='ConditionalOccTokenizer', grid_shape={{_base_.grid_shape}},
                   embed_dim=8, channels=16, num_down=2, code_dim=64, num_codes=256,
                   prior_scale=4.0, token_noise=0.1,
                   quantizer=dict(beta=0.25, ema=True, decay=0.9, restart_threshold=0.05, restart_every=10)),
    frames=dict(type='AnchoredPairs', anchors=anchors, pairs_per_sample=2, max_gap={{_base_.num_future}}),
    # flat CE: class-weighted CE made the decoder paint rare classes over correct anchor cells
    losses=[dict(type='WeightedCELoss', class_weight=None)])
train_dataloader = dict(batch_size=4)
test_evaluator = dict(parts=['VoxelIoU'])

val_cfg = None                 # no val loop (the schedule base has one)
max_iters = 150
train_cfg = dict(max_iters=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=37),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=37, end=max_iters, eta_min_ratio=0.01),
]
optim_wrapper = dict(optimizer=dict(lr=3e-3))
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
