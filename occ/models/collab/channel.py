"""The link between agents: latency and message loss, seeded.

Latency ``L`` frames: what arrives at frame ``t`` is what that sender sent at
frame ``t - L`` (a stale message, with the sender's pose *at that time* in its
header, so static scenery still lands right and only moving things are off).
If that message was never sent (first frames of a sequence, or the previous
frame was not processed, as in shuffled training) nothing arrives. Loss: each
arriving message is dropped with probability ``drop_prob``.
"""
from __future__ import annotations

import numpy as np


class CommChannel:
    """Per-sender store of recent messages plus random loss.

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
        """Forget stored messages and restart the loss draws from the seed."""
        self._sent: dict = {}       # sender key -> {frame: bytes or None}
        self._calls: dict = {}      # sender key -> calls so far (frame index when none is given)
        self._rng = np.random.default_rng(self.seed)

    def transmit(self, sender_key, data: bytes | None, frame: int | None = None) -> bytes | None:
        """Send ``data`` (None: nothing sent) from ``sender_key`` at ``frame``; return what arrives now.

        ``frame`` is the sender's frame index in its sequence; without it, successive calls with
        the same key count as successive frames.
        """
        if self.latency:
            if frame is None:
                frame = self._calls.get(sender_key, 0)
                self._calls[sender_key] = frame + 1
            store = self._sent.setdefault(sender_key, {})
            store[int(frame)] = data
            data = store.get(int(frame) - self.latency)
            # Keep memory bounded, but keep the message just delivered: a broadcast reaches every
            # receiver of the same frame (other egos in the batch or the next batches).
            for old in [f for f in store if f < frame - self.latency]:
                del store[old]
        if data is not None and self.drop_prob > 0 and self._rng.random() < self.drop_prob:
            return None
        return data
