# Lift-splat CPU model (lss_dense.py) + temporal memory: recurrent ConvGRU memory over the aligned previous state.
# Everything else (T, stride, streaming, dataset notes) as temporal_concat.py; docs/TEMPORAL.md.
# Use this file *instead of* lss_dense.py in a config's _base_ list.
_base_ = ['./temporal_concat.py']

model = dict(temporal=dict(fusion=dict(_delete_=True, type='ConvGRUFusion', channels=64)))
