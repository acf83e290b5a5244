"""occ.geometry against independent slow references (python loops over cells, numpy float64 algebra)."""
import math

import numpy as np
import pytest
import torch

from occ.constants import FREE, IGNORE_INDEX
from occ.geometry import (CPU_GRID, OCC3D_GRID, OccGrid, apply_se2, bev_aug_2d, is_planar, planar_pose, pose2d,
                          relative_pose, relative_se2, se2, transform_points, transform_xy, warp_bev, warp_labels,
                          xy_range, yaw_of)

SMALL = (-3.0, -2.5, -1.0, 3.0, 2.5, 1.4)          # 6 x 5 x 3 cells of 1.0 / 1.0 / 0.8 m


def pose4(x, y, z=0.0, yaw=0.0, pitch=0.0, roll=0.0):
    """float64 numpy 4x4 from Euler angles (z-y-x), written out by hand."""
    cy, sy, cp, sp, cr, sr = (math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch),
                              math.cos(roll), math.sin(roll))
    m = np.eye(4)
    m[:3, :3] = [[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                 [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                 [-sp, cp * sr, cp * cr]]
    m[:3, 3] = (x, y, z)
    return m


# ------------------------------------------------------------------------------ grid

def test_occ3d_and_cpu_grids():
    assert OCC3D_GRID.shape == (200, 200, 16) and CPU_GRID.shape == (100, 100, 8)
    assert OCC3D_GRID.voxel_size == 0.4 and CPU_GRID.ndim == 3
    assert CPU_GRID.tiles_range() and not OccGrid.from_voxel(0.7).tiles_range()


@pytest.mark.parametrize('grid', [OccGrid(SMALL, (1.0, 1.0, 0.8)), OccGrid.from_voxel(8.0),
                                  OccGrid.from_shape(SMALL, (4, 7, 2)), OccGrid.from_shape(SMALL, (5, 3))])
def test_centres_match_a_loop_over_cells(grid):
    lo, v = grid.lower, grid.voxel
    ref = np.zeros(grid.shape + (grid.ndim,))
    for idx in np.ndindex(*grid.shape):
        ref[idx] = [lo[a] + (idx[a] + 0.5) * v[a] for a in range(grid.ndim)]
    np.testing.assert_array_equal(grid.centers(), ref.astype(np.float32))
    np.testing.assert_array_equal(grid.centers_torch(dtype=torch.float64).numpy(), ref)
    # float32 torch arithmetic: within one float32 rounding of the exact centre
    np.testing.assert_allclose(grid.centers_torch().numpy(), ref, rtol=0, atol=4e-6)
    # centres are inside their own cell, and index <-> metric are inverse
    idx, inside = grid.points_to_index(ref)
    assert inside.all()
    np.testing.assert_array_equal(idx, np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape],
                                                            indexing='ij'), -1))
    np.testing.assert_array_equal(grid.index_to_points(idx), ref.astype(np.float32))
    t_idx, t_inside = grid.points_to_index_torch(torch.from_numpy(ref))
    assert torch.equal(t_idx, torch.from_numpy(idx)) and bool(t_inside.all())
    torch.testing.assert_close(grid.index_to_points_torch(t_idx, torch.float64), torch.from_numpy(ref))


def test_points_to_index_matches_floor_loop_and_flags_outside():
    grid = OccGrid(SMALL, (1.0, 1.0, 0.8))
    rng = np.random.default_rng(0)
    pts = rng.uniform(-5, 5, size=(500, 3))
    idx, inside = grid.points_to_index(pts)
    t_idx, t_inside = grid.points_to_index_torch(torch.from_numpy(pts))
    for p, i, ok, ti, tok in zip(pts, idx, inside, t_idx.numpy(), t_inside.numpy()):
        want = [math.floor((p[a] - SMALL[a]) / (1.0, 1.0, 0.8)[a]) for a in range(3)]
        want_in = all(0 <= want[a] < (6, 5, 3)[a] for a in range(3))
        assert list(i) == want and list(ti) == want and ok == want_in and tok == want_in
    flat = grid.flat_index(idx[inside])
    assert list(flat[:3]) == [(i * 5 + j) * 3 + k for i, j, k in idx[inside][:3]]


