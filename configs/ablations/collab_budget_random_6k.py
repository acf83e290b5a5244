# Bandwidth sweep: random cells, fp16, no merging; 6400 bytes per message.
_base_ = ['./collab_common.py']
model = dict(collab=dict(strategy='random', budget_bytes=6400, select_ratio=None))
