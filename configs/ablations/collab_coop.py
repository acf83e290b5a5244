# Collaboration on cooperative labels (issue 13 part 2): the dataset reads `semantics_coop` /
# `mask_camera_coop` (labels.npz of a world made with --agents > 1, data/README.md), the loss
# covers every voxel some connected vehicle's cameras see, and the test reports mIoU in three
# regions: ego-visible, neighbour-only (a neighbour sees it, the ego does not) and their union
# (OccMetric part CoopRegions; headline `miou` stays the ego's mask_camera).
_base_ = ['./collab_common.py']
train_dataloader = dict(dataset=dict(coop_labels=True))
test_dataloader = dict(dataset=dict(coop_labels=True))
model = dict(loss_mask_key='mask_camera_coop')
test_evaluator = dict(parts=['VoxelIoU', 'BytesSent', 'CoopRegions'])
