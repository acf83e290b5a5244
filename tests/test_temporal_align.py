"""Ego-motion alignment of BEV maps (occ.geometry.warp_bev and occ.models.temporal.BEVAligner)."""
import math

import numpy as np
import pytest
import torch

from occ.geometry import CPU_GRID, OccGrid, relative_pose, warp_bev
from occ.models.temporal import BEVAligner

PC = (-40.0, -40.0, -1.0, 40.0, 40.0, 5.4)


def pose(x, y, yaw, z=0.0):
    c, s = math.cos(yaw), math.sin(yaw)
    m = torch.eye(4)
    m[:2, :2] = torch.tensor([[c, -s], [s, c]])
    m[:3, 3] = torch.tensor([x, y, z])
    return m[None]


def ref_warp(feat, ego_cur, ego_past, aug_cur, aug_past, pc, voxel):
    """Slow reference: per cell, map the centre by 4x4 matrices in float64 and
    interpolate bilinearly by hand (clamped to the map inside its extent)."""
    f = feat[0].double().numpy()
    c, nx, ny = f.shape
    m = (np.asarray(aug_past[0], np.float64) @ np.linalg.inv(np.asarray(ego_past[0], np.float64))
         @ np.asarray(ego_cur[0], np.float64) @ np.linalg.inv(np.asarray(aug_cur[0], np.float64)))
    out = np.zeros_like(f)
    valid = np.zeros((nx, ny))
    for i in range(nx):
        for j in range(ny):
            p = m @ np.array([pc[0] + (i + 0.5) * voxel, pc[1] + (j + 0.5) * voxel, 0.0, 1.0])
            if not (pc[0] <= p[0] <= pc[3] and pc[1] <= p[1] <= pc[4]):
                continue
            valid[i, j] = 1
            # continuous index of the point, cell centres at integers
            fi = min(max((p[0] - pc[0]) / voxel - 0.5, 0), nx - 1)
            fj = min(max((p[1] - pc[1]) / voxel - 0.5, 0), ny - 1)
            i0, j0 = int(math.floor(fi)), int(math.floor(fj))
            i1, j1 = min(i0 + 1, nx - 1), min(j0 + 1, ny - 1)
            a, b = fi - i0, fj - j0
            out[:, i, j] = ((1 - a) * (1 - b) * f[:, i0, j0] + a * (1 - b) * f[:, i1, j0]
                            + (1 - a) * b * f[:, i0, j1] + a * b * f[:, i1, j1])
    return out, valid


@pytest.mark.parametrize('shift', [(1, 0), (0, 1), (-2, 3), (3, -1)])
def test_whole_cell_translation_is_a_shift_with_invalid_border(shift):
    torch.manual_seed(0)
    n, voxel = 10, 8.0
    feat = torch.randn(1, 3, n, n)
    dx, dy = shift
    # ego moved forward by dx cells and left by dy cells, far from the global origin
    cur, past = pose(1832.0 + dx * voxel, 907.0 + dy * voxel, 0.0), pose(1832.0, 907.0, 0.0)
    warped, valid = warp_bev(feat, relative_pose(cur, past), PC)
    # current cell (i, j) sits where past cell (i + dx, j + dy) was
    expect = torch.roll(feat, shifts=(-dx, -dy), dims=(2, 3))
    mask = torch.zeros(1, 1, n, n)
    mask[..., max(0, -dx):n - max(0, dx), max(0, -dy):n - max(0, dy)] = 1
    assert torch.equal(valid, mask)
    assert torch.allclose(warped, expect * mask, atol=1e-5)
    assert (warped[mask.expand_as(warped) == 0] == 0).all()


def test_rotation_by_90_degrees_is_rot90():
    torch.manual_seed(1)
    feat = torch.randn(2, 4, 12, 12)
    cur = pose(50.0, -20.0, math.pi / 2 + 0.3).expand(2, 4, 4)
    past = pose(50.0, -20.0, 0.3).expand(2, 4, 4)
    warped, valid = warp_bev(feat, relative_pose(cur, past), PC)
    # The ego turned left: the current forward axis is the past left axis, so
    # current (x, y) was at past (-y, x): warped[i, j] = feat[n-1-j, i] = rot90 clockwise.
    assert torch.allclose(warped, torch.rot90(feat, -1, (2, 3)), atol=1e-5)
    assert valid.min() == 1
    n = 12
    assert torch.allclose(warped[0, :, 2, 5], feat[0, :, n - 1 - 5, 2], atol=1e-5)


