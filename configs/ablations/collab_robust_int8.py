# Robustness at the 20 kB ToMe setting: int8 features (per-channel scale) instead of fp16.
# Knobs act at train and test time; to test a model trained without them, run
# tools/test.py with this config and the clean model's checkpoint.
_base_ = ['./collab_common.py']      # ToMe at 20 kB per message (collab_tome.py)
model = dict(collab=dict(codec=dict(quant='int8')))
