# Temporal ablation, T = 2, deformable temporal self-attention (BEVFormer-style) instead of concat + conv.
_base_ = ['./temporal_t2.py']

model = dict(temporal=dict(fusion=dict(_delete_=True, type='TemporalSelfAttention', channels=64)))
