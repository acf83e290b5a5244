# Lift-splat CPU model (lss_dense.py) + collaboration: neighbours' BEV maps are sent as
# ToMe-merged tokens under a byte budget and fused into the ego BEV (docs/COLLAB.md).
# The dataset must load the other agents of a cooperative world:
#     train_dataloader = dict(dataset=dict(load_neighbors=True, max_neighbors=2))
# Use this file *instead of* lss_dense.py in a config's _base_ list.
# Every stage is a registered part (occ/models/collab/registry.py): the sender's compressor is
# named by `strategy` ('none' ego only, 'full' whole map, 'random' / 'topk' single cells, 'tome'
# merged tokens, or any registered one) with its options under `compressors`; `codec`, `link`
# and `fusion` are dict(type=...) configs.
_base_ = ['./lss_dense.py']
# embed_dims / pc_range repeat lss_dense.py's C = 64 and Occ3D range (a child config
# cannot read a base's variables without mmengine's {{_base_.x}} text macro).

model = dict(
    collab=dict(
        type='CollabFusion',
        embed_dims=64,
        pc_range=[-40.0, -40.0, -1.0, 40.0, 40.0, 5.4],
        strategy='tome',
        budget_bytes=20000,      # per message (one neighbour, one frame), header included
        compressors=dict(
            tome=dict(select_ratio=0.5,      # keep the most confident half of the cells, then merge
                      merge_radius=4.0)),    # metres: ToMe only merges nearby cells
        confidence='learned',    # 1x1 conv gate, trained through the fusion
        codec=dict(type='WireCodec', quant='fp16'),      # 'fp32' | 'fp16' | 'int8' (per-channel scale)
        link=dict(type='SimulatedLink',
                  comm_range=None,       # metres; None: every neighbour in the batch talks
                  drop_prob=0.0,         # 1.0: every message lost (the dropped-message control)
                  latency=0,             # frames
                  pose_noise_m=0.0,
                  pose_noise_deg=0.0),
        fusion=dict(type='LocalTokenAttention', num_heads=4, k=8,
                    radius=2.0,          # metres (merged tokens reach ~sqrt(size) cells farther)
                    reach_scale=1.5, zero_init=True),
        seed=0,
    ),
)
