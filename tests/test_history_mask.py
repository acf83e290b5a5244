"""History-visibility mask (visible now or in an aligned past frame) against a voxel-loop reference."""
import math
import os

import numpy as np
import pytest
import torch
from fixtures_data import micro_world  # noqa: F401

from occ.data import OccDataset
from occ.data.history_mask import history_visibility_mask
from occ.data.dataset import reduce_to_grid
from occ.data.occ3d_io import load_occ3d_labels
from occ.geometry import OccGrid

GRID = OccGrid((-4.0, -4.0, -1.0, 4.0, 4.0, 2.2), 0.4)       # 20 x 20 x 8


def _loop_reference(mask_camera, past_masks, past2current, grid):
    """Per voxel: its centre, mapped into each past frame, lands in a visible past voxel (or it is visible now)."""
    shape = grid.shape
    lo, v = np.asarray(grid.pc_range[:3], np.float64), grid.voxel_size
    out = np.zeros(shape, np.uint8)
    for i in range(shape[0]):
        for j in range(shape[1]):
            for k in range(shape[2]):
                if mask_camera[i, j, k]:
                    out[i, j, k] = 1
                    continue
                c = np.array([lo[0] + (i + .5) * v, lo[1] + (j + .5) * v, lo[2] + (k + .5) * v, 1.0])
                for m, p2c in zip(past_masks, past2current):
                    p = np.linalg.inv(np.asarray(p2c, np.float64)) @ c
                    idx = [math.floor((p[a] - lo[a]) / v) for a in range(3)]
                    if all(0 <= idx[a] < shape[a] for a in range(3)) and m[idx[0], idx[1], idx[2]]:
                        out[i, j, k] = 1
                        break
    return out


def _pose(x, y, yaw_deg):
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:2, 3] = x, y
    return m


def test_static_object_seen_at_t_minus_1_and_occluded_at_t():
    # A pole 2 m ahead of the ego at t-1 (past voxels x 15..15, y 9..10, z 2..5) is visible then.
    past = np.zeros(GRID.shape, np.uint8)
    past[15, 9:11, 2:6] = 1
    past[:3, :, :2] = 1                            # some ground behind the ego, seen at t-1
    # The ego drives 0.8 m (2 voxels) forward; at t a truck in between hides the pole.
    e_prev, e_cur = _pose(100.0, 50.0, 0.0), _pose(100.8, 50.0, 0.0)
    past2cur = np.linalg.inv(e_cur) @ e_prev
    now = np.zeros(GRID.shape, np.uint8)
    now[10:13, 8:12, 1:4] = 1                      # the truck's visible face
    got = history_visibility_mask(now, [past], [past2cur], GRID)
    assert got.dtype == np.uint8 and got.shape == GRID.shape
    np.testing.assert_array_equal(got, _loop_reference(now, [past], [past2cur], GRID))
    # The pole is where a static object must be now: 2 voxels closer, seen only in history.
    assert got[13, 9:11, 2:6].all() and not now[13, 9:11, 2:6].any()
    assert not got[15, 9:11, 2:6].any()
    # Ground behind left the grid's back edge by 2 voxels: what the past grid did not cover is unseen.
    assert got[:1, :, :2].all() and not got[1:2, :, :2].any()
    assert (got >= now).all()


@pytest.mark.parametrize('flip', [False, True])
def test_rotated_motion_and_bev_aug_match_the_loop(flip):
    rng = np.random.default_rng(0)
    past = [(rng.random(GRID.shape) < 0.2).astype(np.uint8) for _ in range(2)]
    now = (rng.random(GRID.shape) < 0.1).astype(np.uint8)
    e_cur = _pose(10.3, -4.1, 37.0)
    bev_aug = _pose(0.0, 0.0, 12.0) @ np.diag([1.0, -1.0 if flip else 1.0, 1.0, 1.0])
    poses = [_pose(9.1, -4.6, 30.0), _pose(9.7, -4.3, 33.5)]
    p2c = [bev_aug @ np.linalg.inv(e_cur) @ e for e in poses]
    got = history_visibility_mask(now, past, p2c, GRID)
    np.testing.assert_array_equal(got, _loop_reference(now, past, p2c, GRID))
    assert got.sum() > now.sum()
    np.testing.assert_array_equal(history_visibility_mask(now, [], [], GRID), now)
    with pytest.raises(ValueError, match='poses'):
        history_visibility_mask(now, past, p2c[:1], GRID)


