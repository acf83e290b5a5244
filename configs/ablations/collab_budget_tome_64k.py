# Bandwidth sweep: confidence pre-selection (half the cells) + ToMe merging, fp16; 64000 bytes per message.
_base_ = ['./collab_common.py']
model = dict(collab=dict(strategy='tome', budget_bytes=64000))
