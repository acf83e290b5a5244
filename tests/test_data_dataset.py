"""OccDataset on a tiny synthetic world: geometry under augmentation, shapes, determinism, errors."""
import os
import shutil

import cv2
import numpy as np
import pytest
import torch
from fixtures_data import micro_world, tiny_world  # noqa: F401

from occ.constants import CAMERA_NAMES, FREE, IGNORE_INDEX
from occ.data import OccDataset, occ_collate
from occ.data.infos import InfoFile, save_infos
from occ.data.occ3d_io import OccFileError
from occ.data.transforms import base_image_transform, resample_labels, warp_image
from occ.geometry import OccGrid
from occ.registry import DATASETS

IMG = (64, 112)
AUG = dict(img=dict(scale=(0.9, 1.2), rot=(-8.0, 8.0), flip=0.5, crop_y=(0.5, 1.0)),
           bev=dict(rot=(-30.0, 30.0), flip_x=0.5, flip_y=0.5))


def _ds(root, split='train', **kw):
    kw.setdefault('img_size', IMG)
    kw.setdefault('grid_voxel', 0.4)
    return OccDataset(os.path.join(root, f'occ_infos_{split}.pkl'), data_root=root, **kw)


def semantic_hits(root, ds, item, info, label2ego=None, frame=None, cam_info=None, classes=None):
    """Share of visible labelled voxels whose projection lands on a pixel of the same class.

    Uses only the dataset's outputs (augmented labels, bev_aug, cam2ego, intrinsics,
    img_aug) plus the raw semantics2d images warped by the same pixel map.
    ``label2ego`` maps the label frame into the cameras' ego frame (default
    ``inv(bev_aug)``); ``frame`` / ``cam_info`` select another vehicle's cameras;
    ``classes`` restricts the voxels to those classes.
    """
    frame = item if frame is None else frame
    cam_info = info if cam_info is None else cam_info
    sem = item['voxel_semantics'].numpy()
    vis = item['mask_camera'].numpy().astype(bool) & (sem != FREE) & (sem != IGNORE_INDEX)
    if classes is not None:
        vis &= np.isin(sem, classes)
    centers = ds.grid.centers()[vis].astype(np.float64)
    cls = sem[vis]
    if label2ego is None:
        label2ego = np.linalg.inv(item['bev_aug'].numpy().astype(np.float64))
    hits, total = 0, 0
    for n, cam in enumerate(CAMERA_NAMES):
        c = cam_info['cams'][cam]
        stem = os.path.splitext(os.path.basename(c['data_path']))[0]
        s2d = cv2.imread(os.path.join(root, 'semantics2d', cam, stem + '.png'), cv2.IMREAD_UNCHANGED)
        a4 = frame['img_aug'][n].numpy().astype(np.float64)
        a3 = np.array([[a4[0, 0], a4[0, 1], a4[0, 3]], [a4[1, 0], a4[1, 1], a4[1, 3]], [0, 0, 1]])
        full = a3 @ base_image_transform((c['height'], c['width']), IMG)
        s2d = warp_image(s2d, full, IMG, nearest=True)
        valid_px = warp_image(np.ones_like(s2d), full, IMG, nearest=True).astype(bool)
        label2cam = np.linalg.inv(frame['cam2ego'][n].numpy().astype(np.float64)) @ label2ego
        x = centers @ label2cam[:3, :3].T + label2cam[:3, 3]
        front = x[:, 2] > 0.5
        k = frame['intrinsics'][n].numpy().astype(np.float64)
        uvw = x[front] @ k.T
        uv = uvw[:, :2] / uvw[:, 2:]
        uv = uv @ a3[:2, :2].T + a3[:2, 2]
        u, v = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
        inside = (u >= 0) & (u < IMG[1]) & (v >= 0) & (v < IMG[0])
        u, v, cc = u[inside], v[inside], cls[front][inside]
        keep = valid_px[v, u]
        hits += int((s2d[v[keep], u[keep]] == cc[keep]).sum())
        total += int(keep.sum())
    return hits / max(total, 1), total


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['plain', 'img_aug', 'bev_aug', 'both'])
def test_visible_voxels_project_onto_their_class(tiny_world, mode):
    aug = {'plain': None, 'img_aug': dict(img=AUG['img']), 'bev_aug': dict(bev=AUG['bev']), 'both': AUG}[mode]
    ds = _ds(tiny_world, aug=aug, seed=3)
    info = ds.infos[1]
    item = ds[1]
    if mode in ('bev_aug', 'both'):
        assert not np.allclose(item['bev_aug'].numpy(), np.eye(4))
    if mode in ('img_aug', 'both'):
        assert not np.allclose(item['img_aug'].numpy()[0], np.eye(4))
    share, total = semantic_hits(tiny_world, ds, item, info)
    assert total > 200, total
    assert share > 0.7, (mode, share, total)