def test_dataset_produces_the_mask_with_history(micro_world):  # noqa: F811
    info_file = os.path.join(micro_world, 'occ_infos_train.pkl')
    kw = dict(data_root=micro_world, img_size=(64, 112), grid_voxel=0.8)
    aug = dict(bev=dict(rot=(-30.0, 30.0), flip_x=0.5, flip_y=0.5))
    ds = OccDataset(info_file, num_history=2, aug=aug, **kw)
    grid = ds.grid
    for index in (0, 2):
        item = ds[index]
        info = ds.infos[index]
        hist = item['mask_camera_history'].numpy()
        bev_aug = item['bev_aug'].numpy().astype(np.float64)
        masks, p2c = [], []
        for t in (1, 2):
            n = ds._by_frame.get((info['scene_token'], info['frame_idx'] - t))
            if n is None:
                continue
            path = os.path.join(micro_world, ds.infos[n]['occ_path'])
            masks.append(reduce_to_grid(load_occ3d_labels(path), grid.shape, path)['mask_camera'])
            p2c.append(bev_aug @ np.linalg.inv(np.asarray(info['ego2global'], np.float64))
                       @ np.asarray(ds.infos[n]['ego2global'], np.float64))
        ref = _loop_reference(item['mask_camera'].numpy(), masks, p2c, grid)
        np.testing.assert_array_equal(hist, ref)
        assert len(masks) == min(info['frame_idx'], 2)
        if index == 2:
            assert hist.sum() > item['mask_camera'].numpy().sum()
        else:                                          # the first frame has no past
            np.testing.assert_array_equal(hist, item['mask_camera'].numpy())
    # no history, no mask; a streaming test set asks for the mask alone
    assert 'mask_camera_history' not in OccDataset(info_file, **kw)[2]
    alone = OccDataset(info_file, history_mask_frames=2, test_mode=True, **kw)[2]
    assert 'history' not in alone and isinstance(alone['mask_camera_history'], torch.Tensor)
    plain = OccDataset(info_file, num_history=2, test_mode=True, **kw)[2]
    np.testing.assert_array_equal(alone['mask_camera_history'], plain['mask_camera_history'])


def test_loss_mask_key_trains_on_the_history_mask():
    import warnings

    import occ.models  # noqa: F401
    from occ.registry import MODELS
    from occ.utils.benchmark import random_batch
    from test_occnet import tiny_cfg

    def build(**kw):
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return MODELS.build(tiny_cfg(depth_loss_weight=0.0, **kw)).eval()

    b = random_batch(1, 6, (32, 64), grid_shape=(25, 25, 2), with_depth=False)
    cam = b['mask_camera'].bool()
    b['mask_camera_history'] = (cam | (torch.rand(cam.shape) < 0.3)).to(torch.uint8)
    hist = b['mask_camera_history'].bool()
    history_model, camera_model = build(loss_mask_key='mask_camera_history'), build()
    # labels outside the history mask do not change the loss; inside it but outside the camera mask they do
    outside = dict(b, voxel_semantics=torch.where(hist, b['voxel_semantics'], (b['voxel_semantics'] + 1) % 18))
    only_hist = dict(b, voxel_semantics=torch.where(hist & ~cam, (b['voxel_semantics'] + 1) % 18,
                                                    b['voxel_semantics']))
    loss = history_model(b, mode='loss')['loss_weighted_ce']
    assert torch.allclose(history_model(outside, mode='loss')['loss_weighted_ce'], loss)
    assert not torch.allclose(history_model(only_hist, mode='loss')['loss_weighted_ce'], loss)
    assert torch.allclose(camera_model(only_hist, mode='loss')['loss_weighted_ce'],
                          camera_model(b, mode='loss')['loss_weighted_ce'])
    del b['mask_camera_history']
    with pytest.raises(KeyError, match='num_history'):
        history_model(b, mode='loss')
