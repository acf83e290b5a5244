# Merged tokens that carry their footprint (docs/COLLAB.md, "Footprints"): the weights of
# collab_coop_mixed.py (tested with --load-from, no training), plus the compressor `tome4fp`
# (ToMe inside the 4n most confident cells, as tome4, and each token's bounding box and member
# mask on the wire) and the codec that writes and unmerges footprints. Every other strategy's
# messages are byte for byte those of collab_coop_mixed.py.
_base_ = ['./collab_coop_mixed.py']
model = dict(collab=dict(
    compressors=dict(tome4fp=dict(type='tome_fp', cells_per_token=4)),
    codec=dict(type='FootprintCodec')))
