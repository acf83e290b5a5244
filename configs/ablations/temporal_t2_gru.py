# Temporal ablation, T = 2, recurrent memory (ConvGRU over the aligned previous state) instead of concat + conv.
_base_ = ['./temporal_t2.py']

model = dict(temporal=dict(fusion=dict(_delete_=True, type='ConvGRUFusion', channels=64)))
