# Camera-driven baseline: every future frame = the camera model's current prediction
# (cached, tools/cache_camera_bev.py); the fair baseline of the camera-driven world model.
_base_ = ['./world_residual_camera_cpu.py']
model = dict(_delete_=True, type='CopyLastForecaster', num_future={{_base_.num_future}}, ego_warp=False,
             voxel_size={{_base_.grid_voxel}}, source_key='context_camera_semantics')
