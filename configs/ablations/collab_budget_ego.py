# Bandwidth sweep baseline: ego only (0 bytes). Neighbours are not loaded at all.
_base_ = ['./collab_common.py']
model = dict(collab=dict(strategy='none'))
train_dataloader = dict(dataset=dict(load_neighbors=False))
test_dataloader = dict(dataset=dict(load_neighbors=False))
