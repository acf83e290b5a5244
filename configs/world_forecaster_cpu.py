# World model, stage 2: the causal token forecaster on a frozen tokenizer (CPU scale).
#
#   python tools/train.py configs/world_forecaster_cpu.py --work-dir work_dirs/world_forecaster \
#       --cfg-options model.tokenizer_ckpt=work_dirs/world_tokenizer/iter_200.pth
#   python tools/test.py configs/world_forecaster_cpu.py work_dirs/world_forecaster
_base_ = ['./world_tokenizer_cpu.py']

model = dict(stage='forecaster', tokenizer_ckpt=None)   # set tokenizer_ckpt (tools/train_world.py does)
batch_size = 2
train_dataloader = dict(batch_size=batch_size)
train_cfg = dict(max_iters=150)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
