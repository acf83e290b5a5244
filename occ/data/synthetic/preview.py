"""A picture of one synthetic keyframe: the 6 cameras and a bird's-eye view of the Occ3D labels."""
from __future__ import annotations

import cv2
import numpy as np

from occ.constants import FREE, OCC_COLORS
from occ.geometry import OccGrid

from .frame import render_frame
from .world import build_world


def bev_image(semantics: np.ndarray, mask_camera: np.ndarray | None = None, scale: int = 4) -> np.ndarray:
    """RGB uint8 top view [X*scale, Y*scale, 3]: colour of the highest occupied voxel per column.

    Up is +x (forward), left is +y (left), as seen from above. Columns outside
    ``mask_camera`` (when given) are dimmed.
    """
    occ = semantics != FREE
    top = occ.shape[2] - 1 - np.argmax(occ[:, :, ::-1], axis=2)
    cls = np.take_along_axis(semantics, top[..., None], 2)[..., 0]
    img = np.where(occ.any(2)[..., None], OCC_COLORS[cls], 255).astype(np.float32)
    if mask_camera is not None:
        seen = mask_camera.any(2)
        img[~seen] = img[~seen] * 0.55 + 40
    img = img[::-1, ::-1]                      # row 0 = far forward, column 0 = far left
    img = np.repeat(np.repeat(img, scale, 0), scale, 1).astype(np.uint8)
    c = (img.shape[0] // 2, img.shape[1] // 2)
    cv2.rectangle(img, (c[1] - 3 * scale // 2, c[0] - 3 * scale), (c[1] + 3 * scale // 2, c[0] + scale), (0, 0, 0), -1)
    return img


def render_preview(path: str | None = None, seed: int = 0, index: int = 0, frame: int = 12, frames: int = 40,
                   image_size=(144, 256), voxel: float = 0.4) -> np.ndarray:
    """Render keyframe ``frame`` of world ``index`` and compose 6 cameras + BEV labels (RGB uint8).

    ``frames`` must match the generation (the world's traffic depends on the scene length).
    Writes a PNG to ``path`` when given. Camera layout follows the nuScenes
    viewer: front row FRONT_LEFT, FRONT, FRONT_RIGHT; back row BACK_RIGHT, BACK, BACK_LEFT.
    """
    from occ.utils.io import atomic_write_bytes
    world = build_world(seed, index, frames)
    fr = render_frame(world, frame, 0, image_size, OccGrid.from_voxel(voxel))
    cams = {c['name']: c['rgb'] for c in fr['cams']}
    front = np.concatenate([cams['CAM_FRONT_LEFT'], cams['CAM_FRONT'], cams['CAM_FRONT_RIGHT']], 1)
    back = np.concatenate([cams['CAM_BACK_RIGHT'], cams['CAM_BACK'], cams['CAM_BACK_LEFT']], 1)
    cam_grid = np.concatenate([front, back], 0)
    lab = fr['labels']
    bev = bev_image(lab['semantics'], lab['mask_camera'], scale=1)
    side = cam_grid.shape[0]
    bev = cv2.resize(bev, (side, side), interpolation=cv2.INTER_NEAREST)
    img = np.concatenate([cam_grid, np.full((side, 8, 3), 255, np.uint8), bev], 1)
    if path is not None:
        ok, buf = cv2.imencode('.png', img[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise RuntimeError(f'{path}: could not encode the preview PNG')
        atomic_write_bytes(path, buf.tobytes())
    return img
