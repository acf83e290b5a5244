# Bandwidth sweep: random cells, fp16, no merging; 200000 bytes per message.
_base_ = ['./collab_common.py']
model = dict(collab=dict(strategy='random', budget_bytes=200000, select_ratio=None))