@pytest.mark.slow
def test_wrong_geometry_is_detected(tiny_world):
    """The geometry test has teeth: ignoring bev_aug breaks the agreement."""
    ds = _ds(tiny_world, aug=dict(bev=dict(rot=(90.0, 90.0), flip_x=0.0, flip_y=0.0)))
    item = ds[1]
    good, _ = semantic_hits(tiny_world, ds, item, ds.infos[1])
    item['bev_aug'] = torch.eye(4)
    bad, _ = semantic_hits(tiny_world, ds, item, ds.infos[1])
    assert bad < good - 0.15, (good, bad)


def test_item_contract_and_collate(micro_world):
    ds = _ds(micro_world, grid_voxel=0.8, num_history=2, history_stride=1, num_future=3, load_depth=True)
    n, (h, w) = len(CAMERA_NAMES), IMG
    grid = OccGrid.from_voxel(0.8).shape
    items = [ds[0], ds[len(ds) - 1]]
    b = occ_collate(items)
    assert b['imgs'].shape == (2, n, 3, h, w) and b['imgs'].dtype == torch.float32
    assert b['intrinsics'].shape == (2, n, 3, 3)
    assert b['cam2ego'].shape == b['img_aug'].shape == (2, n, 4, 4)
    assert b['bev_aug'].shape == b['ego2global'].shape == (2, 4, 4)
    for k in ('voxel_semantics', 'mask_camera', 'mask_lidar'):
        assert b[k].shape == (2,) + grid and b[k].dtype == torch.uint8
    assert b['future_semantics'].shape == (2, 3) + grid
    assert b['depth'].shape == (2, n, h, w) and (b['depth'] > 0).any()
    hist = b['history']
    assert hist['imgs'].shape == (2, 2, n, 3, h, w) and hist['ego2global'].shape == (2, 2, 4, 4)
    assert hist['bev_aug'].shape == (2, 2, 4, 4)
    # First frame of a scene: no past; last frame (index 3 of 4): no future.
    assert hist['valid'][0].tolist() == [False, False]
    assert b['future_valid'][0].tolist() == [True, True, True]
    assert b['future_valid'][1].tolist() == [False, False, False]
    assert (b['future_semantics'][1] == IGNORE_INDEX).all()
    assert isinstance(b['sample_token'], list) and b['frame_idx'].tolist() == [0, 3]
    mid = ds[2]
    assert mid['history']['valid'].tolist() == [True, True]
    # History frame t-1 is the previous sample: its pose equals that sample's pose.
    np.testing.assert_array_equal(mid['history']['ego2global'][-1].numpy(), ds.infos[1]['ego2global'])
    assert mid['future_valid'].tolist() == [True, False, False]
    # Future labels in the current frame: the parked car stays put (within a voxel of nearest resampling).
    cur_car = np.argwhere(mid['voxel_semantics'].numpy() == 4)
    fut_car = np.argwhere(mid['future_semantics'][0].numpy() == 4)
    assert len(cur_car) and len(fut_car)
    assert np.abs(cur_car.mean(0) - fut_car.mean(0)).max() <= 1.0
    # ... while in its own frame it moved 5 m (6.25 voxels) towards the ego.
    own = _ds(micro_world, grid_voxel=0.8, num_future=1, future_frame='own')[2]
    own_car = np.argwhere(own['future_semantics'][0].numpy() == 4)
    assert 5 <= cur_car[:, 0].mean() - own_car[:, 0].mean() <= 7


@pytest.mark.parametrize('rot,flip_y', [(90.0, False), (33.0, True)])
def test_future_follows_bev_aug(micro_world, rot, flip_y):
    """Future labels live in the same augmented frame as the current ones: the parked car coincides."""
    ds = _ds(micro_world, grid_voxel=0.8, num_future=1,
             aug=dict(bev=dict(rot=(rot, rot), flip_x=0.0, flip_y=1.0 if flip_y else 0.0)))
    item = ds[1]
    cur = np.argwhere(item['voxel_semantics'].numpy() == 4).mean(0)
    fut = np.argwhere(item['future_semantics'][0].numpy() == 4).mean(0)
    assert np.abs(cur - fut).max() <= 1.0
    # ... and the car itself sits where bev_aug sends its annotated centre.
    centre = np.append(ds.infos[1]['boxes']['center'][0], 1.0)
    want = (item['bev_aug'].numpy().astype(np.float64) @ centre)[:2]
    got = ds.grid.index_to_points(np.round(cur).astype(int))[:2]
    assert np.abs(want - got).max() < 1.3, (want, got)


