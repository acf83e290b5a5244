"""Groups of frames in a batch: ``history`` (T past frames) and ``neighbors`` (K agents).

A group is a dict of tensors with a leading [B, K] (``valid`` bool [B, K]
says which rows exist). Encoders run on rows, not groups: only the valid rows
are flattened, encoded, and scattered back; invalid rows stay zero and cost
nothing.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch


def flatten_rows(group: dict, rows: torch.Tensor, lead: tuple) -> dict:
    """Rows ``rows`` (indices into the flattened B*K) of every [B, K, ...] tensor in ``group`` -> [M, ...].

    ``valid`` and entries without the leading ``lead`` = (B, K) shape are left out.
    """
    out = {}
    for k, v in group.items():
        if k != 'valid' and isinstance(v, torch.Tensor) and v.dim() >= 2 and tuple(v.shape[:2]) == tuple(lead):
            out[k] = v.reshape(-1, *v.shape[2:])[rows]
    return out


def encode_valid_rows(group: dict, valid: torch.Tensor, encode: Callable,
                      like: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
    """Encode only the valid rows of a [B, K, ...] group.

    Args:
        group: dict of [B, K, ...] tensors (one frame's inputs per row).
        valid: bool [B, K]: rows to encode.
        encode: callable(dict of [M, ...] tensors) -> [M, ...] tensor (or a dict with ``bev``).
        like: [*, ...] tensor giving the per-row output shape and dtype, needed
            to return zeros when no row is valid (and used for the output buffer).
    Returns:
        [B, K, ...] encodings, zeros in invalid rows; None if no row is valid and ``like`` is None.
    """
    b, k = valid.shape
    rows = valid.reshape(-1).bool().nonzero().squeeze(1)
    if not rows.numel():
        return None if like is None else like.new_zeros(b, k, *like.shape[1:])
    enc = encode(flatten_rows(group, rows, (b, k)))
    enc = enc['bev'] if isinstance(enc, dict) else enc
    out = (like if like is not None else enc).new_zeros(b * k, *enc.shape[1:])
    return out.index_copy(0, rows, enc).view(b, k, *enc.shape[1:])
