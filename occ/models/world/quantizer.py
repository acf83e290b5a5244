"""Vector quantizer with straight-through gradients, EMA or learned codebook, usage tracking and dead-code restarts."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from occ.registry import MODELS


@MODELS.register_module()
class VectorQuantizer(nn.Module):
    """Nearest-code quantization of feature maps (VQ-VAE, van den Oord et al. 2017).

    Args:
        num_codes: codebook size K.
        dim: code dimension D.
        beta: commitment weight (encoder pulled towards its code).
        ema: update the codebook by exponential moving averages of the assigned
            encoder outputs (no codebook gradient) instead of learning it.
        decay: EMA decay of the codebook statistics and of the usage counts.
        restart_threshold: a code whose EMA usage (expected assignments per
            batch) falls below this is dead and re-initialised from recent encoder
            outputs by ``restart_dead_codes``; 0 disables restarts.
        restart_every: training steps between automatic restarts.
        normalize: l2-normalise encoder outputs and codes (cosine-similarity lookup, as in
            ViT-VQGAN); keeps all codes on the unit sphere, so they cannot collapse onto one
            tiny cluster whose differences the decoder learns to ignore.
    """

    def __init__(self, num_codes: int = 512, dim: int = 64, beta: float = 0.25, ema: bool = True,
                 decay: float = 0.99, restart_threshold: float = 0.05, restart_every: int = 20,
                 eps: float = 1e-5, normalize: bool = False):
        super().__init__()
        self.num_codes, self.dim, self.beta, self.ema = int(num_codes), int(dim), float(beta), bool(ema)
        self.decay, self.eps, self.normalize = float(decay), float(eps), bool(normalize)
        self.restart_threshold, self.restart_every = float(restart_threshold), int(restart_every)
        init = torch.randn(num_codes, dim) / dim ** 0.5
        if self.normalize:
            init = F.normalize(init, dim=1)
        if ema:
            self.register_buffer('codebook', init.clone())
            self.register_buffer('ema_count', torch.ones(num_codes))
            self.register_buffer('ema_sum', init.clone())
        else:
            self.codebook = nn.Parameter(init)
        # Usage in expected assignments per batch (EMA). It starts at 0, so codes the
        # first ``restart_every`` steps never pick are restarted on real encoder outputs.
        self.register_buffer('usage', torch.zeros(num_codes))
        self.register_buffer('steps', torch.zeros((), dtype=torch.long))

    # -- lookup ---------------------------------------------------------------------------
    def codes_to_vectors(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices [B, ...] -> code vectors [B, D, ...] (channel second, like a feature map)."""
        v = self.codebook[indices]                              # [B, ..., D]
        return v.movedim(-1, 1)

    def expected_vectors(self, probs: torch.Tensor) -> torch.Tensor:
        """A distribution over codes [B, K, ...] -> its expected code vector [B, D, ...]."""
        return torch.einsum('bk...,kd->bd...', probs, self.codebook)

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for every row of ``flat`` [N, D] -> [N] long."""
        cb = self.codebook
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ cb.t() + cb.pow(2).sum(1)[None]
        return d.argmin(1)

    @staticmethod
    def usage_stats(indices: torch.Tensor, num_codes: int) -> dict:
        """Perplexity exp(H(p)) of the code histogram and the fraction of codes used."""
        counts = torch.bincount(indices.reshape(-1), minlength=num_codes).float()
        p = counts / counts.sum().clamp(min=1)
        entropy = -(p * torch.log(p.clamp(min=1e-12))).sum()
        return {'perplexity': entropy.exp(), 'code_usage': (counts > 0).float().mean()}

    # -- forward --------------------------------------------------------------------------
    def forward(self, z: torch.Tensor) -> dict:
        """
        Args:
            z: encoder output [B, D, H, W].
        Returns:
            dict ``quantized`` [B, D, H, W] (straight-through: forward value = codes,
            gradient flows to ``z``), ``indices`` long [B, H, W], ``loss_vq`` scalar,
            ``perplexity``, ``code_usage`` scalars.
        """
        if z.shape[1] != self.dim:
            raise ValueError(f'VectorQuantizer: expected {self.dim} channels, got {tuple(z.shape)}')
        flat = z.movedim(1, -1).reshape(-1, self.dim)
        if self.normalize:
            flat = F.normalize(flat, dim=1)
        idx = self.nearest(flat.detach())
        q = self.codebook[idx]
        commit = F.mse_loss(flat, q.detach())
        if self.ema:
            loss = self.beta * commit
        else:
            loss = F.mse_loss(q, flat.detach()) + self.beta * commit
        if self.training:
            self._update(flat.detach(), idx)
            q = self.codebook[idx] if self.ema else q
        # Straight-through estimator: the decoder sees the code, the encoder gets its gradient.
        st = flat + (q - flat).detach()
        b, _, h, w = z.shape
        out = {'quantized': st.view(b, h, w, self.dim).permute(0, 3, 1, 2).contiguous(),
               'indices': idx.view(b, h, w), 'loss_vq': loss}
        out.update(self.usage_stats(idx, self.num_codes))
        return out

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        onehot = F.one_hot(idx, self.num_codes).to(flat.dtype)         # [N, K]
        counts = onehot.sum(0)
        self.usage.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        if self.ema:
            self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.ema_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
            # Laplace smoothing keeps codes with no recent assignment finite.
            n = self.ema_count.sum()
            count = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n
            cb = self.ema_sum / count[:, None]
            self.codebook.copy_(F.normalize(cb, dim=1) if self.normalize else cb)
        self.steps += 1
        if self.restart_threshold > 0 and self.restart_every > 0 and int(self.steps) % self.restart_every == 0:
            self.restart_dead_codes(flat)

    @torch.no_grad()
    def dead_codes(self) -> torch.Tensor:
        """Bool [K]: codes whose EMA usage is below ``restart_threshold``."""
        return self.usage < self.restart_threshold

    @torch.no_grad()
    def restart_dead_codes(self, recent: torch.Tensor, generator: torch.Generator | None = None) -> int:
        """Re-initialise dead codes from recent encoder outputs ``recent`` [N, D].

        Each dead code becomes a randomly chosen recent vector plus small noise
        (so two restarted codes never coincide); its usage is reset to the
        threshold's double so it gets a few steps to attract assignments.
        Returns the number of restarted codes.
        """
        dead = self.dead_codes().nonzero().flatten()
        if dead.numel() == 0 or recent.numel() == 0:
            return 0
        pick = torch.randint(0, recent.shape[0], (dead.numel(),), generator=generator, device=recent.device)
        noise = torch.randn(dead.numel(), self.dim, generator=generator, device=recent.device)
        new = recent[pick] + 0.01 * recent.std() * noise
        if self.normalize:
            new = F.normalize(new, dim=1)
        if self.ema:
            self.codebook[dead] = new
            self.ema_sum[dead] = new
            self.ema_count[dead] = 1.0
        else:
            self.codebook.data[dead] = new
        self.usage[dead] = 2 * self.restart_threshold
        return int(dead.numel())
