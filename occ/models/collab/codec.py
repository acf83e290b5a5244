"""The codec stage: a payload <-> the bytes of the wire format of ``message.py`` (unchanged).

The codec owns the feature precision (``quant``) and the byte accounting the compressors plan
with, so "how many tokens fit" and "how many bytes were sent" come from one place.
"""
from __future__ import annotations

from .message import QUANTS, Message, decode, encode_dense, encode_tokens, max_tokens_for_budget
from .registry import CODECS
from .stages import Payload


@CODECS.register_module()
class WireCodec:
    """``OCCM`` messages (docs/COLLAB.md, "The message").

    Args:
        quant: feature precision on the link: 'fp32', 'fp16' or 'int8' (per-channel scale).
    """

    def __init__(self, quant: str = 'fp16'):
        if quant not in QUANTS:
            raise ValueError(f'WireCodec: quant must be one of {sorted(QUANTS)}, got {quant!r}')
        self.quant = quant

    def max_tokens(self, budget_bytes: int, channels: int, has_sizes: bool, size_itemsize: int = 2) -> int:
        """Largest token count whose message fits ``budget_bytes`` (0: not even one)."""
        return max_tokens_for_budget(budget_bytes, channels, self.quant, has_sizes, size_itemsize)

    def encode(self, payload: Payload, pose: tuple, pc_range) -> bytes:
        """Serialise; ``pose`` is the sender's (x, y, yaw) as it believes it (written in the header)."""
        if payload.dense is not None:
            return encode_dense(payload.dense, pose, pc_range, self.quant)
        return encode_tokens(payload.feat, payload.pos, payload.size, pose, self.quant)

    def decode(self, data: bytes, source: str = 'message') -> Message:
        """Parse and check a message (``MessageError`` names ``source`` on corrupt bytes)."""
        return decode(data, source)

    def __repr__(self) -> str:
        return f'WireCodec(quant={self.quant!r})'