def test_bev_and_from_shape():
    g = OccGrid.from_voxel(0.8)
    bev = g.bev()
    assert bev.pc_range == (-40.0, -40.0, 40.0, 40.0) and bev.shape == (100, 100)
    np.testing.assert_array_equal(bev.centers(), g.centers()[:, :, 0, :2])
    coarse = OccGrid.from_shape(g.pc_range, (50, 25))           # non-square BEV cells
    assert coarse.shape == (50, 25) and tuple(coarse.voxel) == (1.6, 3.2)
    assert xy_range(g.pc_range) == g.xy_range == (-40.0, -40.0, 40.0, 40.0)
    assert xy_range((-1, -2, 3, 4)) == (-1.0, -2.0, 3.0, 4.0)
    with pytest.raises(ValueError, match='4 or 6'):
        xy_range((1, 2, 3))
    with pytest.raises(ValueError, match='empty axis'):
        OccGrid((0, 0, 0, 1, -1, 1), 0.5)
    with pytest.raises(ValueError, match='positive'):
        OccGrid(SMALL, 0.0)
    with pytest.raises(ValueError, match='does not fit'):
        OccGrid.from_shape(SMALL, (2, 2, 2, 2))


# ------------------------------------------------------------------------------ SE(3)

def test_relative_pose_matches_float64_inverse_far_from_the_origin():
    rng = np.random.default_rng(1)
    for _ in range(5):
        a = pose4(*rng.uniform(-3000, 3000, 2), rng.uniform(-2, 2), *rng.uniform(-0.3, 0.3, 3))
        b = a @ pose4(*rng.uniform(-5, 5, 2), 0.1, rng.uniform(-0.5, 0.5), 0.01, -0.02)
        aug_a, aug_b = pose4(0, 0, yaw=0.3), np.diag([-1.0, 1.0, 1.0, 1.0]) @ pose4(0, 0, yaw=-0.2)
        want = aug_b @ np.linalg.inv(b) @ a @ np.linalg.inv(aug_a)
        got = relative_pose(torch.tensor(a[None]).float(), torch.tensor(b[None]).float(),
                            torch.tensor(aug_a[None]).float(), torch.tensor(aug_b[None]).float())
        # the float32 inputs round kilometre translations to ~0.1 mm; the composition must not add more
        ref = (aug_b @ np.linalg.inv(np.float32(b).astype(np.float64)) @ np.float32(a).astype(np.float64)
               @ np.linalg.inv(np.float32(aug_a).astype(np.float64)))
        assert got.dtype == torch.float32
        np.testing.assert_allclose(got[0].numpy(), ref, atol=1e-5)
        np.testing.assert_allclose(got[0].numpy(), want, atol=1e-3)
    eye = torch.eye(4)[None]
    assert torch.equal(relative_pose(eye, eye), eye)


def test_transform_points_and_xy_match_per_point_loops():
    rng = np.random.default_rng(2)
    m = np.stack([pose4(*rng.uniform(-9, 9, 3), *rng.uniform(-1, 1, 3)) for _ in range(2)])
    pts = rng.uniform(-20, 20, size=(2, 4, 5, 3))
    got = transform_points(torch.from_numpy(m), torch.from_numpy(pts)).numpy()
    for b in range(2):
        for i in range(4):
            for j in range(5):
                p = pts[b, i, j]
                want = [sum(m[b, r, c] * p[c] for c in range(3)) + m[b, r, 3] for r in range(3)]
                np.testing.assert_allclose(got[b, i, j], want, rtol=0, atol=1e-12)
    single = transform_points(torch.from_numpy(m[0]), torch.from_numpy(pts[0]))
    np.testing.assert_allclose(single.numpy(), got[0], atol=1e-12)
    xy = transform_xy(torch.from_numpy(pts[..., :2]), torch.from_numpy(m)).numpy()
    flat = np.concatenate([pts[..., :2], np.zeros(pts.shape[:-1] + (1,))], -1)
    np.testing.assert_allclose(xy, transform_points(torch.from_numpy(m), torch.from_numpy(flat)).numpy()[..., :2],
                               atol=1e-12)


