"""Reference pillars of BEV queries and their projection into the cameras.

Each BEV cell gets a pillar of ``num_z`` points at evenly spaced heights in
the grid's z range (BEVFormer's "3D reference points"). Points live in the
(BEV-augmented) ego frame of the labels and are projected with
``occ.models.view_transforms.frustum.project_to_image`` (the lift-splat
convention, so both view transforms agree on geometry).
"""
from __future__ import annotations

import torch

from occ.geometry import OccGrid

from ..frustum import project_to_image


def pillar_points(pc_range, bev_shape, num_z: int, device=None) -> torch.Tensor:
    """Ego points of the BEV pillars.

    Args:
        pc_range: (x_min, y_min, z_min, x_max, y_max, z_max) metres.
        bev_shape: (Xq, Yq) BEV query grid over the x/y range.
        num_z: points per pillar, at the centres of num_z equal z slices.

    Returns:
        [Xq * Yq, num_z, 3] (x, y, z); query q = ix * Yq + iy.
    """
    nx, ny = bev_shape
    grid = OccGrid.from_shape(pc_range, (nx, ny, num_z))        # the cells of the query pillars
    return grid.centers_torch(device).reshape(nx * ny, num_z, 3)


def project_pillars(points: torch.Tensor, batch: dict, img_hw, min_depth: float = 1e-3):
    """Project pillar points into every camera.

    Args:
        points: [Q, Z, 3] ego points (augmented ego frame).
        batch: needs ``intrinsics`` [B, N, 3, 3], ``cam2ego`` [B, N, 4, 4], ``img_aug``
            [B, N, 4, 4] (or 3x3); optional ``bev_aug`` [B, 4, 4].
        img_hw: (H, W) of the network input (the augmented image).
        min_depth: points closer than this in front of the camera are invalid.

    Returns:
        loc [B, N, Q, Z, 2] normalised image coordinates (x = (u + 0.5) / W,
        y = (v + 0.5) / H, pixel centres at integer u, v), and
        valid [B, N, Q, Z] bool (in front of the camera and inside the image).
    """
    intr = batch['intrinsics'].float()
    b, n = intr.shape[:2]
    q, z, _ = points.shape
    pts = points.to(intr).reshape(1, 1, q * z, 3).expand(b, n, q * z, 3)
    bev_aug = batch.get('bev_aug')
    uvd = project_to_image(pts, intr, batch['cam2ego'].float(), batch['img_aug'].float(),
                           None if bev_aug is None else bev_aug.float())
    h, w = (float(s) for s in img_hw)
    depth = uvd[..., 2]
    front = depth > min_depth
    # behind the camera the division flips signs: park those points far outside
    uv = torch.where(front[..., None], uvd[..., :2], torch.full_like(uvd[..., :2], -1e4))
    loc = torch.stack([(uv[..., 0] + 0.5) / w, (uv[..., 1] + 0.5) / h], -1)
    inside = (loc > 0).all(-1) & (loc < 1).all(-1)
    return loc.reshape(b, n, q, z, 2), (front & inside).reshape(b, n, q, z)