def test_history_stride(micro_world):
    ds = _ds(micro_world, grid_voxel=0.8, num_history=2, history_stride=2)
    item = ds[3]
    assert item['history']['valid'].tolist() == [False, True]
    np.testing.assert_array_equal(item['history']['ego2global'][1].numpy(), ds.infos[1]['ego2global'])
    # The invalid slot repeats the scene's first frame.
    np.testing.assert_array_equal(item['history']['ego2global'][0].numpy(), ds.infos[0]['ego2global'])


@pytest.mark.slow
def test_lidar_depth_agrees_with_dense_depth(tiny_world):
    ds_l = _ds(tiny_world, load_depth=True, depth_source='lidar', aug=AUG, seed=5)
    ds_d = _ds(tiny_world, load_depth=True, depth_source='dense', aug=AUG, seed=5)
    dl, dd = ds_l[2]['depth'].numpy(), ds_d[2]['depth'].numpy()
    both = (dl > 0) & (dd > 0)
    assert both.sum() > 100
    rel = np.abs(dl[both] - dd[both]) / dd[both]
    assert np.median(rel) < 0.05, np.median(rel)


def test_augmentation_is_a_function_of_seed_epoch_index(micro_world):
    a, b = _ds(micro_world, aug=AUG, seed=7, grid_voxel=0.8), _ds(micro_world, aug=AUG, seed=7, grid_voxel=0.8)
    x = a[2]
    y = b[2]
    for k in ('imgs', 'img_aug', 'bev_aug', 'voxel_semantics'):
        assert torch.equal(x[k], y[k]), k
    _ = a[0]                                 # consuming other samples changes nothing
    assert torch.equal(a[2]['bev_aug'], x['bev_aug'])
    a.set_epoch(1)
    assert not torch.equal(a[2]['img_aug'], x['img_aug'])
    b.set_epoch(1)
    assert torch.equal(a[2]['img_aug'], b[2]['img_aug'])
    assert not torch.equal(_ds(micro_world, aug=AUG, seed=8, grid_voxel=0.8)[2]['img_aug'], x['img_aug'])
    t = _ds(micro_world, aug=AUG, seed=7, test_mode=True, grid_voxel=0.8)[2]
    assert torch.equal(t['bev_aug'], torch.eye(4)) and torch.equal(t['img_aug'][0], torch.eye(4))


@pytest.mark.slow
def test_registry_build_and_coarse_grid(tiny_world):
    ds = DATASETS.build(dict(type='OccDataset', info_file=os.path.join(tiny_world, 'occ_infos_train.pkl'),
                             data_root=tiny_world, img_size=IMG, grid_voxel=0.8, test_mode=True))
    item = ds[0]
    assert item['voxel_semantics'].shape == (100, 100, 8)
    assert (item['voxel_semantics'] != FREE).any()


@pytest.mark.slow
@pytest.mark.parametrize('aug', [None, AUG])
def test_neighbors_see_the_same_world(tiny_world, aug):
    """Neighbour inputs are the other vehicle's own frame, and its pose puts the ego's labels
    onto the neighbour's own labels (static world, same timestamp)."""
    ds = _ds(tiny_world, load_neighbors=True, aug=aug, seed=2)
    plain = _ds(tiny_world, test_mode=True)
    assert ds.max_neighbors == 1
    non_ground = [c for c in range(17) if c not in (11, 12, 13, 14)]   # ground agrees under any along-road shift
    for i, info in enumerate(ds.infos):
        item = ds[i]
        nb = item['neighbors']
        j = ds._by_token[info['neighbors'][0]['token']]
        other = plain[j]
        assert ds.infos[j]['timestamp'] == info['timestamp'] and ds.infos[j]['agent_id'] != info['agent_id']
        assert nb['valid'].tolist() == [True] and nb['agent_id'].tolist() == [ds.infos[j]['agent_id']]
        assert nb['imgs'].shape == (1, len(CAMERA_NAMES), 3) + IMG and torch.equal(nb['bev_aug'][0], torch.eye(4))
        for k in ('cam2ego', 'intrinsics', 'ego2global'):
            assert torch.equal(nb[k][0], other[k]), k
        assert torch.equal(nb['img_aug'][0], item['img_aug'])       # the sample's image-aug draw is shared
        e_ego = item['ego2global'].numpy().astype(np.float64)
        e_nb = nb['ego2global'][0].numpy().astype(np.float64)
        bev = item['bev_aug'].numpy().astype(np.float64)
        agree = []
        for label2nb in (np.linalg.inv(e_nb) @ e_ego @ np.linalg.inv(bev), np.linalg.inv(bev)):   # right, wrong
            r = resample_labels({'semantics': item['voxel_semantics'].numpy(),
                                 'mask_camera': item['mask_camera'].numpy()}, label2nb, ds.grid)
            sel = (r['mask_camera'] > 0) & np.isin(r['semantics'], non_ground) & (other['mask_lidar'].numpy() > 0)
            assert sel.sum() > 200
            agree.append((r['semantics'][sel] == other['voxel_semantics'].numpy()[sel]).mean())
        assert agree[0] > 0.7 and agree[1] < agree[0] - 0.2, agree
    b = occ_collate([ds[0], ds[1]])
    assert b['neighbors']['imgs'].shape == (2, 1, len(CAMERA_NAMES), 3) + IMG
    assert b['neighbors']['valid'].shape == (2, 1) and b['neighbors']['agent_id'].dtype == torch.int64


