"""Unit tests of the data pipeline's pure functions against slow independent references."""
import collections
import math
import os

import numpy as np
import pytest
import torch

from occ.constants import FREE, OCC_COLORS
from occ.data.collate import occ_collate
from occ.data.dataset import reduce_to_grid
from occ.data.depth import project_depth
from occ.data.occ3d_io import OccFileError, load_occ3d_labels
from occ.data.transforms import (ImageAug, base_image_transform, bev_matrix, downsample_labels,
                                 image_transforms, resample_labels, rotation3, warp_image)
from occ.geometry import OccGrid
from occ.vis.bev import BACKGROUND, bev_colors

REAL = os.path.join(os.path.dirname(__file__), 'fixtures', 'occ3d-sample',
                    '29796060110c4163b07f06eff4af0753', 'labels.npz')


def slow_downsample(sem, mask, f):
    x, y, z = (s // f for s in sem.shape)
    out_s = np.zeros((x, y, z), np.uint8)
    out_m = np.zeros((x, y, z), np.uint8)
    for i in range(x):
        for j in range(y):
            for k in range(z):
                blk = sem[i * f:(i + 1) * f, j * f:(j + 1) * f, k * f:(k + 1) * f].ravel().tolist()
                occ = collections.Counter(c for c in blk if c != FREE)
                if occ:
                    best = max(occ.values())
                    out_s[i, j, k] = min(c for c, n in occ.items() if n == best)
                else:
                    out_s[i, j, k] = FREE
                out_m[i, j, k] = mask[i * f:(i + 1) * f, j * f:(j + 1) * f, k * f:(k + 1) * f].max()
    return out_s, out_m


def test_downsample_matches_reference():
    rng = np.random.default_rng(0)
    sem = np.where(rng.random((8, 6, 4)) < 0.6, FREE, rng.integers(0, 17, (8, 6, 4))).astype(np.uint8)
    sem[:2, :2, :2] = FREE                                       # an all-free block
    sem[2:4, :2, :2] = [[[3, 5], [5, 3]], [[FREE, FREE], [FREE, 9]]]   # a tie 3 vs 5 -> 3
    mask = (rng.random(sem.shape) < 0.2).astype(np.uint8)
    s, m = downsample_labels(sem, {'mask_camera': mask}, 2)
    rs, rm = slow_downsample(sem, mask, 2)
    np.testing.assert_array_equal(s, rs)
    np.testing.assert_array_equal(m['mask_camera'], rm)
    assert s[0, 0, 0] == FREE and s[1, 0, 0] == 3


def test_real_frame_downsampled_statistics():
    lab = load_occ3d_labels(REAL, (200, 200, 16))
    small = reduce_to_grid(lab, (100, 100, 8), REAL)
    s = small['semantics']
    assert s.shape == (100, 100, 8) and s.dtype == np.uint8
    free0, free1 = (lab['semantics'] == FREE).mean(), (s == FREE).mean()
    # Every occupied fine voxel keeps its block occupied, so free can only shrink; thin
    # surfaces (the ground layer) double their volume share at twice the voxel size.
    assert free1 <= free0
    assert free0 - free1 < 0.10, (free0, free1)
    # No occupied fine voxel is lost.
    occ_fine = lab['semantics'] != FREE
    occ_coarse_up = np.repeat(np.repeat(np.repeat(s != FREE, 2, 0), 2, 1), 2, 2)
    assert not (occ_fine & ~occ_coarse_up).any()
    # The class mix of occupied voxels stays close (L1 distance of shares).
    h0 = np.bincount(lab['semantics'][occ_fine], minlength=17)[:17]
    h1 = np.bincount(s[s != FREE], minlength=17)[:17]
    assert np.abs(h0 / h0.sum() - h1 / h1.sum()).sum() < 0.1
    assert small['mask_camera'].mean() >= lab['mask_camera'].mean()


def test_reduce_to_grid_rejects_bad_shape():
    lab = {'semantics': np.full((10, 10, 5), FREE, np.uint8), 'mask_camera': np.zeros((10, 10, 5), np.uint8)}
    with pytest.raises(OccFileError, match='some/labels.npz.*cannot be reduced'):
        reduce_to_grid(lab, (4, 4, 2), 'some/labels.npz')


def test_rotation_and_base_transform_formulas():
    r = rotation3(90.0, (10.0, 20.0))
    # 90 deg counter-clockwise on screen: a point right of the centre moves above it (smaller v).
    np.testing.assert_allclose(r @ [11, 20, 1], [10, 19, 1], atol=1e-12)
    b = base_image_transform((900, 1600), (256, 704))
    r_ = 704 / 1600
    # Left/right image edges (-0.5 and 1599.5) map onto the output's edges; the bottom edge stays the bottom.
    np.testing.assert_allclose(b @ [-0.5, 899.5, 1], [-0.5, 255.5, 1], atol=1e-9)
    # The top edge lies above the crop by the cropped-away height (900 r - 256 rows).
    np.testing.assert_allclose(b @ [1599.5, -0.5, 1], [703.5, -0.5 - (900 * r_ - 256), 1], atol=1e-9)


@pytest.mark.parametrize('seed,src_hw,r', [(0, (90, 160), 2), (1, (90, 160), 2), (2, (90, 160), 2),
                                           (3, (363, 641), 6), (4, (181, 322), 4)])
def test_warp_moves_a_dot_to_the_mapped_pixel(seed, src_hw, r):
    """The image warp and the matrix agree: a dot at p ends at full @ p (also through the box pre-filter)."""
    rng = np.random.default_rng(seed)
    dst_hw = (64, 96)
    params = ImageAug().sample(rng)
    base, aug = image_transforms(src_hw, dst_hw, params)
    full = aug @ base
    for _ in range(5):
        # Pick a source pixel whose mapped position is well inside the output.
        while True:
            p = np.array([rng.integers(2 * r, src_hw[1] - 2 * r), rng.integers(2 * r, src_hw[0] - 2 * r), 1.0])
            q = full @ p
            if 3 <= q[0] <= dst_hw[1] - 4 and 3 <= q[1] <= dst_hw[0] - 4:
                break
        img = np.zeros(src_hw, np.float32)
        img[int(p[1]) - r:int(p[1]) + r + 1, int(p[0]) - r:int(p[0]) + r + 1] = 1.0
        out = warp_image(img, full, dst_hw)
        vs, us = np.nonzero(out > 0.05)
        w = out[vs, us]
        centroid = np.array([(us * w).sum() / w.sum(), (vs * w).sum() / w.sum()])
        assert np.abs(centroid - q[:2]).max() < 0.75, (centroid, q)


def test_test_mode_aug_is_identity():
    base, aug = image_transforms((90, 160), (64, 96), None)
    np.testing.assert_array_equal(aug, np.eye(3))


def slow_resample(arr, src2dst, grid, fill):
    out = np.full(grid.shape, fill, np.uint8)
    inv = np.linalg.inv(src2dst)
    x, y, z = grid.shape
    for i in range(x):
        for j in range(y):
            for k in range(z):
                c = grid.index_to_points(np.array([i, j, k]))
                p = inv[:3, :3] @ c + inv[:3, 3]
                idx = np.floor((p - grid.lower) / grid.voxel_size).astype(int)
                if np.all(idx >= 0) and np.all(idx < grid.shape):
                    out[i, j, k] = arr[tuple(idx)]
    return out


@pytest.mark.parametrize('rot,fx,fy', [(0.0, True, False), (0.0, False, True), (17.0, True, True),
                                        (90.0, False, False)])
def test_bev_resample_matches_reference(rot, fx, fy):
    grid = OccGrid.from_voxel(8.0)                                   # 10 x 10 x 1: a fast reference
    rng = np.random.default_rng(1)
    sem = rng.integers(0, 18, grid.shape).astype(np.uint8)
    m = bev_matrix(rot, fx, fy).astype(np.float64)
    out = resample_labels({'semantics': sem, 'mask_camera': sem.copy()}, m, grid)
    np.testing.assert_array_equal(out['semantics'], slow_resample(sem, m, grid, 255))
    np.testing.assert_array_equal(out['mask_camera'], slow_resample(sem, m, grid, 0))
    if rot == 0.0 and fx and not fy:
        np.testing.assert_array_equal(out['semantics'], sem[::-1])


def test_general_resample_matches_reference():
    """A map that moves z too (ego pitch + height change) takes the 3-D path."""
    grid = OccGrid((-8.0, -8.0, -1.0, 8.0, 8.0, 5.4), 1.6)         # 10 x 10 x 4
    rng = np.random.default_rng(2)
    sem = rng.integers(0, 18, grid.shape).astype(np.uint8)
    m = bev_matrix(-12.0, False, True).astype(np.float64)
    a = math.radians(4.0)
    pitch = np.eye(4)
    pitch[[0, 0, 2, 2], [0, 2, 0, 2]] = [math.cos(a), math.sin(a), -math.sin(a), math.cos(a)]
    m = pitch @ m
    m[:3, 3] = [2.3, -0.7, 1.7]
    out = resample_labels({'semantics': sem}, m, grid)
    np.testing.assert_array_equal(out['semantics'], slow_resample(sem, m, grid, 255))


def test_bev_matrix_is_flip_then_rotate():
    m = bev_matrix(90.0, flip_x=True)
    # (1, 0) -> flip -> (-1, 0) -> rotate 90 ccw -> (0, -1)
    np.testing.assert_allclose(m @ [1, 0, 0, 1], [0, -1, 0, 1], atol=1e-6)


def test_project_depth_matches_reference():
    rng = np.random.default_rng(3)
    pts = rng.uniform([-5, -5, -2], [30, 5, 3], (400, 3))
    cam2ego = np.eye(4)
    cam2ego[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]           # camera looking along ego +x
    cam2ego[:3, 3] = [1.0, 0.2, 1.5]
    k = np.array([[20.0, 0, 16], [0, 20.0, 12], [0, 0, 1]])
    d = project_depth(pts, cam2ego, k, (24, 32))
    ref = np.zeros((24, 32), np.float32)
    inv = np.linalg.inv(cam2ego)
    for p in pts:
        c = inv[:3, :3] @ p + inv[:3, 3]
        if c[2] <= 0.1:
            continue
        u, v = int(np.round(k[0, 0] * c[0] / c[2] + k[0, 2])), int(np.round(k[1, 1] * c[1] / c[2] + k[1, 2]))
        if 0 <= u < 32 and 0 <= v < 24 and (ref[v, u] == 0 or c[2] < ref[v, u]):
            ref[v, u] = c[2]
    np.testing.assert_allclose(d, ref, rtol=1e-6)
    assert (d > 0).sum() > 20


def test_bev_colors_orientation_and_top_voxel():
    sem = np.full((4, 6, 3), FREE, np.uint8)
    sem[3, 5, 0] = 11          # far forward (max x), far left (max y), ground
    sem[3, 5, 2] = 4           # a car above it: top-most wins
    sem[0, 0, 1] = 16          # far back, far right
    mask = np.ones_like(sem)
    mask[3, 5, 2] = 0
    img = bev_colors(sem, shade=False)
    assert img.shape == (4, 6, 3)
    np.testing.assert_array_equal(img[0, 0], OCC_COLORS[4])          # top-left of the picture = front-left
    np.testing.assert_array_equal(img[3, 5], OCC_COLORS[16])
    np.testing.assert_array_equal(img[1, 1], BACKGROUND)
    np.testing.assert_array_equal(bev_colors(sem, mask, shade=False)[0, 0], OCC_COLORS[11])


def test_collate_nested_and_errors():
    def s(i):
        return {'imgs': torch.full((2, 3, 4, 5), float(i)), 'sample_token': f't{i}', 'frame_idx': i,
                'history': {'imgs': torch.zeros(3, 2, 3, 4, 5), 'valid': torch.tensor([False, True, True])}}
    b = occ_collate([s(0), s(1)])
    assert b['imgs'].shape == (2, 2, 3, 4, 5) and b['imgs'][1].eq(1).all()
    assert b['sample_token'] == ['t0', 't1']
    assert b['frame_idx'].tolist() == [0, 1]
    assert b['history']['imgs'].shape == (2, 3, 2, 3, 4, 5) and b['history']['valid'].dtype == torch.bool
    bad = s(2)
    bad['imgs'] = torch.zeros(1, 3, 4, 5)
    with pytest.raises(ValueError, match='imgs'):
        occ_collate([s(0), bad])
    assert math.isclose(float(occ_collate([{'a': 0.5}])['a'][0]), 0.5)
