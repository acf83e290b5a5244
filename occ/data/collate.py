"""Collate OccDataset samples into the flat batch dict of the batch contract."""
from __future__ import annotations

import numbers

import torch

from occ.registry import FUNCTIONS


@FUNCTIONS.register_module()
def occ_collate(samples: list[dict]) -> dict:
    """List of per-sample dicts -> one flat batch dict.

    Tensors are stacked on a new leading batch axis, strings become lists,
    Python numbers become tensors, nested dicts (``history``, ``neighbors``)
    are collated recursively. Every sample must carry the same keys.
    """
    if not samples:
        raise ValueError('occ_collate: empty batch')
    keys = set(samples[0])
    for i, s in enumerate(samples[1:], 1):
        if set(s) != keys:
            raise ValueError(f'occ_collate: sample {i} has keys {sorted(s)} but sample 0 has {sorted(keys)}')
    out = {}
    for k in samples[0]:
        vals = [s[k] for s in samples]
        v0 = vals[0]
        if isinstance(v0, torch.Tensor):
            shapes = {tuple(v.shape) for v in vals}
            if len(shapes) > 1:
                raise ValueError(f'occ_collate: "{k}" has different shapes across the batch: {sorted(shapes)}')
            out[k] = torch.stack(vals)
        elif isinstance(v0, dict):
            out[k] = occ_collate(vals)
        elif isinstance(v0, str):
            out[k] = list(vals)
        elif isinstance(v0, bool):
            out[k] = torch.tensor(vals, dtype=torch.bool)
        elif isinstance(v0, numbers.Integral):
            out[k] = torch.tensor(vals, dtype=torch.long)
        elif isinstance(v0, numbers.Real):
            out[k] = torch.tensor(vals, dtype=torch.float32)
        else:
            out[k] = list(vals)
    return out