def test_matches_slow_reference_for_a_generic_motion_with_bev_aug():
    torch.manual_seed(2)
    n = 16
    voxel = 80.0 / n
    feat = torch.randn(1, 2, n, n)
    cur, past = pose(713.3, -402.1, 0.41), pose(709.0, -405.5, 0.2)
    flip = torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0]))[None]    # BEV y-flip
    rot = pose(0.0, 0.0, -0.15)                                      # BEV rotation
    warped, valid = warp_bev(feat, relative_pose(cur, past, flip, rot), PC)
    ref, ref_valid = ref_warp(feat, cur, past, flip, rot, PC, voxel)
    assert np.array_equal(valid[0, 0].numpy(), ref_valid)
    assert 0 < ref_valid.sum() < n * n
    np.testing.assert_allclose(warped[0].double().numpy(), ref * ref_valid, atol=1e-4)


def test_bev_aug_commutes_with_warp():
    """Augmenting both frames then warping == warping then augmenting the result."""
    torch.manual_seed(3)
    feat = torch.randn(1, 3, 10, 10)
    cur, past = pose(16.0, 8.0, 0.0), pose(0.0, 0.0, 0.0)
    flip_y = torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0]))[None]
    plain, v_plain = warp_bev(feat, relative_pose(cur, past), PC)
    aug, v_aug = warp_bev(torch.flip(feat, (3,)), relative_pose(cur, past, flip_y, flip_y), PC)
    assert torch.allclose(aug, torch.flip(plain, (3,)), atol=1e-5)
    assert torch.equal(v_aug, torch.flip(v_plain, (3,)))


def test_warp_and_back_recovers_map_inside_valid_region():
    # Bilinear interpolation is exact for affine fields, so a warp there and
    # back must give the field back wherever both warps read inside the map
    # (away from the clamped half-cell border).
    n = 20
    g = OccGrid(PC, 80.0 / n)
    xy = torch.from_numpy(g.centers()[:, :, 0, :2])                  # [X, Y, 2]
    feat = torch.stack([0.3 * xy[..., 0] - 0.1 * xy[..., 1] + 2, xy[..., 1] * 0.05])[None]
    a, b = pose(100.0, 50.0, 0.35), pose(103.7, 48.2, 0.1)
    half = 80.0 / n / 2

    def in_hull(src2dst):
        # cells whose sample point lies between the outermost cell centres,
        # where bilinear interpolation (not the border clamp) is used
        m = relative_pose(src2dst[0], src2dst[1])[0]
        p = xy @ m[:2, :2].T + m[:2, 3]
        return ((p >= -40 + half) & (p <= 40 - half)).all(-1).float()[None, None]

    there, _ = warp_bev(feat, relative_pose(a, b), PC)
    back, _ = warp_bev(there, relative_pose(b, a), PC)
    exact_there = in_hull((a, b))
    reads_exact, _ = warp_bev(exact_there, relative_pose(b, a), PC)
    ok = ((reads_exact > 0.999) * in_hull((b, a)))[0, 0] > 0
    assert ok.sum() > 0.3 * n * n
    assert torch.allclose(back[0][:, ok], feat[0][:, ok], atol=1e-4)

    # and exactly, for random features, under a motion mapping centres to centres
    torch.manual_seed(4)
    rnd = torch.randn(1, 5, n, n)
    c, p = pose(12.0 + 4.0 * 3, 7.0 - 4.0, math.pi / 2), pose(12.0, 7.0, 0.0)
    there, v1 = warp_bev(rnd, relative_pose(c, p), PC)
    back, v2 = warp_bev(there, relative_pose(p, c), PC)
    _, carried = warp_bev(v1, relative_pose(p, c), PC)
    ok = ((v2 * carried) > 0.5)[0, 0]
    assert ok.sum() == (n - 3) * (n - 1)
    assert torch.allclose(back[0][:, ok], rnd[0][:, ok], atol=1e-5)


def test_far_motion_is_all_invalid_and_zero():
    feat = torch.randn(1, 3, 8, 8) + 5
    warped, valid = warp_bev(feat, relative_pose(pose(200.0, 0.0, 0.0), pose(0.0, 0.0, 0.0)), PC)
    assert valid.sum() == 0 and warped.abs().sum() == 0


def test_aligner_carries_frame_and_cell_validity():
    torch.manual_seed(5)
    al = BEVAligner(CPU_GRID.pc_range)
    feat = torch.randn(2, 3, 10, 10)
    e = pose(0.0, 0.0, 0.0).expand(2, 4, 4)
    w, v = al(feat, e, e, past_valid=torch.tensor([True, False]))
    assert torch.allclose(w[0], feat[0]) and v[0].min() == 1
    assert w[1].abs().sum() == 0 and v[1].sum() == 0
    cell_valid = torch.ones(2, 1, 10, 10)
    cell_valid[:, :, :, :4] = 0
    w, v = al(feat, pose(8.0, 0.0, 0.0).expand(2, 4, 4), e, past_valid=cell_valid)
    # shift by one cell in x, plus the invalid strip carried along
    assert v[0, 0, :9, 4:].min() == 1 and v[0, 0, :, :4].sum() == 0 and v[0, 0, 9].sum() == 0
    assert torch.allclose(w[0, :, :9, 4:], feat[0, :, 1:, 4:], atol=1e-5)
