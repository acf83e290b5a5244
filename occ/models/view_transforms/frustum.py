"""Camera frustum geometry for lift-splat: pixels x depth bins -> ego points.

Conventions (docs/ARCHITECTURE.md):

- Pixel coordinates (u, v) have pixel centres at integers: pixel (row i, col j)
  is at (u, v) = (j, i). A feature cell of a stride-``s`` map covers pixels
  [j*s, (j+1)*s) so its centre is at ``j*s + (s-1)/2``.
- Camera frame: x right, y down, z forward (depth); ``intrinsics`` K maps a
  camera point to ``(u*d, v*d, d) = K @ (x, y, z)`` with ``d = z``.
- ``img_aug`` is the 2-D affine image augmentation (resize, crop, flip,
  rotation) applied after projection: ``(u', v') = A @ (u, v) + t`` with
  ``A = img_aug[:2, :2]``. Two 4x4 layouts are in use and both are accepted:
  the homogeneous-pixel one (``t`` in column 2, so that
  ``img_aug @ pad(K) @ ego2cam`` projects an ego point, as in BEVFormer) and
  the BEVDet ``post_rot``/``post_tran`` one acting on (u, v, d, 1) (``t`` in
  column 3). Since an image augmentation never moves a pixel by its depth,
  the column-2 entry of the 4x4 layout and the column-3 entry of the other
  are zero, so ``t = img_aug[:2, 2] + img_aug[:2, 3]`` reads either. A 3x3
  ``img_aug`` is the homogeneous-pixel form.
- ``bev_aug`` [4, 4] maps original ego coordinates to augmented ego
  coordinates (labels are resampled the same way), so a camera lives at
  ``bev_aug @ cam2ego`` in the augmented frame.

Every function is a few lines of matrix algebra, checkable on paper; the
tests project ego points into the image and lift them back.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

__all__ = ['depth_bin_centers', 'create_frustum', 'img_aug_affine', 'undo_img_aug', 'unproject',
           'transform_points', 'frustum_to_ego', 'project_to_image']


def depth_bin_centers(depth_bins: Sequence[float]) -> torch.Tensor:
    """Centres [D] of the bins ``[d_min + k*step, d_min + (k+1)*step)``, k < D = (d_max - d_min) / step."""
    d_min, d_max, step = (float(x) for x in depth_bins)
    num = int(round((d_max - d_min) / step))
    if num <= 0 or abs(num * step - (d_max - d_min)) > 1e-6 * max(1.0, d_max):
        raise ValueError(f'depth_bins {tuple(depth_bins)}: (max - min) must be a positive multiple of step')
    return d_min + (torch.arange(num, dtype=torch.float32) + 0.5) * step


def create_frustum(img_size: Sequence[int], downsample: int, depth_bins: Sequence[float]) -> torch.Tensor:
    """(u, v, d) of every (depth bin, feature cell) of a stride-``downsample`` map.

    Args:
        img_size: (H, W) of the (augmented) network input, divisible by ``downsample``.
        downsample: feature-map stride.
        depth_bins: (d_min, d_max, step) in metres.

    Returns:
        float [D, h, w, 3] with h = H / downsample, w = W / downsample.
    """
    H, W = (int(s) for s in img_size)
    s = int(downsample)
    if H % s or W % s:
        raise ValueError(f'image size {H}x{W} is not divisible by the feature stride {s}')
    d = depth_bin_centers(depth_bins)
    v = torch.arange(H // s, dtype=torch.float32) * s + (s - 1) / 2
    u = torch.arange(W // s, dtype=torch.float32) * s + (s - 1) / 2
    dd, vv, uu = torch.meshgrid(d, v, u, indexing='ij')
    return torch.stack([uu, vv, dd], -1)


def img_aug_affine(img_aug: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``img_aug`` [..., 3|4, 3|4] into A [..., 2, 2] and t [..., 2] (see module docstring)."""
    A = img_aug[..., :2, :2]
    t = img_aug[..., :2, 2]
    if img_aug.shape[-1] == 4:
        t = t + img_aug[..., :2, 3]
    return A, t


def undo_img_aug(uv: torch.Tensor, img_aug: torch.Tensor) -> torch.Tensor:
    """Augmented pixels [..., P, 2] -> pixels of the original image: A^-1 (uv - t). img_aug [..., 4, 4]."""
    A, t = img_aug_affine(img_aug)
    return (uv - t.unsqueeze(-2)) @ torch.linalg.inv(A).transpose(-1, -2)


def unproject(uvd: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Pixels with depth [..., P, 3] (u, v, d) -> camera points [..., P, 3]: K^-1 (u d, v d, d)."""
    uvd_h = torch.cat([uvd[..., :2] * uvd[..., 2:3], uvd[..., 2:3]], -1)
    return uvd_h @ torch.linalg.inv(intrinsics).transpose(-1, -2)


def transform_points(pts: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Apply a 4x4 rigid/affine transform [..., 4, 4] to points [..., P, 3]."""
    return pts @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def frustum_to_ego(frustum: torch.Tensor, intrinsics: torch.Tensor, cam2ego: torch.Tensor,
                   img_aug: torch.Tensor, bev_aug: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Lift frustum points of the augmented image to the (BEV-augmented) ego frame.

    Args:
        frustum: [D, h, w, 3] (u, v, d) in augmented-image pixels, from :func:`create_frustum`.
        intrinsics: [B, N, 3, 3]; cam2ego: [B, N, 4, 4]; img_aug: [B, N, 4, 4] (or 3x3);
        bev_aug: [B, 4, 4] or None (identity).

    Returns:
        [B, N, D, h, w, 3] ego (x, y, z) in metres.
    """
    B, N = intrinsics.shape[:2]
    D, h, w, _ = frustum.shape
    pts = frustum.to(intrinsics).reshape(1, 1, -1, 3).expand(B, N, -1, 3)
    uv = undo_img_aug(pts[..., :2], img_aug.to(intrinsics))
    cam = unproject(torch.cat([uv, pts[..., 2:3]], -1), intrinsics)
    ego = transform_points(cam, cam2ego.to(intrinsics))
    if bev_aug is not None:
        ego = transform_points(ego, bev_aug.to(intrinsics).unsqueeze(1))
    return ego.reshape(B, N, D, h, w, 3)


def project_to_image(ego: torch.Tensor, intrinsics: torch.Tensor, cam2ego: torch.Tensor,
                     img_aug: torch.Tensor, bev_aug: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Inverse of the lift: (BEV-augmented) ego points [B, N, P, 3] -> (u', v', d) [B, N, P, 3].

    ``d`` is the camera depth; points behind the camera get d <= 0 (caller masks them).
    """
    if bev_aug is not None:
        ego = transform_points(ego, torch.linalg.inv(bev_aug).unsqueeze(1))
    cam = transform_points(ego, torch.linalg.inv(cam2ego))
    uvd_h = cam @ intrinsics.transpose(-1, -2)
    d = uvd_h[..., 2:3]
    uv = uvd_h[..., :2] / d
    A, t = img_aug_affine(img_aug)
    uv = uv @ A.transpose(-1, -2) + t.unsqueeze(-2)
    return torch.cat([uv, d], -1)