@pytest.fixture
def broken_world(micro_world, tmp_path):
    root = str(tmp_path / 'w')
    shutil.copytree(micro_world, root)
    return root


def test_truncated_labels_error(broken_world):
    ds = _ds(broken_world, test_mode=True, grid_voxel=0.8)
    path = os.path.join(broken_world, ds.infos[0]['occ_path'])
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(OccFileError, match=f'{path}.*(corrupt|truncated)'):
        ds[0]


def test_missing_image_error(broken_world):
    ds = _ds(broken_world, test_mode=True, grid_voxel=0.8)
    path = os.path.join(broken_world, ds.infos[0]['cams']['CAM_BACK']['data_path'])
    os.remove(path)
    with pytest.raises(OccFileError, match=f'{path}.*not found'):
        ds[0]


def test_wrong_grid_error(broken_world):
    ds = _ds(broken_world, test_mode=True, grid_voxel=0.8)
    path = os.path.join(broken_world, ds.infos[0]['occ_path'])
    bad = np.full((150, 150, 12), FREE, np.uint8)     # 1.5x the model grid: no integer factor
    np.savez_compressed(path, semantics=bad, mask_lidar=bad * 0, mask_camera=bad * 0)
    with pytest.raises(OccFileError, match=f'{path}.*grid'):
        ds[0]


def test_image_size_mismatch_error(broken_world, tmp_path):
    data = InfoFile.read(os.path.join(broken_world, 'occ_infos_val.pkl')).to_dict()
    data['infos'][0]['cams']['CAM_FRONT']['width'] += 10
    save_infos(data, str(tmp_path / 'bad.pkl'))
    ds = OccDataset(str(tmp_path / 'bad.pkl'), data_root=broken_world, img_size=IMG, grid_voxel=0.8)
    with pytest.raises(OccFileError, match='CAM_FRONT.*info file says'):
        ds[0]


@pytest.mark.parametrize('name', ['synthetic_occ', 'nuscenes_occ3d'])
def test_dataset_config_builds_a_dataloader(micro_world, name):
    """The dataset base configs build through stock mmengine (registry scope occ) into flat batches."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    cfg = Config.fromfile(os.path.join(os.path.dirname(__file__), '..', 'configs', '_base_', 'datasets',
                                       f'{name}.py'))
    init_default_scope('occ')
    assert cfg.train_dataloader.collate_fn.type == 'occ.occ_collate'     # scoped: found from the root registry
    dl_cfg = cfg.train_dataloader.to_dict()
    dl_cfg['dataset'].update(info_file=os.path.join(micro_world, 'occ_infos_train.pkl'), data_root=micro_world,
                             img_size=IMG, grid_voxel=0.8)
    dl_cfg.update(batch_size=2, num_workers=0)
    dl = Runner.build_dataloader(dl_cfg, seed=0)
    batch = next(iter(dl))
    assert batch['imgs'].shape == (2, len(CAMERA_NAMES), 3) + IMG
    assert batch['voxel_semantics'].shape == (2, 100, 100, 8) and len(batch['sample_token']) == 2
    assert not torch.equal(batch['bev_aug'][0], torch.eye(4)) or not torch.equal(batch['bev_aug'][1], torch.eye(4))


def test_bad_arguments(micro_world):
    with pytest.raises(ValueError, match='grid_voxel=0.3'):
        _ds(micro_world, grid_voxel=0.3)
    with pytest.raises(ValueError, match='depth_source'):
        _ds(micro_world, depth_source='radar')
