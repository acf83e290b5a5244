# Bandwidth sweep baseline: full BEV sharing, uncompressed (fp32, every cell; budget ignored).
# 100 x 100 cells x 64 channels x 4 B + 54 B header = 2,560,054 bytes per message.
_base_ = ['./collab_common.py']
model = dict(collab=dict(strategy='full', codec=dict(quant='fp32')))
