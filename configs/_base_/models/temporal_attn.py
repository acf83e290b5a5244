# Lift-splat CPU model (lss_dense.py) + temporal memory: deformable temporal self-attention to the aligned past BEV (BEVFormer-style).
# Everything else (T, stride, streaming, dataset notes) as temporal_concat.py; docs/TEMPORAL.md.
# Use this file *instead of* lss_dense.py in a config's _base_ list.
_base_ = ['./temporal_concat.py']

model = dict(temporal=dict(fusion=dict(_delete_=True, type='TemporalSelfAttention', channels=64, num_heads=4, num_points=4)))
