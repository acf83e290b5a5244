# Robustness at the 20 kB ToMe setting: each message lost with probability 0.3.
# Knobs act at train and test time; to test a model trained without them, run
# tools/test.py with this config and the clean model's checkpoint.
_base_ = ['./collab_common.py']      # ToMe at 20 kB per message (collab_tome.py)
model = dict(collab=dict(link=dict(drop_prob=0.3)))
