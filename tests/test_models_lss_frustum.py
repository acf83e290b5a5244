"""Frustum geometry: project known ego points, lift them back at their true depth."""
import math

import pytest
import torch

from occ.models.view_transforms.frustum import (create_frustum, depth_bin_centers, frustum_to_ego,
                                                project_to_image, undo_img_aug)


def yaw_matrix(yaw, t=(0.0, 0.0, 0.0)):
    c, s = math.cos(yaw), math.sin(yaw)
    T = torch.eye(4, dtype=torch.float64)
    T[:2, :2] = torch.tensor([[c, -s], [s, c]])
    T[:3, 3] = torch.tensor(t)
    return T


def camera_rig(N=3):
    """Cameras at 1.5 m, looking outward at yaws 0, 120, 240 deg (camera x right, y down, z forward)."""
    mats = []
    for i in range(N):
        yaw = 2 * math.pi * i / N
        R = torch.tensor([[math.sin(yaw), 0.0, math.cos(yaw)],
                          [-math.cos(yaw), 0.0, math.sin(yaw)],
                          [0.0, -1.0, 0.0]], dtype=torch.float64)
        T = torch.eye(4, dtype=torch.float64)
        T[:3, :3] = R
        T[:3, 3] = torch.tensor([0.5 * math.cos(yaw), 0.2, 1.5])
        mats.append(T)
    return torch.stack(mats)[None]  # [1, N, 4, 4]


def intrinsics(N=3):
    K = torch.tensor([[100.0, 0.0, 88.0], [0.0, 110.0, 32.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return K.expand(1, N, 3, 3)


def img_aug_matrix(scale, flip, rot_deg, crop, W):
    """BEVDet-style 4x4 (translation in column 3): resize, crop, horizontal flip, rotation about a point."""
    A = torch.eye(2, dtype=torch.float64) * scale
    t = -torch.tensor(crop, dtype=torch.float64)
    if flip:
        F = torch.tensor([[-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
        A, t = F @ A, F @ t + torch.tensor([W - 1.0, 0.0], dtype=torch.float64)
    r = math.radians(rot_deg)
    R = torch.tensor([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]], dtype=torch.float64)
    c = torch.tensor([W / 2, 30.0], dtype=torch.float64)
    A, t = R @ A, R @ (t - c) + c
    M = torch.eye(4, dtype=torch.float64)
    M[:2, :2], M[:2, 3] = A, t
    return M


def test_depth_bins_and_frustum_layout():
    d = depth_bin_centers((1.0, 45.0, 1.0))
    assert d.shape == (44,) and d[0] == 1.5 and d[-1] == 44.5
    f = create_frustum((64, 176), 16, (2.0, 10.0, 2.0))
    assert f.shape == (4, 4, 11, 3)
    # cell (row 1, col 2) of a stride-16 map is centred on pixel (u, v) = (2*16 + 7.5, 16 + 7.5)
    torch.testing.assert_close(f[3, 1, 2], torch.tensor([39.5, 23.5, 9.0]))
    with pytest.raises(ValueError, match='divisible'):
        create_frustum((60, 176), 16, (1.0, 45.0, 1.0))
    with pytest.raises(ValueError, match='multiple of step'):
        depth_bin_centers((1.0, 45.5, 1.0))


@pytest.mark.parametrize('aug', ['none', 'img', 'img+bev', 'homogeneous_layout'])
def test_project_then_lift_returns_the_same_ego_point(aug):
    g = torch.Generator().manual_seed(0)
    N = 3
    K, cam2ego = intrinsics(N), camera_rig(N)
    img_aug = torch.eye(4, dtype=torch.float64).expand(1, N, 4, 4).clone()
    bev_aug = None
    if aug != 'none':
        img_aug[0, 0] = img_aug_matrix(0.8, True, 5.0, (3.0, 4.0), 176)
        img_aug[0, 1] = img_aug_matrix(1.2, False, -3.0, (10.0, 2.0), 176)
        img_aug[0, 2] = img_aug_matrix(0.5, True, 0.0, (0.0, 0.0), 176)
    if aug == 'homogeneous_layout':
        # the same maps written with the translation in column 2 (img_aug @ pad(K) convention)
        img_aug[..., :2, 2] = img_aug[..., :2, 3]
        img_aug[..., :2, 3] = 0
    if aug == 'img+bev':
        bev_aug = yaw_matrix(0.3, (1.0, -2.0, 0.1))[None]
        bev_aug[0, 1, :] *= -1  # plus a y flip
    # ego points in front of each camera: random pixel + depth in the original image
    P = 20
    uv = torch.rand(1, N, P, 2, generator=g, dtype=torch.float64) * torch.tensor([176.0, 64.0], dtype=torch.float64)
    depth = 1 + 40 * torch.rand(1, N, P, 1, generator=g, dtype=torch.float64)
    cam = torch.cat([uv * depth, depth], -1) @ torch.linalg.inv(K).transpose(-1, -2)
    ego = cam @ cam2ego[..., :3, :3].transpose(-1, -2) + cam2ego[..., None, :3, 3]
    if bev_aug is not None:
        ego = ego @ bev_aug[:, None, :3, :3].transpose(-1, -2) + bev_aug[:, None, None, :3, 3]
    uvd = project_to_image(ego, K, cam2ego, img_aug, bev_aug)
    torch.testing.assert_close(uvd[..., 2:], depth)
    # the augmented pixel undone by img_aug is the original pixel
    torch.testing.assert_close(undo_img_aug(uvd[..., :2], img_aug), uv)
    # lifting each projected pixel at its true depth gives the ego point back
    for n in range(N):
        for p in range(P):
            fr = uvd[0, n, p].view(1, 1, 1, 3)
            lifted = frustum_to_ego(fr, K[:, n:n + 1], cam2ego[:, n:n + 1], img_aug[:, n:n + 1], bev_aug)
            torch.testing.assert_close(lifted.view(3), ego[0, n, p])


def test_lifted_frustum_on_paper():
    """A camera at the origin looking along ego x: pixel at the principal point, depth 10 -> (10, 0, 0)."""
    K = torch.tensor([[[[50.0, 0.0, 7.5], [0.0, 50.0, 7.5], [0.0, 0.0, 1.0]]]])
    cam2ego = torch.eye(4)
    cam2ego[:3, :3] = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    f = create_frustum((16, 16), 16, (9.5, 10.5, 1.0))   # one cell centred at (7.5, 7.5), depth 10
    out = frustum_to_ego(f, K, cam2ego[None, None], torch.eye(4)[None, None], None)
    torch.testing.assert_close(out.view(3), torch.tensor([10.0, 0.0, 0.0]))
    # a 2x downscale of the image (img_aug) keeps the ego point when the frustum is in the downscaled image
    aug = torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0]))
    f2 = f.clone()
    f2[..., :2] = 3.75
    out2 = frustum_to_ego(f2, K, cam2ego[None, None], aug[None, None], None)
    torch.testing.assert_close(out2.view(3), torch.tensor([10.0, 0.0, 0.0]))
    # a BEV rotation by 90 deg moves the point to (0, 10, 0)
    out3 = frustum_to_ego(f, K, cam2ego[None, None], torch.eye(4)[None, None], yaw_matrix(math.pi / 2).float()[None])
    torch.testing.assert_close(out3.view(3), torch.tensor([0.0, 10.0, 0.0]), atol=1e-5, rtol=0)
