# Demo ablation: class-weighted cross-entropy only (no Lovasz-softmax term).
_base_ = ['../occ_cpu_demo.py']

model = dict(head=dict(losses=[dict(type='WeightedCELoss', class_weight='auto')]))