def test_planar_pose_yaw_and_is_planar():
    p = planar_pose(3.0, -4.0, 0.7)
    assert p.dtype == torch.float32
    np.testing.assert_allclose(p.numpy(), pose4(3.0, -4.0, yaw=0.7), atol=1e-7)
    assert abs(float(yaw_of(p)) - 0.7) < 1e-6
    assert pose2d(p) == pytest.approx((3.0, -4.0, 0.7), abs=1e-6)
    assert is_planar(p) and is_planar(np.diag([-1.0, -1.0, 1.0, 1.0]))
    assert not is_planar(pose4(0, 0, z=0.5))                # a z shift moves voxels between levels
    assert not is_planar(pose4(0, 0, pitch=0.05))


# ------------------------------------------------------------------------------ SE(2)

def test_se2_helpers_match_trigonometry():
    sender, receiver = (105.0, -42.0, 0.4), (100.0, -40.0, -0.3)
    t = relative_se2(sender, receiver)
    pts = torch.tensor([[0.0, 0.0], [1.5, -2.0], [-7.0, 3.0]], dtype=torch.float32)
    got = apply_se2(t, pts)
    assert got.dtype == torch.float32
    for p, g in zip(pts.tolist(), got.tolist()):
        # sender -> global -> receiver by hand
        gx = sender[0] + math.cos(sender[2]) * p[0] - math.sin(sender[2]) * p[1]
        gy = sender[1] + math.sin(sender[2]) * p[0] + math.cos(sender[2]) * p[1]
        dx, dy = gx - receiver[0], gy - receiver[1]
        want = (math.cos(receiver[2]) * dx + math.sin(receiver[2]) * dy,
                -math.sin(receiver[2]) * dx + math.cos(receiver[2]) * dy)
        assert g == pytest.approx(want, abs=1e-5)
    assert torch.allclose(se2(*sender) @ torch.linalg.inv(se2(*sender)), torch.eye(3, dtype=torch.float64))
    flip = torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0]))
    flip[0, 3] = 2.0
    assert torch.equal(bev_aug_2d(flip), torch.tensor([[1.0, 0, 2.0], [0, -1.0, 0], [0, 0, 1.0]],
                                                      dtype=torch.float64))
    with pytest.raises(ValueError, match='4x4'):
        bev_aug_2d(torch.eye(3))


# ------------------------------------------------------------------------------ label warp

def ref_warp_labels(labels, dst2src, grid, fill):
    """Per destination voxel: its centre through dst2src (float64), floor into the source grid."""
    out = np.full_like(labels, fill)
    lo, v = grid.lower, grid.voxel
    for i, j, k in np.ndindex(*grid.shape):
        c = np.array([lo[0] + (i + 0.5) * v[0], lo[1] + (j + 0.5) * v[1], lo[2] + (k + 0.5) * v[2], 1.0])
        s = dst2src @ c
        si, sj, sk = (int(math.floor((s[a] - lo[a]) / v[a])) for a in range(3))
        if 0 <= si < grid.shape[0] and 0 <= sj < grid.shape[1] and 0 <= sk < grid.shape[2]:
            out[i, j, k] = labels[si, sj, sk]
    return out


MOTIONS = [pose4(0.37, -1.21, yaw=0.61),                                   # planar: columns path
           np.diag([-1.0, 1.0, 1.0, 1.0]) @ pose4(0, 0, yaw=math.radians(17)),  # BEV flip + rotation
           pose4(0.8, 0.3, z=0.31, yaw=-0.4, pitch=0.12, roll=-0.07),       # general 3D path
           np.eye(4)]


