# OccWorld-style world model (docs/WORLD.md) on the 0.8 m CPU grid, two stages:
# stage 1 (``model`` here): the scene tokenizer, a VQ-VAE trained alone (OccTokenizerModel);
# stage 2 (configs/world_forecaster_cpu.py): the causal token forecaster on the frozen tokenizer.
# ``tokenizer`` and ``forecaster`` are the parts both stages name ({{_base_.tokenizer}}).
grid_shape = (100, 100, 8)
num_codes = 512
# One stride-2 stage: 50 x 50 tokens of 2 x 2 x 8 voxels (15x fewer bits than the labels).
# Two stages (25 x 25, 59x) reconstructed far worse in the same CPU budget (docs/WORLD.md).
num_down = 1
token_shape = (grid_shape[0] // 2 ** num_down, grid_shape[1] // 2 ** num_down)

tokenizer = dict(
    type='OccTokenizer', grid_shape=grid_shape, embed_dim=8, channels=16, num_down=num_down,
    code_dim=64, num_codes=num_codes,
    # a short CPU schedule needs a faster EMA codebook than the 0.99 of long ones
    quantizer=dict(beta=0.25, ema=True, decay=0.9, restart_threshold=0.05, restart_every=10))
forecaster = dict(
    type='TokenForecaster', num_codes=num_codes, token_shape=token_shape,
    dim=64, depth=2, num_heads=4,
    max_frames=11,             # 4 past + current + 6 future frames
    bev_channels=None, bev_stride=2 ** num_down)   # camera-driven mode: the camera model's BEV channels
model = dict(
    type='OccTokenizerModel',
    tokenizer=tokenizer,
    frames=dict(type='CurrentFrames', flip=0.5),
    # Class-weighted CE (ENet weights of the Occ3D class frequencies) + Lovasz-softmax: with flat
    # CE the small classes (pedestrian, bicycle, cone, barrier) never left 0 IoU (docs/WORLD.md).
    losses=[dict(type='WeightedCELoss', class_weight='auto'), dict(type='LovaszSoftmaxLoss')])
