"""Collaborative perception: neighbours' BEV tokens compressed to a byte budget, fused into the ego BEV.

See docs/COLLAB.md. ``CollabFusion`` (registered in ``MODELS``) is what
OccNet calls as ``collab(bev, batch, neighbor_bevs) -> (bev, bytes_sent)``; it
is built from registered stages (``COMPRESSORS``, ``CODECS``, ``LINKS``,
``FUSIONS`` in registry.py) chosen in the config.
"""
from .attention import LocalTokenAttention, knn_within
from .channel import CommChannel
from .codec import WireCodec
from .compressors import (CellSelector, FullCompressor, RandomCompressor, SilentCompressor, TopKCompressor,
                          ToMeCompressor)
from .footprint import FootprintCodec, FootprintToMeCompressor
from .fusion import CollabFusion
from .link import SimulatedLink
from .message import (Message, MessageError, decode, encode_dense, encode_tokens,
                      max_tokens_for_budget, message_nbytes)
from .pool_fusion import MaxFusion, MeanFusion
from .registry import CODECS, COMPRESSORS, FUSIONS, LINKS
from .stages import Compressor, Payload, TokenFusion
from .tome import bipartite_soft_matching, merge_to

__all__ = [
    'CollabFusion', 'COMPRESSORS', 'CODECS', 'LINKS', 'FUSIONS', 'Compressor', 'Payload', 'TokenFusion',
    'SilentCompressor', 'FullCompressor', 'CellSelector', 'RandomCompressor', 'TopKCompressor', 'ToMeCompressor',
    'FootprintToMeCompressor', 'FootprintCodec', 'WireCodec', 'SimulatedLink', 'LocalTokenAttention', 'MaxFusion',
    'MeanFusion', 'knn_within',
    'CommChannel', 'Message', 'MessageError', 'decode', 'encode_dense', 'encode_tokens',
    'max_tokens_for_budget', 'message_nbytes', 'bipartite_soft_matching', 'merge_to',
]
