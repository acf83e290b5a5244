"""The link between agents: latency and message loss, seeded.

Latency ``L`` frames: what arrives now is what that sender sent ``L`` calls
ago (a stale message, with the sender's pose *at that time* in its header, so
static scenery still lands right and only moving things are off). Until a
sender has sent ``L`` messages nothing arrives from it. Loss: each arriving
message is dropped with probability ``drop_prob``.
"""
from __future__ import annotations

from collections import deque

import numpy as np


class CommChannel:
    """Per-sender FIFO of messages plus random loss.

    Args:
        drop_prob: probability in [0, 1] that a message is lost.
        latency: frames of delay (0 = the current message arrives).
        seed: seed of the loss draws.
    """

    def __init__(self, drop_prob: float = 0.0, latency: int = 0, seed: int = 0):
        if not 0.0 <= drop_prob <= 1.0:
            raise ValueError(f'drop_prob must be in [0, 1], got {drop_prob}')
        if latency < 0 or int(latency) != latency:
            raise ValueError(f'latency must be a whole number of frames >= 0, got {latency}')
        self.drop_prob, self.latency, self.seed = float(drop_prob), int(latency), seed
        self.reset()

    def reset(self) -> None:
        """Forget queued messages and restart the loss draws from the seed."""
        self._queues: dict = {}
        self._rng = np.random.default_rng(self.seed)

    def transmit(self, sender_key, data: bytes | None) -> bytes | None:
        """Send ``data`` (None: nothing sent) from ``sender_key``; return what arrives now."""
        if self.latency:
            q = self._queues.setdefault(sender_key, deque())
            q.append(data)
            data = q.popleft() if len(q) > self.latency else None
        if data is not None and self.drop_prob > 0 and self._rng.random() < self.drop_prob:
            return None
        return data
