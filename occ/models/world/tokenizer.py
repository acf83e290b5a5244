"""Scene tokenizer: a VQ-VAE over occupancy grids, height folded into BEV channels (OccWorld-style)."""
from __future__ import annotations

import torch
import torch.nn as nn

from occ.constants import IGNORE_INDEX, NUM_CLASSES
from occ.registry import MODELS

from .quantizer import VectorQuantizer


class ResBlock2d(nn.Module):
    """conv3x3-GN-SiLU-conv3x3-GN + identity."""

    def __init__(self, channels: int):
        super().__init__()
        groups = 8 if channels % 8 == 0 else 1
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.GroupNorm(groups, channels), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.GroupNorm(groups, channels))
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


@MODELS.register_module()
class OccTokenizer(nn.Module):
    """Occupancy grid <-> a BEV map of discrete scene tokens.

    labels [B, X, Y, Z] -> class embedding [B, X, Y, Z, E] -> [B, Z*E, X, Y]
    -> conv encoder (stride 2**num_down) -> ``VectorQuantizer`` -> tokens
    [B, X/s, Y/s] -> conv decoder -> logits [B, 18, X, Y, Z].

    Args:
        grid_shape: (X, Y, Z) of the label grid; X and Y divisible by 2**num_down.
        embed_dim: E, class embedding per voxel.
        channels: encoder/decoder width at full resolution (doubled per downsampling).
        num_down: number of stride-2 stages (2 -> tokens at 1/4 resolution).
        code_dim, num_codes: codebook shape.
        quantizer: extra ``VectorQuantizer`` arguments (beta, ema, decay, restart_*).
    """

    def __init__(self, grid_shape=(100, 100, 8), embed_dim: int = 8, channels: int = 32, num_down: int = 2,
                 code_dim: int = 64, num_codes: int = 512, quantizer: dict | None = None):
        super().__init__()
        self.grid_shape = tuple(int(v) for v in grid_shape)
        x, y, z = self.grid_shape
        self.stride = 2 ** num_down
        if x % self.stride or y % self.stride:
            raise ValueError(f'OccTokenizer: grid {self.grid_shape} not divisible by stride {self.stride}')
        self.embed_dim = embed_dim
        # Index NUM_CLASSES is "unknown" (255 in the labels): a learned embedding, not free.
        self.class_embed = nn.Embedding(NUM_CLASSES + 1, embed_dim)
        enc = [nn.Conv2d(z * embed_dim, channels, 3, padding=1), ResBlock2d(channels)]
        c = channels
        for _ in range(num_down):
            enc += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.SiLU(), ResBlock2d(2 * c)]
            c *= 2
        enc += [nn.Conv2d(c, code_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        self.quantizer = VectorQuantizer(num_codes=num_codes, dim=code_dim, **(quantizer or {}))
        dec = [nn.Conv2d(code_dim, c, 3, padding=1), ResBlock2d(c)]
        for _ in range(num_down):
            dec += [nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1), nn.SiLU(), ResBlock2d(c // 2)]
            c //= 2
        # Channel-to-height: every BEV cell predicts the 18 class logits of its Z voxels.
        dec += [nn.Conv2d(c, z * NUM_CLASSES, 1)]
        self.decoder = nn.Sequential(*dec)

    @property
    def token_shape(self) -> tuple:
        return self.grid_shape[0] // self.stride, self.grid_shape[1] // self.stride

    @property
    def num_codes(self) -> int:
        return self.quantizer.num_codes

    def embed(self, labels: torch.Tensor) -> torch.Tensor:
        """uint8/long labels [B, X, Y, Z] -> BEV input [B, Z*E, X, Y]."""
        if tuple(labels.shape[1:]) != self.grid_shape:
            raise ValueError(f'OccTokenizer: labels {tuple(labels.shape)} do not match grid {self.grid_shape}')
        lab = labels.long()
        lab = torch.where(lab == IGNORE_INDEX, torch.full_like(lab, NUM_CLASSES), lab)
        if lab.min() < 0 or lab.max() > NUM_CLASSES:
            raise ValueError(f'OccTokenizer: labels outside 0..{NUM_CLASSES - 1} and {IGNORE_INDEX}')
        e = self.class_embed(lab)                                  # [B, X, Y, Z, E]
        b, x, y, z, d = e.shape
        return e.permute(0, 3, 4, 1, 2).reshape(b, z * d, x, y)

    @staticmethod
    def _no_anchor(anchor) -> None:
        if anchor is not None:
            raise ValueError('OccTokenizer reconstructs a frame on its own and takes no anchor '
                             '(residual forecasting needs a ConditionalOccTokenizer)')

    def encode(self, labels: torch.Tensor, anchor: None = None) -> dict:
        """labels [B, X, Y, Z] -> quantizer output (``quantized`` [B, D, x, y], ``indices`` [B, x, y], ...).

        ``anchor`` exists for a common signature with ``ConditionalOccTokenizer`` and must be None.
        """
        self._no_anchor(anchor)
        return self.quantizer(self.encoder(self.embed(labels)))

    def decode(self, quantized: torch.Tensor, anchor: None = None) -> torch.Tensor:
        """Code vectors [B, D, x, y] -> logits [B, 18, X, Y, Z]."""
        self._no_anchor(anchor)
        out = self.decoder(quantized)                               # [B, Z*18, X, Y]
        b, _, x, y = out.shape
        z = self.grid_shape[2]
        return out.view(b, z, NUM_CLASSES, x, y).permute(0, 2, 3, 4, 1)

    def decode_indices(self, indices: torch.Tensor, anchor: None = None) -> torch.Tensor:
        """Tokens long [B, x, y] -> logits [B, 18, X, Y, Z]."""
        return self.decode(self.quantizer.codes_to_vectors(indices), anchor)

    def decode_probs(self, probs: torch.Tensor, anchor: None = None) -> torch.Tensor:
        """Soft tokens [B, K, x, y] (a distribution over codes) -> logits [B, 18, X, Y, Z].

        The expected code vector keeps the decoded occupancy differentiable with
        respect to the forecaster's token distribution.
        """
        return self.decode(self.quantizer.expected_vectors(probs), anchor)

    def forward(self, labels: torch.Tensor, anchor: None = None) -> dict:
        """labels [B, X, Y, Z] -> dict ``logits`` [B, 18, X, Y, Z], ``indices``, ``loss_vq``, usage stats."""
        q = self.encode(labels, anchor)
        q['logits'] = self.decode(q['quantized'], anchor)
        return q


__all__ = ['OccTokenizer', 'ResBlock2d']
