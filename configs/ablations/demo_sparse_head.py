# Demo ablation: sparse coarse-to-fine head (spconv) instead of the dense channel-to-height head.
_base_ = ['../occ_cpu_demo.py']

model = dict(head=dict(_delete_=True, type='SparseOccHead', in_channels=64, grid_shape=(100, 100, 8),
                       channels=(64, 32, 32), num_convs=1, keep_threshold=0.5, keep_gt_in_training=True,
                       losses=[dict(type='WeightedCELoss', class_weight='auto'),
                               dict(type='LovaszSoftmaxLoss', loss_weight=1.0)]))