@pytest.mark.parametrize('motion', range(len(MOTIONS)))
def test_warp_labels_matches_the_voxel_loop(motion):
    grid = OccGrid(SMALL, (1.0, 1.0, 0.8))
    rng = np.random.default_rng(motion)
    labels = rng.integers(0, 17, size=(2,) + grid.shape).astype(np.uint8)
    m = np.stack([MOTIONS[motion], MOTIONS[motion] @ pose4(0.2, 0.1, yaw=0.05)])
    got = warp_labels(torch.from_numpy(labels), torch.from_numpy(m), grid, fill=IGNORE_INDEX)
    assert got.dtype == torch.uint8 and got.shape == labels.shape
    for b in range(2):
        np.testing.assert_array_equal(got[b].numpy(), ref_warp_labels(labels[b], m[b], grid, IGNORE_INDEX))
    # numpy in, numpy out; unbatched; default fill = free
    single = warp_labels(labels[0], m[0], grid)
    assert isinstance(single, np.ndarray)
    np.testing.assert_array_equal(single, ref_warp_labels(labels[0], m[0], grid, FREE))


def test_warp_labels_whole_voxel_shift_and_errors():
    grid = OccGrid.from_voxel(1.0, (-4, -4, -1, 4, 4, 1))
    lab = torch.arange(8 * 8 * 2).view(8, 8, 2)
    out = warp_labels(lab, torch.from_numpy(pose4(2.0, -1.0)), grid, fill=-1)
    assert torch.equal(out[:6, 1:], lab[2:, :7]) and (out[6:] == -1).all() and (out[:, :1] == -1).all()
    with pytest.raises(ValueError, match='not on the grid'):
        warp_labels(lab[:4], torch.eye(4), grid)


# ------------------------------------------------------------------------------ feature warp

def ref_warp_bev(feat, dst2src, pc, nx, ny):
    """Per destination cell: bilinear read at its centre's continuous index (border-clamped inside the extent)."""
    c = feat.shape[0]
    dx, dy = (pc[3] - pc[0]) / nx, (pc[4] - pc[1]) / ny
    out, valid = np.zeros((c, nx, ny)), np.zeros((nx, ny))
    for i in range(nx):
        for j in range(ny):
            p = dst2src @ np.array([pc[0] + (i + 0.5) * dx, pc[1] + (j + 0.5) * dy, 0.0, 1.0])
            if not (pc[0] <= p[0] <= pc[3] and pc[1] <= p[1] <= pc[4]):
                continue
            valid[i, j] = 1
            fi = min(max((p[0] - pc[0]) / dx - 0.5, 0), nx - 1)
            fj = min(max((p[1] - pc[1]) / dy - 0.5, 0), ny - 1)
            i0, j0 = int(math.floor(fi)), int(math.floor(fj))
            i1, j1 = min(i0 + 1, nx - 1), min(j0 + 1, ny - 1)
            a, b = fi - i0, fj - j0
            out[:, i, j] = ((1 - a) * (1 - b) * feat[:, i0, j0] + a * (1 - b) * feat[:, i1, j0]
                            + (1 - a) * b * feat[:, i0, j1] + a * b * feat[:, i1, j1])
    return out, valid


def test_warp_bev_matches_bilinear_loop_on_non_square_cells():
    torch.manual_seed(0)
    pc = (-8.0, -6.0, -1.0, 8.0, 6.0, 3.0)
    feat = torch.randn(1, 3, 10, 7, dtype=torch.float64)
    m = pose4(1.3, -0.7, yaw=0.35)
    got, valid = warp_bev(feat, torch.from_numpy(m[None]), pc)
    want, want_valid = ref_warp_bev(feat[0].numpy(), m, pc, 10, 7)
    np.testing.assert_array_equal(valid[0, 0].numpy(), want_valid)
    np.testing.assert_allclose(got[0].numpy(), want, atol=1e-6)
