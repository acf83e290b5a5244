# Lift-splat + sparse coarse-to-fine spconv head (SparseOccHead), otherwise lss_dense.
#
# The head lifts the 100 x 100 BEV to a 25 x 25 x 2 volume (1/4 of the grid),
# then splits x2 twice, keeping voxels predicted occupied (p > 0.5) plus, in
# training, every voxel holding GT-occupied voxels. Memory and time of the
# head against the dense one: docs/PERFORMANCE.md, "Occupancy heads: dense vs sparse"
# (benchmarks/bench_heads.py).
# Grid changes: override model.head.grid_shape together with the view transform's voxel_size.
_base_ = ['./lss_dense.py']

_sparse_channels = 64

model = dict(
    head=dict(
        _delete_=True,
        type='SparseOccHead',
        in_channels=_sparse_channels,
        grid_shape=(100, 100, 8),
        channels=(64, 32, 32),
        num_convs=1,
        keep_threshold=0.5,
        keep_gt_in_training=True,
        losses=[dict(type='WeightedCELoss', class_weight='auto'),
                dict(type='LovaszSoftmaxLoss')]),
)
