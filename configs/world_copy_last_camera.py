# Camera-driven baseline: every future frame = the camera model's current prediction (cached,
# tools/cache_camera_bev.py); a fair baseline of the camera-driven world model.
_base_ = ['./world_copy_last.py']
camera_cache = 'work_dirs/world_camera_cache'
model = dict(source_key='context_camera_semantics')
test_dataloader = dict(dataset=dict(camera_cache=camera_cache))
