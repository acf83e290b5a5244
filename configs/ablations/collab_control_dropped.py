# The reference row of every collaboration table: the same weights with every message lost on
# the link (bytes are still sent; nothing arrives), so the output is the ego-only forward of
# those weights exactly (tests/test_collab_occnet.py). Test a trained collaborative checkpoint:
#   python tools/ablate.py configs/ablations/collab_control_dropped.py --load-from CKPT --work-root ...
# or sweep the loss rate: collab_common.py --grid model.collab.link.drop_prob=0.0,0.3,1.0 --load-from CKPT
_base_ = ['./collab_common.py']
model = dict(collab=dict(link=dict(drop_prob=1.0)))
