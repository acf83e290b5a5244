# Forecasting baseline: the current ground-truth frame moved by the known ego motion into each
# future frame (nearest voxel; cells from outside the grid are free): a static world.
_base_ = ['./world_copy_last.py']
model = dict(type='EgoWarpForecaster')
