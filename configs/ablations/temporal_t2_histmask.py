# Temporal ablation, T = 2 trained on the history-visibility mask: the losses cover
# voxels seen now or in one of the 2 past input frames warped by ego motion
# (mask_camera_history, occ/data/history_mask.py), not only those seen now, so
# memory is asked to keep what the current cameras miss. Compare with temporal_t2.
_base_ = ['./temporal_t2.py']

model = dict(loss_mask_key='mask_camera_history')
