# Forecasting baseline: the current frame moved by the known ego motion into each
# future frame (nearest voxel; cells from outside the grid are free).
_base_ = ['./world_tokenizer_cpu.py']
model = dict(_delete_=True, type='CopyLastForecaster', num_future={{_base_.num_future}}, ego_warp=True,
             voxel_size={{_base_.grid_voxel}})
