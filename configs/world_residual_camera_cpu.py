# Residual world model, camera-driven mode, stage 2: the forecaster reads the frozen camera
# model's fused BEV of the 5 context frames (CameraContext; cached once by
# tools/cache_camera_bev.py) instead of ground-truth occupancy, and decodes every forecast on the
# camera model's own current-frame prediction ego-warped into t+h. Target tokens are encoded on
# those same camera anchors. Ground truth is only a training target.
#
#   python tools/train.py configs/world_residual_camera_tokenizer_cpu.py
#   python tools/train.py configs/world_residual_camera_cpu.py
#   python tools/eval_world.py configs/world_residual_camera_cpu.py
_base_ = ['./world_residual_forecaster_cpu.py']

camera_cache = 'work_dirs/world_camera_cache'
bev_channels = 64            # C of the temporal T=2 concat camera model's BEV (lss_dense.py)
model = dict(tokenizer_ckpt='work_dirs/world_residual_camera_tokenizer_cpu',
             context=dict(_delete_=True, type='CameraContext'),
             forecaster=dict(bev_channels=bev_channels, bev_stride=4))
train_dataloader = dict(dataset=dict(camera_cache=camera_cache))
test_dataloader = dict(dataset=dict(camera_cache=camera_cache))
