"""The interfaces of the collaboration stages (sender compressor, receiver fusion) and the payload.

Data flow of one message (``CollabFusion`` runs it, docs/COLLAB.md "Stages"):

    sender BEV [C, X, Y] -> tokens + confidence -> Compressor -> Payload -> codec.encode -> bytes
    -> link (range, pose error, latency, loss) -> codec.decode -> Compressor.restore
    -> re-posed into the ego frame -> TokenFusion(ego cells, tokens) -> ego BEV

A subclass registered in ``COMPRESSORS`` / ``FUSIONS`` (registry.py) is usable from a config.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Payload:
    """What a compressor puts on the wire, before serialisation.

    Attributes:
        feat: [n, C] features as sent, with gradient (a straight-through estimate in
            training routes the decoded values' gradient here).
        pos: [n, 2] token positions, metres in the sender's frame (None for a dense map).
        size: [n] cells each token stands for (None: all 1, no sizes on the wire).
        dense: [C, X, Y] the whole map when the message is the dense grid (positions implied by
            the header geometry); then ``feat`` is its cells in raster order.
    """

    feat: torch.Tensor
    pos: torch.Tensor | None = None
    size: torch.Tensor | None = None
    dense: torch.Tensor | None = None


class Compressor(nn.Module, metaclass=abc.ABCMeta):
    """Sender stage: one neighbour's BEV tokens -> a payload within ``budget_bytes``.

    Subclasses implement ``forward``; a learned one may hold parameters (they are trained by
    the fusion loss through the straight-through estimate) and undo its transform on the
    receiver side in ``restore``. ``sends = False`` marks a compressor that never sends
    anything (the receiver then skips the neighbours altogether).
    """

    sends = True

    @abc.abstractmethod
    def forward(self, bev: torch.Tensor, feat: torch.Tensor, pos: torch.Tensor, score: torch.Tensor,
                budget_bytes: int, codec, gen: torch.Generator) -> Payload | None:
        """Choose what to send.

        Args:
            bev: [C, X, Y] the sender's map (ungated).
            feat: [N, C] its cells as tokens (raster order, gated by the learned confidence if any).
            pos: [N, 2] cell centres, metres in the sender's frame.
            score: [N] confidence of each cell (higher: more worth sending).
            budget_bytes: the most bytes the encoded message may have.
            codec: the wire format (``max_tokens`` plans the count that fits).
            gen: the seeded generator of random choices.
        Returns:
            a Payload, or None when nothing fits (nothing is sent).
        """

    def restore(self, feat: torch.Tensor) -> torch.Tensor:
        """Receiver side: decoded features [n, C'] -> [n, C] for the fusion (identity here)."""
        return feat


class TokenFusion(nn.Module):
    """Receiver stage: ego cells take in the received tokens near them.

    Args:
        embed_dims: C.
        k: tokens considered per ego cell (the nearest within reach).
        radius: metres a single-cell token reaches.
        reach_scale: a token of size s reaches ``max(radius, cell * sqrt(s / pi) * reach_scale)``.

    ``forward(query [Q, C], query_pos [Q, 2], feat [n, C], pos [n, 2], size [n], reach [n])``
    returns [Q, C]; cells with no token in reach must come back bit for bit.
    """

    def __init__(self, embed_dims: int, k: int = 8, radius: float = 2.0, reach_scale: float = 1.5):
        super().__init__()
        self.embed_dims, self.k, self.radius, self.reach_scale = embed_dims, int(k), float(radius), float(reach_scale)

    def reach(self, size: torch.Tensor, cell: float) -> torch.Tensor:
        """Metres each token of ``size`` [n] cells (of ``cell`` metres) reaches: [n]."""
        return torch.clamp(cell * torch.sqrt(size / math.pi) * self.reach_scale, min=self.radius)
