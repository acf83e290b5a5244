# Residual world model, camera-driven mode, stage 1: the conditional tokenizer trained with
# half of its anchors being the camera model's prediction of the earlier frame (cached by
# tools/cache_camera_bev.py), so tokens also learn to correct the camera model.
#
#   python tools/train_world.py --mode camera --work-dir work_dirs/world_residual
_base_ = ['./world_residual_tokenizer_cpu.py']

camera_cache = 'work_dirs/world_camera_cache'
model = dict(camera_anchor_prob=0.5)
train_dataloader = dict(dataset=dict(camera_cache=camera_cache))
