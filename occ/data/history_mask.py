"""History visibility: voxels a camera sees now or saw in an aligned past input frame.

Temporal memory carries the past BEV into the current ego frame by ego motion
(``history.ego2global``); the labels it can help with are those some past
frame saw. This mask is the union of the current ``mask_camera`` and every
past frame's ``mask_camera`` warped the same way (nearest voxel,
``occ.geometry.warp_labels``): past ego -> current (augmented) ego is
``bev_aug @ inv(ego2global) @ past.ego2global``. A voxel whose centre comes
from outside a past grid was not seen by that frame.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from occ.geometry import OccGrid, warp_labels


def history_visibility_mask(mask_camera: np.ndarray, past_masks: Sequence[np.ndarray],
                            past2current: Sequence[np.ndarray], grid) -> np.ndarray:
    """uint8 [X, Y, Z]: 1 where the current or any past camera mask (warped here) is set.

    Args:
        mask_camera: uint8/bool [X, Y, Z] current camera visibility (current augmented frame).
        past_masks: T arrays uint8/bool [X, Y, Z], each in its own frame's ego coordinates.
        past2current: T float [4, 4] maps past ego coordinates -> current (augmented) ego.
        grid: the label grid (``pc_range``, ``voxel_size``) of every mask.
    """
    grid = OccGrid(tuple(grid.pc_range), grid.voxel_size)
    if len(past_masks) != len(past2current):
        raise ValueError(f'history_visibility_mask: {len(past_masks)} past masks but '
                         f'{len(past2current)} poses')
    out = np.asarray(mask_camera) != 0
    for mask, p2c in zip(past_masks, past2current):
        cur2past = np.linalg.inv(np.asarray(p2c, np.float64))
        out |= warp_labels((np.asarray(mask) != 0).view(np.uint8), cur2past, grid, fill=0) != 0
    return out.view(np.uint8)
