# Bandwidth sweep: random cells, fp16, no merging; 64000 bytes per message.
_base_ = ['./collab_common.py']
model = dict(collab=dict(strategy='random', budget_bytes=64000, select_ratio=None))
