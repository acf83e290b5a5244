"""BEVAligner: past BEV maps warped into the current ego frame from poses and BEV augmentation.

A BEV map [B, C, X, Y] covers the grid's x/y range in its frame's *augmented*
ego frame (``bev_aug`` maps original ego coordinates to augmented ones). The
geometry lives in ``occ.geometry``: ``relative_pose(cur, past, aug_cur,
aug_past)`` is the current -> past map and ``warp_bev`` pulls every current
cell centre from the past map (bilinear, ``align_corners=False`` centres).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from occ.geometry import relative_pose, warp_bev


class BEVAligner(nn.Module):
    """Warp past BEV maps into the current ego frame from poses and BEV augmentation.

    Args:
        pc_range: grid range (x_min, y_min, z_min, x_max, y_max, z_max), metres.
    """

    def __init__(self, pc_range):
        super().__init__()
        self.pc_range = tuple(float(v) for v in pc_range)

    def forward(self, feat: torch.Tensor, ego2global_cur: torch.Tensor, ego2global_past: torch.Tensor,
                bev_aug_cur: torch.Tensor | None = None, bev_aug_past: torch.Tensor | None = None,
                past_valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            feat: [B, C, X, Y] past features.
            ego2global_cur, ego2global_past, bev_aug_cur, bev_aug_past: [B, 4, 4].
            past_valid: optional bool/float [B] (the past frame exists) or
                [B, 1, X, Y] (per-cell validity of the past map).
        Returns:
            warped [B, C, X, Y], valid [B, 1, X, Y] float.
        """
        m = relative_pose(ego2global_cur, ego2global_past, bev_aug_cur, bev_aug_past)
        if past_valid is not None and past_valid.dim() == 4:
            # Carry the past map's own validity through the same warp.
            warped, valid = warp_bev(torch.cat([feat, past_valid.to(feat.dtype)], 1), m, self.pc_range)
            carried = (warped[:, -1:] > 0.5).to(feat.dtype)
            valid = valid * carried
            return warped[:, :-1] * valid, valid
        warped, valid = warp_bev(feat, m, self.pc_range)
        if past_valid is not None:
            v = past_valid.to(feat.dtype).view(-1, 1, 1, 1)
            warped, valid = warped * v, valid * v
        return warped, valid
