# Camera-driven baseline: the camera model's current prediction moved by the known ego motion
# into each future frame (nearest voxel; cells from outside the grid are free).
_base_ = ['./world_residual_camera_cpu.py']
model = dict(_delete_=True, type='CopyLastForecaster', num_future={{_base_.num_future}}, ego_warp=True,
             voxel_size={{_base_.grid_voxel}}, source_key='context_camera_semantics')
