"""Collaborative perception: neighbours' BEV tokens merged to a byte budget, fused into the ego BEV.

See docs/COLLAB.md. ``CollabFusion`` (registered in ``MODELS``) is what
OccNet calls as ``collab(bev, batch, neighbor_bevs) -> (bev, bytes_sent)``.
"""
from .attention import LocalTokenAttention, knn_within
from .channel import CommChannel
from .fusion import STRATEGIES, CollabFusion
from .message import (Message, MessageError, decode, encode_dense, encode_tokens,
                      max_tokens_for_budget, message_nbytes)
from .tome import bipartite_soft_matching, merge_to

__all__ = [
    'CollabFusion', 'STRATEGIES', 'LocalTokenAttention', 'knn_within', 'CommChannel', 'Message',
    'MessageError', 'decode', 'encode_dense', 'encode_tokens', 'max_tokens_for_budget',
    'message_nbytes',
    'bipartite_soft_matching', 'merge_to',
]
