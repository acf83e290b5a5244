"""Multi-scale deformable sampling (the core of MSDeformAttn, Zhu et al. 2021) with grid_sample.

Replaces mmcv's compiled ``MultiScaleDeformableAttnFunction``: every query
reads each feature level at a few sampled locations by bilinear interpolation
(zero outside the map) and sums them with its attention weights. Locations
are normalised image coordinates in [0, 1] (0 = left/top edge of the image,
1 = right/bottom edge), the ``align_corners=False`` convention, so the same
location addresses the same image point on every level whatever its stride.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def multi_scale_deform_sample(values: Sequence[torch.Tensor], locations: torch.Tensor,
                              weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum of bilinear samples over levels and points.

    Args:
        values: L maps [G, D, h_l, w_l] (G = images x heads, D = channels per head).
        locations: [G, Q, L, P, 2] normalised (x, y) in [0, 1] per query, level, point.
        weights: [G, Q, L, P] attention weights.

    Returns:
        [G, Q, D].
    """
    g, q, n_levels, p, _ = locations.shape
    if len(values) != n_levels:
        raise ValueError(f'{len(values)} value levels for locations with {n_levels} levels')
    grids = 2.0 * locations - 1.0
    out = 0
    for lvl, value in enumerate(values):
        # [G, D, Q, P]: one output "pixel" per (query, point)
        sampled = F.grid_sample(value, grids[:, :, lvl].to(value.dtype), mode='bilinear',
                                padding_mode='zeros', align_corners=False)
        out = out + (sampled * weights[:, None, :, lvl].to(value.dtype)).sum(-1)
    return out.transpose(1, 2)
