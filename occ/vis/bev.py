"""Top-down (BEV) pictures of occupancy grids and point clouds.

Picture orientation everywhere: ego x (forward) points up, ego y (left) points
left, i.e. picture row 0 is the largest x and picture column 0 the largest y.
"""
from __future__ import annotations

import numpy as np

from occ.constants import FREE, IGNORE_INDEX, OCC_COLORS

# Slate: apart from every Occ3D colour, including the near-white 'manmade' and black 'others'.
BACKGROUND = (70, 80, 100)


def to_picture(a: np.ndarray) -> np.ndarray:
    """Grid-indexed [X, Y, ...] -> picture-indexed (x up, y left)."""
    return np.ascontiguousarray(a[::-1, ::-1])


def top_class(semantics: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class and z index of the top-most drawn voxel per column.

    A voxel is drawn when it is not free, not 255, and (if ``mask`` is given)
    observed. Args: ``semantics`` uint8 [X, Y, Z], ``mask`` [X, Y, Z] or None.
    Returns: (uint8 [X, Y] class, FREE where nothing is drawn; int64 [X, Y] z, -1 there).
    """
    sem = np.asarray(semantics)
    if sem.ndim != 3:
        raise ValueError(f'top_class: expected semantics [X, Y, Z], got shape {sem.shape}')
    drawn = (sem != FREE) & (sem != IGNORE_INDEX)
    if mask is not None:
        drawn &= np.asarray(mask).astype(bool)
    z = sem.shape[2]
    # Highest z with a drawn voxel: argmax over the reversed z axis finds the first True from the top.
    top = z - 1 - np.argmax(drawn[:, :, ::-1], axis=2)
    any_drawn = drawn.any(2)
    cls = np.take_along_axis(sem, top[..., None], 2)[..., 0]
    return np.where(any_drawn, cls, FREE).astype(np.uint8), np.where(any_drawn, top, -1)


def bev_colors(semantics: np.ndarray, mask: np.ndarray | None = None, shade: bool = True,
               background=BACKGROUND) -> np.ndarray:
    """Top-down colour picture of a label grid: uint8 [X, Y, 3], x forward pointing up.

    Each column shows the Occ3D colour (occ.constants.OCC_COLORS) of its top-most
    non-free voxel; with ``shade`` lower voxels are drawn darker so height reads.
    Columns with nothing drawn get ``background``.
    """
    cls, top = top_class(semantics, mask)
    rgb = OCC_COLORS[np.minimum(cls, FREE)].astype(np.float32)
    if shade:
        z = semantics.shape[2]
        rgb *= (0.55 + 0.45 * np.clip(top, 0, None) / max(z - 1, 1))[..., None]
    rgb[cls == FREE] = background
    return to_picture(np.clip(rgb, 0, 255).astype(np.uint8))


def bev_extent(pc_range) -> tuple[float, float, float, float]:
    """matplotlib ``extent`` (left, right, bottom, top) of a picture from ``to_picture``, in metres
    with horizontal axis = -y (so left of the picture is +y) and vertical axis = x."""
    x0, y0, _, x1, y1, _ = pc_range
    return (-y1, -y0, x0, x1)
