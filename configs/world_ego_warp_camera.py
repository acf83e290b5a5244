# Camera-driven baseline: the camera model's current prediction moved by the known ego motion into
# each future frame; the fair "static world" baseline of the camera-driven world model.
_base_ = ['./world_copy_last_camera.py']
model = dict(type='EgoWarpForecaster')
