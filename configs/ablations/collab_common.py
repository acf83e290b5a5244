# Shared parent of the collaboration ablations (configs/ablations/collab_*.py): the CPU demo
# (occ_cpu_demo.py) on a cooperative synthetic world, with the ToMe collaboration model
# (collab_tome.py: ToMe merging, fp16, 20 kB per message).
#
#   python tools/make_synthetic.py --out data/demo_coop --agents 3
#   python tools/create_data.py --root data/demo_coop
#   python tools/train.py configs/ablations/collab_common.py --work-dir work_dirs/collab_tome_20k
#
# The bandwidth sweep is a grid over this file (docs/COLLAB.md, "Sweep"), e.g.
#   python tools/ablate.py configs/ablations/collab_common.py \
#       --grid model.collab.strategy=tome,topk,random model.collab.budget_bytes=2000,6400,20000,64000,200000
# (select_ratio, the pre-selection before merging, only acts on 'tome'); its baselines are
# collab_budget_ego.py (no neighbours) and collab_budget_full.py (uncompressed).
#
# The demo's settings are repeated here (not inherited) because occ_cpu_demo.py and
# collab_tome.py both define `model` and mmengine forbids a key in two bases.
_base_ = [
    '../_base_/datasets/synthetic_occ.py',
    '../_base_/models/collab_tome.py',
    '../_base_/schedules/cpu_demo.py',
    '../_base_/default_runtime.py',
]

img_size = (64, 176)
load_depth = True
data_root = 'data/demo_coop'
# The dataset base's dicts hold its own root, input size and depth switch: the cooperative
# world's values are written into them, with K = 2 neighbours per sample.
_coop = dict(data_root=data_root, img_size=img_size, load_depth=load_depth,
             load_neighbors=True, max_neighbors=2)
train_dataloader = dict(batch_size=2, num_workers=1,
                        dataset=dict(_coop, info_file=data_root + '/occ_infos_train.pkl'))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = dict(batch_size=1, num_workers=1,
                       dataset=dict(_coop, info_file=data_root + '/occ_infos_val.pkl'))
test_evaluator = dict(type='OccMetric', mask='camera', ray_iou=False)

train_cfg = dict(max_iters=600)     # = the cpu_demo schedule's cosine end (param_scheduler)
optim_wrapper = dict(optimizer=dict(lr=2e-3))

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=100, max_keep_ckpts=2),
)

# Under DDP (--launcher pytorch): a frame whose neighbours are all missing or out of range
# leaves the fusion's parameters without gradient, which plain DDP rejects.
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
