# Shared parent of the collaboration ablations (configs/ablations/collab_*.py): the CPU demo
# (occ_cpu_demo.py) on a cooperative synthetic world, with the ToMe collaboration model.
#
#   python tools/make_synthetic.py --out data/demo_coop --agents 3
#   python tools/create_data.py --root data/demo_coop
#   python tools/train.py configs/ablations/collab_budget_tome_20k.py --work-dir work_dirs/collab_tome_20k
#
# The demo's settings are repeated here (not inherited) because occ_cpu_demo.py and
# collab_tome.py both define `model` and mmengine forbids a key in two bases.
_base_ = [
    '../_base_/datasets/synthetic_occ.py',
    '../_base_/models/collab_tome.py',
    '../_base_/schedules/cpu_demo.py',
    '../_base_/default_runtime.py',
]

# Top-level data variables: occ.engine.config.propagate_data_vars moves the dataset dicts
# (and their info files) with them, so `--cfg-options data_root=...` works too.
img_size = (64, 176)
load_depth = True
data_root = 'data/demo_coop'

_coop = dict(load_neighbors=True, max_neighbors=2)      # K = 2 neighbours per sample
train_dataloader = dict(batch_size=2, num_workers=1, dataset=_coop)
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = dict(batch_size=1, num_workers=1, dataset=_coop)
test_evaluator = dict(type='OccMetric', mask='camera', ray_iou=False)

train_cfg = dict(max_iters=600)
optim_wrapper = dict(optimizer=dict(lr=2e-3))

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=100, max_keep_ckpts=2),
)

# Under DDP (--launcher pytorch): a frame whose neighbours are all missing or out of range
# leaves the fusion's parameters without gradient, which plain DDP rejects.
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
