"""Prediction vs ground truth in one picture: both from above, a 3D view, and where they disagree.

Panels: GT BEV, prediction BEV (Occ3D colours, top-most voxel, ``occ.vis.bev``),
an error map from above, and a 3D scatter of the predicted occupied voxels
(subsampled to stay fast). The error map classifies every evaluated voxel
(inside ``mask_camera`` when the GT has it) as correct, wrong class, false
occupied (predicted, GT free) or missed (GT occupied, predicted free) and
colours each column by its most frequent category.
"""
from __future__ import annotations


import numpy as np

from occ.constants import CLASS_NAMES, FREE, OCC_COLORS
from occ.geometry import OCC3D_RANGE, OccGrid
from occ.utils.io import atomic_save_figure
from occ.vis.bev import bev_colors, bev_extent, to_picture

NONE, CORRECT, WRONG_CLASS, FALSE_OCCUPIED, MISSED = range(5)
ERROR_NAMES = ('correct', 'wrong class', 'false occupied', 'missed')
ERROR_COLORS = np.array([[255, 255, 255], [120, 190, 120], [255, 150, 0], [220, 30, 30],
                         [40, 90, 230]], np.uint8)


def error_categories(gt_sem: np.ndarray, pred_sem: np.ndarray, mask=None) -> np.ndarray:
    """Per-voxel category, uint8 [X, Y, Z]: NONE (free in both or not evaluated), CORRECT,
    WRONG_CLASS, FALSE_OCCUPIED, MISSED. ``mask`` [X, Y, Z] (nonzero = evaluated) or None."""
    g, p = np.asarray(gt_sem), np.asarray(pred_sem)
    if g.shape != p.shape:
        raise ValueError(f'prediction shape {p.shape} != GT shape {g.shape}')
    g_occ, p_occ = g < FREE, p < FREE              # 255 in GT counts as not occupied
    cat = np.full(g.shape, NONE, np.uint8)
    cat[g_occ & p_occ & (g == p)] = CORRECT
    cat[g_occ & p_occ & (g != p)] = WRONG_CLASS
    cat[~g_occ & p_occ] = FALSE_OCCUPIED
    cat[g_occ & ~p_occ] = MISSED
    if mask is not None:
        cat[np.asarray(mask) == 0] = NONE
    return cat


def error_bev(categories: np.ndarray) -> np.ndarray:
    """[X, Y, Z] categories -> [X, Y] the most frequent non-NONE category per column (NONE if empty).
    Ties go to the more serious error (missed > false occupied > wrong class > correct)."""
    counts = np.stack([(categories == c).sum(2) for c in (CORRECT, WRONG_CLASS, FALSE_OCCUPIED, MISSED)], -1)
    # reversed argmax so ties pick the later (more serious) category
    best = 3 - np.argmax(counts[..., ::-1], -1)
    return np.where(counts.sum(-1) > 0, best + 1, NONE).astype(np.uint8)


def _scatter_points(sem: np.ndarray, pc_range, max_points: int, seed: int = 0):
    idx = np.argwhere(sem < FREE)
    if len(idx) > max_points:                      # fixed seed: the same picture every run
        idx = idx[np.random.default_rng(seed).choice(len(idx), max_points, replace=False)]
    xyz = OccGrid.from_shape(pc_range, sem.shape).index_to_points(idx)
    return xyz, OCC_COLORS[sem[tuple(idx.T)]] / 255.0


def draw_prediction_vs_gt(gt: dict, pred_semantics, out_path: str, title: str = '',
                          pc_range=OCC3D_RANGE, max_points_3d: int = 15000) -> str:
    """Write a PNG comparing a prediction with its ground truth; returns ``out_path``.

    Args:
        gt: dict with ``semantics`` uint8 [X, Y, Z] and optionally ``mask_camera`` [X, Y, Z]
            (the error map and the GT/prediction BEVs then show observed voxels only).
        pred_semantics: uint8 [X, Y, Z] on the same grid.
        out_path: PNG path (written atomically).
        title: figure title.
        pc_range: metric range of the grid (axes in metres).
        max_points_3d: voxels drawn in the 3D panel at most (random subsample, fixed seed).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    sem = np.asarray(gt['semantics'])
    pred = np.asarray(pred_semantics)
    if pred.shape != sem.shape:
        raise ValueError(f'{out_path}: prediction grid {pred.shape} != GT grid {sem.shape}')
    mask = gt.get('mask_camera')
    cat = error_categories(sem, pred, mask)
    ext = bev_extent(pc_range)

    fig = plt.figure(figsize=(13, 11))
    panels = [(1, bev_colors(sem, mask), 'ground truth' + (' (camera-visible)' if mask is not None else '')),
              (2, bev_colors(pred, mask), 'prediction' + (' (camera-visible)' if mask is not None else '')),
              (3, to_picture(ERROR_COLORS[error_bev(cat)]), 'errors (column majority)')]
    for pos, img, name in panels:
        ax = fig.add_subplot(2, 2, pos)
        ax.imshow(img, extent=ext, interpolation='nearest')
        ax.set_title(name)
        ax.set_xlabel('-y (m)')
        ax.set_ylabel('x (m)')
    counts = [int((cat == c).sum()) for c in (CORRECT, WRONG_CLASS, FALSE_OCCUPIED, MISSED)]
    fig.axes[2].legend(handles=[Patch(color=ERROR_COLORS[i + 1] / 255.0, label=f'{n}: {c}')
                                for i, (n, c) in enumerate(zip(ERROR_NAMES, counts))],
                       loc='lower left', fontsize=8, title='voxels')

    ax3 = fig.add_subplot(2, 2, 4, projection='3d')
    xyz, rgb = _scatter_points(pred, pc_range, max_points_3d)
    if len(xyz):
        ax3.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], c=rgb, s=1.5, marker='s', depthshade=False)
    ax3.set_xlim(pc_range[0], pc_range[3])
    ax3.set_ylim(pc_range[1], pc_range[4])
    ax3.set_zlim(pc_range[2], pc_range[5])
    ax3.set_box_aspect((pc_range[3] - pc_range[0], pc_range[4] - pc_range[1],
                        3 * (pc_range[5] - pc_range[2])))
    ax3.view_init(elev=35, azim=-135)
    ax3.set_title(f'prediction, 3D ({len(xyz)} voxels shown)')
    present = sorted(set(np.unique(sem).tolist()) | set(np.unique(pred).tolist()))
    ax3.legend(handles=[Patch(color=OCC_COLORS[c] / 255.0, label=CLASS_NAMES[c])
                        for c in present if c < FREE], loc='upper left', fontsize=6, ncol=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_save_figure(fig, out_path, dpi=80)
    return out_path
