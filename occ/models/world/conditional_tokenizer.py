"""Conditional scene tokenizer: tokens say what changed with respect to an ego-warped earlier frame."""
from __future__ import annotations

import torch
import torch.nn as nn

from occ.constants import IGNORE_INDEX, NUM_CLASSES
from occ.registry import MODELS

from .anchors import anchor_prior
from .tokenizer import OccTokenizer, ResBlock2d


@MODELS.register_module()
class ConditionalOccTokenizer(OccTokenizer):
    """VQ-VAE of a frame *given an anchor*: the frame's predecessor moved into its ego frame.

    The anchor of frame s is an earlier frame (s-1 for the tokenizer's
    context frames, the current frame t for every forecast t+h) warped into
    frame s's ego frame by the known relative pose (``anchors.EgoWarpAnchors``, cells
    from outside the grid = 255 "unknown"). Both enter the encoder, so tokens
    only need to carry what the anchor does not: moving objects, cells that
    entered the grid. The decoder sees tokens and anchor and predicts a
    residual on top of the anchor:

        logits [B, 18, X, Y, Z] = prior_scale * onehot(anchor) + residual(tokens, anchor)

    The last layers of both paths start at zero, so an untrained decoder already
    equals the ego-warp baseline (``anchor_prior``) and training only has to
    improve on it.

    Encoder: [embed(frame) | embed(anchor)] [B, 2*Z*E, X, Y] -> convs (stride
    2**num_down) -> code_dim -> ``VectorQuantizer`` -> tokens [B, x, y].
    fill: [codes | pooled anchor features] at token resolution -> ResBlock
    -> transposed convs back to [X, Y] -> [.. | anchor features at full
    resolution] -> 1x1 conv -> [B, Z*18, X, Y] -> channel-to-height.
    change: codes -> ResBlock -> transposed convs -> 1x1 conv (the plain
    tokenizer's decoder, thinner).

    Args (beyond ``OccTokenizer``'s):
        prior_scale: initial weight of the anchor's one-hot in the logits (learned).
        token_noise: in training, this fraction of token vectors is replaced by random
            codes before decoding, so the decoder learns to fall back on the anchor
            where a forecast token is wrong.
    """

    conditional = True

    def __init__(self, grid_shape=(100, 100, 8), embed_dim: int = 8, channels: int = 32, num_down: int = 2,
                 code_dim: int = 64, num_codes: int = 512, quantizer: dict | None = None,
                 prior_scale: float = 4.0, token_noise: float = 0.0):
        super().__init__(grid_shape, embed_dim, channels, num_down, code_dim, num_codes, quantizer)
        x, y, z = self.grid_shape
        zin = z * embed_dim
        # Encoder: frame and anchor side by side (replace the first conv of the parent's encoder).
        self.encoder[0] = nn.Conv2d(2 * zin, channels, 3, padding=1)
        # Anchor features for the decoder, at full and at token resolution.
        self.anchor_full = nn.Sequential(nn.Conv2d(zin, channels, 3, padding=1), nn.SiLU())
        down = []
        c = channels
        for _ in range(num_down):
            down += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.SiLU()]
            c *= 2
        self.anchor_down = nn.Sequential(*down)
        dec = [nn.Conv2d(code_dim + c, c, 3, padding=1), ResBlock2d(c)]
        for _ in range(num_down):
            dec += [nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1), nn.SiLU()]
            c //= 2
        self.decoder = nn.Sequential(*dec)
        self.fuse = nn.Sequential(nn.Conv2d(2 * c, c, 3, padding=1), nn.SiLU(), ResBlock2d(c))
        self.residual = nn.Conv2d(c, z * NUM_CLASSES, 1)
        c = channels * 2 ** num_down
        chg = [nn.Conv2d(code_dim, c, 3, padding=1), ResBlock2d(c)]
        for _ in range(num_down):
            chg += [nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1), nn.SiLU()]
            c //= 2
        chg += [nn.Conv2d(c, z * NUM_CLASSES, 1)]
        self.change = nn.Sequential(*chg)
        for layer in (self.residual, self.change[-1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.prior_scale = nn.Parameter(torch.tensor(float(prior_scale)))
        self.token_noise = float(token_noise)
        # Unit-norm codes have entries ~1/sqrt(D), far below the anchor features they are
        # concatenated with: scale them to unit entries so the decoder does not drown them.
        self.code_scale = code_dim ** 0.5 if self.quantizer.normalize else 1.0

    def _need_anchor(self, anchor):
        if anchor is None:
            raise ValueError('ConditionalOccTokenizer: give the anchor (earlier frame warped into this one)')
        if tuple(anchor.shape[1:]) != self.grid_shape:
            raise ValueError(f'ConditionalOccTokenizer: anchor {tuple(anchor.shape)} does not match {self.grid_shape}')

    def encode(self, labels: torch.Tensor, anchor: torch.Tensor | None = None) -> dict:
        """labels, anchor [B, X, Y, Z] -> quantizer output (``quantized`` [B, D, x, y], ``indices`` [B, x, y], ...)."""
        self._need_anchor(anchor)
        return self.quantizer(self.encoder(torch.cat([self.embed(labels), self.embed(anchor)], 1)))

    def decode(self, quantized: torch.Tensor, anchor: torch.Tensor | None = None) -> torch.Tensor:
        """Code vectors [B, D, x, y] + anchor [B, X, Y, Z] -> logits [B, 18, X, Y, Z]."""
        self._need_anchor(anchor)
        if self.training and self.token_noise > 0:
            b, d, h, w = quantized.shape
            swap = torch.rand(b, 1, h, w, device=quantized.device) < self.token_noise
            rnd = self.quantizer.codes_to_vectors(torch.randint(0, self.num_codes, (b, h, w), device=quantized.device))
            quantized = torch.where(swap, rnd, quantized)
        q = quantized * self.code_scale
        a = self.anchor_full(self.embed(anchor))                  # [B, c, X, Y]
        h = self.decoder(torch.cat([q, self.anchor_down(a)], 1))
        fill = self._to_voxels(self.residual(self.fuse(torch.cat([h, a], 1))))   # [B, 18, X, Y, Z]
        change = self._to_voxels(self.change(q))
        unknown = (anchor == IGNORE_INDEX)[:, None]
        return self.prior_scale * anchor_prior(anchor) + torch.where(unknown, fill, change)

    def _to_voxels(self, res: torch.Tensor) -> torch.Tensor:
        """Channel-to-height: [B, Z*18, X, Y] -> [B, 18, X, Y, Z]."""
        b, _, x, y = res.shape
        return res.view(b, self.grid_shape[2], NUM_CLASSES, x, y).permute(0, 2, 3, 4, 1)

    def decode_indices(self, indices: torch.Tensor, anchor: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens long [B, x, y] + anchor -> logits [B, 18, X, Y, Z]."""
        return self.decode(self.quantizer.codes_to_vectors(indices), anchor)

    def decode_probs(self, probs: torch.Tensor, anchor: torch.Tensor | None = None) -> torch.Tensor:
        """Soft tokens [B, K, x, y] + anchor -> logits (expected code vector, differentiable)."""
        return self.decode(self.quantizer.expected_vectors(probs), anchor)

    def forward(self, labels: torch.Tensor, anchor: torch.Tensor | None = None) -> dict:
        """labels, anchor [B, X, Y, Z] -> dict ``logits`` [B, 18, X, Y, Z], ``indices``, ``loss_vq``, usage stats."""
        q = self.encode(labels, anchor)
        q['logits'] = self.decode(q['quantized'], anchor)
        return q


__all__ = ['ConditionalOccTokenizer']
