"""Collaborative perception: neighbours' BEV tokens merged to a byte budget, fused into the ego BEV.

See docs/COLLAB.md. ``CollabFusion`` (registered in ``MODELS``) is what
OccNet calls as ``collab(bev, batch, neighbor_bevs) -> (bev, bytes_sent)``.
"""
from .attention import LocalTokenAttention, knn_within
from .channel import CommChannel
from .fusion import STRATEGIES, CollabFusion
from .message import (Message, MessageError, decode, encode_dense, encode_tokens,
                      max_tokens_for_budget, message_nbytes)
from .pose import apply_se2, pose2d, relative_se2, se2
from .tome import bipartite_soft_matching, merge_to

__all__ = [
    'CollabFusion', 'STRATEGIES', 'LocalTokenAttention', 'knn_within', 'CommChannel', 'Message',
    'MessageError', 'decode', 'encode_dense', 'encode_tokens', 'max_tokens_for_budget',
    'message_nbytes', 'apply_se2', 'pose2d', 'relative_se2', 'se2',
    'bipartite_soft_matching', 'merge_to',
]
