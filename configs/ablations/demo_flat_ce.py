# Demo ablation: unweighted cross-entropy + Lovasz (rare classes get no extra weight).
_base_ = ['../occ_cpu_demo.py']

model = dict(head=dict(losses=[dict(type='WeightedCELoss', class_weight=None),
                               dict(type='LovaszSoftmaxLoss', loss_weight=1.0)]))
