# Forecasting baseline: every future frame = the current frame (no training).
#   python tools/train_world.py --eval-only  (scores it next to the world model), or
#   occ.models.world.evaluate_forecasters({'copy': MODELS.build(cfg.model)}, loader, 6)
_base_ = ['./world_tokenizer_cpu.py']
model = dict(_delete_=True, type='CopyLastForecaster', num_future={{_base_.num_future}}, ego_warp=False,
             voxel_size={{_base_.grid_voxel}})
