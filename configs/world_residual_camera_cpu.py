# Residual world model, camera-driven mode, stage 2: the forecaster reads the frozen camera
# model's fused BEV of the 5 context frames (cached once by tools/cache_camera_bev.py)
# instead of ground-truth occupancy, and decodes every forecast on the camera model's own
# current-frame prediction ego-warped into t+h. Target tokens are encoded on those same
# camera anchors (the tokenizer of world_residual_camera_tokenizer_cpu.py saw such
# anchors). Ground truth is only a training target.
#
#   python tools/cache_camera_bev.py configs/ablations/temporal_t2.py \
#       work_dirs/tabl_480/temporal_t2/iter_480.pth --data-root data/demo --out work_dirs/world_camera_cache
#   python tools/train_world.py --mode camera --work-dir work_dirs/world_residual
_base_ = ['./world_residual_forecaster_cpu.py']

camera_cache = 'work_dirs/world_camera_cache'
bev_channels = 64            # C of the temporal T=2 concat camera model's BEV (lss_dense.py)
model = dict(context_source='camera', target_anchors='decode',
             forecaster=dict(bev_channels=bev_channels, bev_stride=4))
train_dataloader = dict(dataset=dict(camera_cache=camera_cache))
test_dataloader = dict(dataset=dict(camera_cache=camera_cache))
