"""The link stage: a simulation of the radio link between agents, kept apart from learned modules.

It decides who can talk (range), what pose a sender writes in its header (localisation
error), and what arrives when (latency, loss). It holds no parameters and no features: the
same weights can be tested under any link by changing only this part of the config (e.g.
``drop_prob=1.0``: every message is lost, the control whose output is the ego-only forward).
"""
from __future__ import annotations

import math

import torch

from occ.geometry import perturb_pose

from .channel import CommChannel
from .registry import LINKS


@LINKS.register_module()
class SimulatedLink:
    """Range, localisation error, latency and loss, each seeded.

    Args:
        drop_prob: each arriving message is lost with this probability (its bytes still count
            as sent); 1.0 drops every message.
        latency: frames of delay (see ``CommChannel``; the first frames of a sequence get nothing).
        pose_noise_m, pose_noise_deg: std of the sender's localisation error written in its header.
        comm_range: metres; neighbours farther than this (true poses) send nothing (None: any).
    """

    def __init__(self, drop_prob: float = 0.0, latency: int = 0, pose_noise_m: float = 0.0,
                 pose_noise_deg: float = 0.0, comm_range: float | None = None):
        if pose_noise_m < 0 or pose_noise_deg < 0:
            raise ValueError(f'SimulatedLink: pose noise must be >= 0, got {pose_noise_m} m, {pose_noise_deg} deg')
        if comm_range is not None and comm_range < 0:
            raise ValueError(f'SimulatedLink: comm_range must be >= 0 or None, got {comm_range}')
        self.channel = CommChannel(drop_prob, latency)
        self.pose_noise_m, self.pose_noise_deg, self.comm_range = pose_noise_m, pose_noise_deg, comm_range
        self.reset(0)

    @property
    def drop_prob(self) -> float:
        return self.channel.drop_prob

    @property
    def latency(self) -> int:
        return self.channel.latency

    def reset(self, seed: int) -> None:
        """Restart the loss and pose-noise streams from ``seed`` and forget queued messages."""
        self.channel.seed = seed
        self.channel.reset()
        self._gen_pose = torch.Generator().manual_seed(seed + 1)

    def in_range(self, sender_pose: tuple, receiver_pose: tuple) -> bool:
        """Whether a sender at planar pose (x, y, yaw) reaches the receiver (true poses)."""
        return self.comm_range is None or math.hypot(
            sender_pose[0] - receiver_pose[0], sender_pose[1] - receiver_pose[1]) <= self.comm_range

    def localise(self, true_pose: tuple) -> tuple:
        """The pose the sender believes it has (written in its message header)."""
        return perturb_pose(true_pose, self.pose_noise_m, self.pose_noise_deg, self._gen_pose)

    def transmit(self, sender_key, data: bytes | None, frame: int | None = None) -> bytes | None:
        """Send ``data`` (None: nothing) from ``sender_key`` at ``frame``; return what arrives now."""
        return self.channel.transmit(sender_key, data, frame)

    def __repr__(self) -> str:
        return (f'SimulatedLink(drop_prob={self.drop_prob}, latency={self.latency}, pose_noise_m='
                f'{self.pose_noise_m}, pose_noise_deg={self.pose_noise_deg}, comm_range={self.comm_range})')
