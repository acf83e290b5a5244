"""Causal spatio-temporal transformer over scene tokens (the world model's dynamics)."""
from __future__ import annotations

import torch
import torch.nn as nn

from occ.registry import MODELS


def causal_mask(length: int, device=None) -> torch.Tensor:
    """Bool [S, S]; True where attention is forbidden (key frame later than query frame)."""
    return torch.triu(torch.ones(length, length, dtype=torch.bool, device=device), 1)


class SpatioTemporalBlock(nn.Module):
    """Pre-norm block: attention within each frame, causal attention across frames per token site, MLP.

    Factorising keeps the cost at S·N² + N·S² instead of (S·N)² for S frames of
    N tokens, and the causal mask lives only in the temporal attention: the
    spatial attention never mixes frames, so no future frame can leak in.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.norm_s = nn.LayerNorm(dim)
        self.attn_s = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_t = nn.LayerNorm(dim)
        self.attn_t = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_m = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, S, N, D] -> [B, S, N, D]."""
        b, s, n, d = x.shape
        h = self.norm_s(x).reshape(b * s, n, d)
        x = x + self.attn_s(h, h, h, need_weights=False)[0].view(b, s, n, d)
        h = self.norm_t(x).transpose(1, 2).reshape(b * n, s, d)
        a = self.attn_t(h, h, h, attn_mask=causal_mask(s, x.device), need_weights=False)[0]
        x = x + a.view(b, n, s, d).transpose(1, 2)
        return x + self.mlp(self.norm_m(x))


