# OccWorld-style world model (docs/WORLD.md): VQ-VAE scene tokenizer + causal
# spatio-temporal token forecaster. The grid and sequence lengths are the
# top-level variables; configs/world_*.py set the stage.
grid_shape = (100, 100, 8)      # 0.8 m CPU grid; (200, 200, 16) for Occ3D at 0.4 m
num_history = 4                 # past frames; with the current one: 2 s of context at 2 Hz
num_future = 6                  # +0.5 s .. +3 s
num_codes = 512

model = dict(
    type='OccWorldModel',
    stage='tokenizer',
    num_future=num_future,
    tokenizer=dict(
        type='OccTokenizer', grid_shape=grid_shape, embed_dim=8, channels=16, num_down=2,
        code_dim=64, num_codes=num_codes,
        quantizer=dict(beta=0.25, ema=True, decay=0.99, restart_threshold=0.05, restart_every=20)),
    forecaster=dict(
        type='TokenForecaster', num_codes=num_codes, token_shape=(grid_shape[0] // 4, grid_shape[1] // 4),
        dim=64, depth=2, num_heads=4, max_frames=num_history + 1 + num_future,
        # Camera-driven mode: bev_channels = the camera model's BEV channels (docs/WORLD.md).
        bev_channels=None, bev_stride=4),
    # Decoded-occupancy losses (occ.models.losses): CE + Lovasz, as the occupancy heads use.
    occ_losses=[dict(type='WeightedCELoss'), dict(type='LovaszSoftmaxLoss')],
    token_loss_weight=1.0,
    occ_loss_weight=0.5,
    temperature=0.0,
)
