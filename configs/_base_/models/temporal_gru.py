# Lift-splat CPU model (lss_dense.py) + temporal memory: recurrent ConvGRU memory over the aligned previous state.
# See docs/TEMPORAL.md. The dataset must give the same history in training:
#     train_dataloader = dict(dataset=dict(num_history=2))
# and, since inference streams (memory kept across consecutive samples of a
# scene), no history at test time:
#     val_dataloader = dict(dataset=dict(num_history=0))
# Use this file *instead of* lss_dense.py in a config's _base_ list.
_base_ = ['./lss_dense.py']
# channels / pc_range repeat lss_dense.py's C = 64 and Occ3D range (a child config
# cannot read a base's variables without mmengine's {{_base_.x}} text macro).

model = dict(
    temporal=dict(
        type='TemporalFusion',
        fusion=dict(type='ConvGRUFusion', channels=64),
        num_history=2,           # T past keyframes
        history_stride=1,        # keyframes between them (= the dataset's history_stride)
        pc_range=[-40.0, -40.0, -1.0, 40.0, 40.0, 5.4],
        history_grad=False,      # history BEV under no_grad: ~T+1x less activation memory
        streaming=True,          # eval: keep memory across samples instead of recomputing history
    ),
)
