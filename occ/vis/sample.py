"""One picture per sample: the camera rig, the labels from above, and the LiDAR sweep from above."""
from __future__ import annotations

import numpy as np

from occ.constants import CAMERA_NAMES, CLASS_NAMES, FREE, OCC_COLORS
from occ.utils.io import atomic_open
from occ.vis.bev import bev_colors, bev_extent


def rig_mosaic(images: dict, cameras=CAMERA_NAMES, width: int = 480) -> np.ndarray:
    """Camera images in rig layout: 3 front cameras on top, 3 back cameras below.

    Args: ``images`` camera name -> RGB uint8 [H, W, 3]; each is resized to ``width``.
    Returns: uint8 [2*h, 3*width, 3].
    """
    import cv2
    tiles = []
    for cam in cameras:
        img = images[cam]
        h = int(round(img.shape[0] * width / img.shape[1]))
        tiles.append(cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA))
    h = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, h - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    return np.concatenate([np.concatenate(tiles[:3], 1), np.concatenate(tiles[3:6], 1)], 0)


def draw_sample(images: dict, semantics: np.ndarray, out_path: str, mask: np.ndarray | None = None,
                points_ego: np.ndarray | None = None, pc_range=(-40, -40, -1, 40, 40, 5.4),
                title: str = '', cameras=CAMERA_NAMES) -> None:
    """Write a PNG: rig mosaic (left), labels from above and LiDAR from above (right).

    Args:
        images: camera name -> RGB uint8 [H, W, 3].
        semantics: uint8 [X, Y, Z] labels; ``mask`` optional [X, Y, Z] (drawn voxels only where 1).
        points_ego: float [P, >=3] LiDAR points in the ego frame, or None.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    mosaic = rig_mosaic(images, cameras)
    fig = plt.figure(figsize=(20, 6.6), dpi=80)
    gs = fig.add_gridspec(1, 3, width_ratios=[mosaic.shape[1] / mosaic.shape[0] * 1.0, 1, 1])
    ax = fig.add_subplot(gs[0])
    ax.imshow(mosaic)
    ax.set_axis_off()
    ax.set_title('cameras (front row: ' + ', '.join(cameras[:3]) + ')', fontsize=9)

    ext = bev_extent(pc_range)
    ax = fig.add_subplot(gs[1])
    ax.imshow(bev_colors(semantics, mask), extent=ext, interpolation='nearest')
    ax.plot([0], [0], marker='^', color='k', markersize=8)
    ax.set_title('labels from above' + (' (camera-visible)' if mask is not None else ''), fontsize=9)
    ax.set_xlabel('-y (m)')
    ax.set_ylabel('x, forward (m)')
    present = [c for c in np.unique(semantics) if c < FREE]
    # Below the map, so it hides nothing.
    ax.legend(handles=[Patch(color=OCC_COLORS[c] / 255.0, label=CLASS_NAMES[c]) for c in present],
              fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.13), ncol=3, frameon=False)

    ax = fig.add_subplot(gs[2])
    if points_ego is not None and len(points_ego):
        p = np.asarray(points_ego)
        keep = (np.abs(p[:, 0]) < pc_range[3]) & (np.abs(p[:, 1]) < pc_range[4])
        p = p[keep]
        ax.scatter(-p[:, 1], p[:, 0], s=0.3, c=p[:, 2], cmap='viridis', vmin=pc_range[2], vmax=pc_range[5])
    ax.plot([0], [0], marker='^', color='r', markersize=8)
    ax.set_xlim(ext[0], ext[1])
    ax.set_ylim(ext[2], ext[3])
    ax.set_aspect('equal')
    ax.set_title('LiDAR from above (colour = height)', fontsize=9)
    ax.set_xlabel('-y (m)')
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_open(out_path, 'wb') as f:
        fig.savefig(f, format='png')
    plt.close(fig)
