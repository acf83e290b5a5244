# Residual world model, camera-driven mode, stage 1: the conditional tokenizer trained with half
# of its anchors being the camera model's prediction of the earlier frame (cached once by
# tools/cache_camera_bev.py), so tokens also learn to correct the camera model.
#
#   python tools/cache_camera_bev.py configs/ablations/temporal_t2.py \
#       work_dirs/tabl_480/temporal_t2/iter_480.pth --data-root data/demo --out work_dirs/world_camera_cache
#   python tools/train.py configs/world_residual_camera_tokenizer_cpu.py
_base_ = ['./world_residual_tokenizer_cpu.py']

camera_cache = 'work_dirs/world_camera_cache'
model = dict(frames=dict(camera_anchor_prob=0.5))
train_dataloader = dict(dataset=dict(camera_cache=camera_cache))