@MODELS.register_module()
class TokenForecaster(nn.Module):
    """Predict the scene tokens of frame s+1 from frames <= s and the ego motion s -> s+1.

    Frames enter as token indices (ground-truth-occupancy mode) or, for the
    first frames, as BEV feature maps of the camera model (camera-driven mode,
    ``context_feats``); both become [B, S, N, D] token embeddings, plus a
    learned spatial position, a learned frame position and an embedding of the
    ego motion that follows the frame (known at prediction time: the planned or
    measured trajectory).

    Args:
        num_codes: tokenizer codebook size K.
        token_shape: (x, y) tokens per frame.
        dim, depth, num_heads, mlp_ratio, dropout: transformer size.
        max_frames: longest sequence S.
        bev_channels: C of camera BEV maps for ``context_feats`` (None: no camera mode).
        bev_stride: BEV map cells per token cell (the adapter is a stride-s conv).
        anchor_channels: C of ``anchor_feats`` (None: no anchors). With a conditional
            tokenizer, the frame predicted at position s is decoded on top of an
            *anchor* (an earlier frame ego-warped into frame s+1); its map
            [C, X, Y] (class fractions per cell and height, ``anchor_bev``) enters
            position s through a stride-``anchor_stride`` conv, so the forecaster
            sees the scene it predicts changes of.
        anchor_stride: anchor map cells per token cell.
    """

    def __init__(self, num_codes: int = 512, token_shape=(25, 25), dim: int = 128, depth: int = 4,
                 num_heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0, max_frames: int = 16,
                 bev_channels: int | None = None, bev_stride: int = 4, anchor_channels: int | None = None,
                 anchor_stride: int = 4):
        super().__init__()
        self.num_codes, self.token_shape, self.max_frames = int(num_codes), tuple(token_shape), int(max_frames)
        n = self.token_shape[0] * self.token_shape[1]
        self.token_embed = nn.Embedding(num_codes, dim)
        self.pos_space = nn.Parameter(torch.randn(1, 1, n, dim) * 0.02)
        self.pos_time = nn.Parameter(torch.randn(1, max_frames, 1, dim) * 0.02)
        self.ego_embed = nn.Sequential(nn.Linear(4, dim), nn.GELU(), nn.Linear(dim, dim))
        self.bev_adapter = (None if bev_channels is None else
                            nn.Conv2d(bev_channels, dim, bev_stride, stride=bev_stride))
        self.anchor_adapter = (None if anchor_channels is None else
                               nn.Conv2d(anchor_channels, dim, anchor_stride, stride=anchor_stride))
        self.blocks = nn.ModuleList(SpatioTemporalBlock(dim, num_heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_codes)

    def embed_feats(self, feats: torch.Tensor, adapter: nn.Module | None = None) -> torch.Tensor:
        """Camera BEV (or anchor) maps [B, T, C, X, Y] -> token embeddings [B, T, N, D]."""
        adapter = self.bev_adapter if adapter is None else adapter
        if adapter is None:
            raise ValueError('TokenForecaster: context_feats given but the forecaster was built without '
                             'bev_channels (camera-driven mode off)')
        b, t = feats.shape[:2]
        e = adapter(feats.flatten(0, 1))                          # [B*T, D, x, y]
        if tuple(e.shape[-2:]) != self.token_shape:
            raise ValueError(f'TokenForecaster: BEV maps {tuple(feats.shape[-2:])} / stride give '
                             f'{tuple(e.shape[-2:])} cells, expected the token grid {self.token_shape}')
        return e.flatten(2).transpose(1, 2).reshape(b, t, -1, e.shape[1])

    def forward(self, tokens: torch.Tensor | None, ego: torch.Tensor,
                context_feats: torch.Tensor | None = None, anchor_feats: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            tokens: long [B, S_tok, x, y] frames given as tokens (after the
                ``context_feats`` frames, if any), or None.
            ego: [B, S, 4] motion after each frame (``ego.step_poses``), S = all frames.
            context_feats: optional camera BEV maps [B, T, C, X, Y] for the first T frames.
            anchor_feats: [B, >= S, C, X, Y] anchor map of the frame each position predicts
                (entry s: the anchor of frame s+1, built from frames <= s and the known
                motion); required iff the forecaster has ``anchor_channels``.
        Returns:
            logits [B, S, K, x, y]; entry s is the prediction of frame s+1's tokens.
        """
        parts = []
        if context_feats is not None:
            parts.append(self.embed_feats(context_feats))
        if tokens is not None:
            if tuple(tokens.shape[-2:]) != self.token_shape:
                raise ValueError(f'TokenForecaster: tokens {tuple(tokens.shape)} do not match the token '
                                 f'grid {self.token_shape}')
            parts.append(self.token_embed(tokens.flatten(2)))      # [B, S_tok, N, D]
        if not parts:
            raise ValueError('TokenForecaster: give tokens and/or context_feats')
        x = torch.cat(parts, 1)
        b, s = x.shape[:2]
        if s > self.max_frames:
            raise ValueError(f'TokenForecaster: {s} frames exceed max_frames={self.max_frames}')
        if ego.shape[:2] != (b, s):
            raise ValueError(f'TokenForecaster: ego motion {tuple(ego.shape)} does not cover {s} frames')
        x = x + self.pos_space + self.pos_time[:, :s] + self.ego_embed(ego.to(x.dtype))[:, :, None]
        if (anchor_feats is None) != (self.anchor_adapter is None):
            raise ValueError('TokenForecaster: anchor_feats must be given exactly when built with anchor_channels')
        if anchor_feats is not None:
            if anchor_feats.shape[1] < s:
                raise ValueError(f'TokenForecaster: anchor maps for {anchor_feats.shape[1]} frames, need {s}')
            x = x + self.embed_feats(anchor_feats[:, :s], self.anchor_adapter)
        for blk in self.blocks:
            x = blk(x)
        logits = self.head(self.norm(x))                           # [B, S, N, K]
        return logits.transpose(2, 3).reshape(b, s, self.num_codes, *self.token_shape)

    @torch.no_grad()
    def generate(self, ego: torch.Tensor, num_future: int, tokens: torch.Tensor | None = None,
                 context_feats: torch.Tensor | None = None, temperature: float = 0.0,
                 generator: torch.Generator | None = None,
                 anchor_feats: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Autoregressive rollout of ``num_future`` frames after the context.

        Args:
            ego: [B, T + num_future, 4] motion after every frame (context then future).
            tokens / context_feats: the context (as in ``forward``), T frames in all.
            anchor_feats: [B, T + num_future - 1, C, X, Y] (as in ``forward``; all known
                before the rollout: they come from context frames and the poses).
            temperature: 0 takes the most likely code; > 0 samples from
                softmax(logits / temperature) with ``generator`` (deterministic for a seed).
        Returns:
            tokens long [B, H, x, y] and their logits [B, H, K, x, y].
        """
        out_tok, out_logits = [], []
        seq = tokens
        t_ctx = (0 if tokens is None else tokens.shape[1]) + (0 if context_feats is None else context_feats.shape[1])
        for h in range(num_future):
            s = t_ctx + h
            logits = self.forward(seq, ego[:, :s], context_feats, anchor_feats)[:, -1]     # [B, K, x, y]
            if temperature > 0:
                p = torch.softmax(logits / temperature, 1).movedim(1, -1).reshape(-1, self.num_codes)
                nxt = torch.multinomial(p, 1, generator=generator).view(logits.shape[0], *self.token_shape)
            else:
                nxt = logits.argmax(1)
            out_tok.append(nxt)
            out_logits.append(logits)
            seq = nxt[:, None] if seq is None else torch.cat([seq, nxt[:, None]], 1)
        return torch.stack(out_tok, 1), torch.stack(out_logits, 1)
