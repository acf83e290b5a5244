"""tools/create_data.py on a tiny synthetic world: counts, order, geometry of the records, errors."""
import json
import os
import pickle
import shutil

import numpy as np
import pytest
from fixtures_data import load_tool, micro_world, tiny_world  # noqa: F401

from occ.constants import CAMERA_NAMES
from occ.data.infos import InfoFile, category_to_occ, detect_version, scene_splits
from occ.data.occ3d_io import OccFileError

create_data = load_tool('create_data')


def _nusc(root):
    from nuscenes import NuScenes
    return NuScenes(version=detect_version(root), dataroot=root, verbose=False)


@pytest.mark.slow
def test_counts_match_devkit(tiny_world):
    nusc = _nusc(tiny_world)
    train = InfoFile.read(os.path.join(tiny_world, 'occ_infos_train.pkl')).to_dict()
    val = InfoFile.read(os.path.join(tiny_world, 'occ_infos_val.pkl')).to_dict()
    assert len(train['infos']) + len(val['infos']) == len(nusc.sample)
    with open(os.path.join(tiny_world, 'splits.json')) as f:
        splits = json.load(f)
    assert {i['scene_name'] for i in train['infos']} == set(splits['train'])
    assert {i['scene_name'] for i in val['infos']} == set(splits['val'])
    md = train['metadata']
    assert md['splits_from'] == 'splits.json' and md['has_occ'] is True
    assert md['grid']['voxel_size'] == pytest.approx(0.4)
    assert md['dataroot'] == os.path.abspath(tiny_world)
    # Cooperative world: every sample knows its agent and the other agent's sample at the same time.
    with open(os.path.join(tiny_world, 'cooperative.json')) as f:
        coop = json.load(f)['samples']
    by_token = {i['token']: i for i in train['infos'] + val['infos']}
    for tok, i in by_token.items():
        assert i['agent_id'] == coop[tok]['agent_id']
        assert [n['token'] for n in i['neighbors']] == [n['token'] for n in coop[tok]['neighbors']]
        for n in i['neighbors']:
            assert by_token[n['token']]['timestamp'] == i['timestamp']


@pytest.mark.parametrize('world', ['micro_world', pytest.param('tiny_world', marks=pytest.mark.slow)])
def test_records_are_ordered_and_consistent(world, request):
    root = request.getfixturevalue(world)
    infos = InfoFile.read(os.path.join(root, 'occ_infos_train.pkl')).infos
    nusc = _nusc(root)
    keys = [(i['scene_name'], i['timestamp']) for i in infos]
    assert keys == sorted(keys)
    for i in infos:
        assert i['frame_idx'] == sum(1 for j in infos if j['scene_token'] == i['scene_token']
                                     and j['timestamp'] < i['timestamp'])
        assert set(i['cams']) == set(CAMERA_NAMES)
        assert os.path.isfile(os.path.join(root, i['occ_path']))
        assert os.path.isfile(os.path.join(root, i['lidar_path']))
        for c in i['cams'].values():
            assert c['cam2ego'].dtype == np.float32 and c['intrinsics'].shape == (3, 3)
            assert os.path.isfile(os.path.join(root, c['data_path']))
        # cam2ego = inv(ego2global) @ cam_ego2global @ sensor2ego, checked through the devkit's quaternions.
        s = nusc.get('sample', i['token'])
        sd = nusc.get('sample_data', s['data']['CAM_FRONT'])
        from pyquaternion import Quaternion
        cs = nusc.get('calibrated_sensor', sd['calibrated_sensor_token'])
        ep = nusc.get('ego_pose', sd['ego_pose_token'])
        lep = nusc.get('ego_pose', nusc.get('sample_data', s['data']['LIDAR_TOP'])['ego_pose_token'])
        # A point 10 m in front of the camera, to global via the devkit's own poses, then to keyframe ego.
        p = np.array([0.0, 0.0, 10.0])
        p = Quaternion(cs['rotation']).rotate(p) + cs['translation']
        p = Quaternion(ep['rotation']).rotate(p) + ep['translation']
        p = Quaternion(lep['rotation']).inverse.rotate(p - np.array(lep['translation']))
        c2e = i['cams']['CAM_FRONT']['cam2ego'].astype(np.float64)
        np.testing.assert_allclose(c2e[:3, :3] @ [0, 0, 10.0] + c2e[:3, 3], p, atol=1e-3)
        b = i['boxes']
        assert b['center'].shape == (len(b['yaw']), 3) and b['category'].dtype == np.int64


def test_micro_world_counts_boxes_and_time_offsets(micro_world):
    nusc = _nusc(micro_world)
    train = InfoFile.read(os.path.join(micro_world, 'occ_infos_train.pkl')).to_dict()
    val = InfoFile.read(os.path.join(micro_world, 'occ_infos_val.pkl')).to_dict()
    assert len(train['infos']) + len(val['infos']) == len(nusc.sample) == 8
    assert train['metadata']['splits_from'] == 'auto' and train['metadata']['grid']['voxel_size'] == 0.8
    assert {i['scene_name'] for i in val['infos']} == {'scene-0001'}
    for i in train['infos']:
        # The ego drives +5 m per keyframe past a parked car at global (10, 4, 0.8).
        np.testing.assert_allclose(i['boxes']['center'][0], [10 - 5 * i['frame_idx'], 4, 0.8], atol=1e-5)
        assert i['boxes']['category'].tolist() == [4]
        # Cameras fire 10 ms after the LiDAR while driving 10 m/s: 0.1 m further forward.
        np.testing.assert_allclose(i['cams']['CAM_FRONT']['cam2ego'][:3, 3], [1.1, 0.0, 1.5], atol=1e-5)
        np.testing.assert_allclose(i['cams']['CAM_FRONT']['sensor2ego'][:3, 3], [1.0, 0.0, 1.5], atol=1e-6)
        assert i['prev'] == ('' if i['frame_idx'] == 0 else train['infos'][i['frame_idx'] - 1]['token'])


def test_missing_labels_error_and_skip(micro_world, tmp_path):
    root = str(tmp_path / 'world')
    shutil.copytree(micro_world, root, ignore=shutil.ignore_patterns('occ_infos_*'))
    infos = InfoFile.read(os.path.join(micro_world, 'occ_infos_train.pkl')).infos
    victim = os.path.join(root, infos[2]['occ_path'])
    os.remove(victim)
    with pytest.raises(OccFileError, match=f'{victim}.*missing.*{infos[2]["token"]}'):
        from occ.data.infos import build_infos
        build_infos(root, progress=False)
    assert create_data.main(['--root', root, '--no-progress']) == 1
    assert create_data.main(['--root', root, '--no-progress', '--skip-missing-occ',
                             '--out', str(tmp_path / 'out')]) == 0
    kept = InfoFile.read(tmp_path / 'out' / 'occ_infos_train.pkl').infos
    assert len(kept) == len(infos) - 1 and infos[2]['token'] not in {i['token'] for i in kept}


def test_scene_splits_fallbacks(tmp_path):
    names = [f'scene-{i:04d}' for i in range(10)]
    splits, src = scene_splits(str(tmp_path), 'v1.0-custom', names)
    assert src == 'auto' and splits['val'] == names[8:] and splits['train'] == names[:8]
    splits, src = scene_splits(str(tmp_path), 'v1.0-mini', names)
    assert src == 'nuscenes' and 'scene-0103' in splits['val']
    (tmp_path / 'splits.json').write_text('{"train": ["a"], "val": 3}')
    with pytest.raises(ValueError, match='splits.json'):
        scene_splits(str(tmp_path), 'v1.0-mini', names)


def test_category_mapping():
    assert category_to_occ('vehicle.car') == 4
    assert category_to_occ('vehicle.bus.bendy') == 3
    assert category_to_occ('human.pedestrian.police_officer') == 7
    assert category_to_occ('animal') == 0
    assert category_to_occ('truck') == 10


def test_detect_version_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        detect_version(str(tmp_path))
    for v in ('v1.0-mini', 'v1.0-trainval'):
        os.makedirs(tmp_path / v)
        (tmp_path / v / 'scene.json').write_text('[]')
    assert detect_version(str(tmp_path)) == 'v1.0-trainval'


def test_info_file_errors(tmp_path):
    p = tmp_path / 'occ_infos_train.pkl'
    p.write_bytes(b'\x80\x05garbage')
    with pytest.raises(OccFileError, match='occ_infos_train.pkl.*corrupt or truncated'):
        InfoFile.read(str(p))
    with pytest.raises(FileNotFoundError, match='create_data'):
        InfoFile.read(str(tmp_path / 'nope.pkl'))


def _record(token='t0', **extra):
    rec = dict(token=token, scene_token='s', scene_name='scene-0', frame_idx=0, timestamp=0,
               ego2global=np.eye(4, dtype=np.float32), lidar2ego=np.eye(4, dtype=np.float32),
               occ_path=f'gts/scene-0/{token}/labels.npz',
               cams={'CAM_FRONT': dict(intrinsics=np.eye(3, dtype=np.float32),
                                       cam2ego=np.eye(4, dtype=np.float32))})
    rec.update(extra)
    return rec


def _write(path, data, protocol=pickle.HIGHEST_PROTOCOL):
    with open(path, 'wb') as f:
        pickle.dump(data, f, protocol=protocol)
    return str(path)


def test_info_file_reads_occ_and_mmdet3d_layouts(tmp_path):
    """occ's own layout and mmdet3d's (0.x: infos/metadata, 1.x: data_list/metainfo), at every
    pickle protocol: numpy arrays (object arrays too), scalars and collections load."""
    from collections import OrderedDict
    boxes = {'instance_token': np.asarray(['a', 'b'], dtype=object), 'yaw': np.float32([0.5, 1.0])}
    for proto in (2, 4, 5):
        occ_path = _write(tmp_path / f'occ{proto}.pkl', {'metadata': {'dataroot': '/r', 'grid': {'voxel_size': 0.4}},
                                                         'infos': [_record(boxes=boxes)]}, proto)
        f = InfoFile.read(occ_path)
        assert len(f) == 1 and f.dataroot == '/r' and f.grid == {'voxel_size': 0.4}
        assert f[0]['boxes']['instance_token'].tolist() == ['a', 'b']
        mm = {'metainfo': OrderedDict(version='v1.0-trainval', dataset='nuscenes'),
              'data_list': [{'token': 't0', 'sample_idx': np.int64(0), 'ego2global': np.eye(4).tolist(),
                             'images': {'CAM_FRONT': {'cam2img': [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}},
                             'instances': [{'bbox_3d': [0.0] * 7, 'bbox_label_3d': 4}]}]}
        g = InfoFile.read(_write(tmp_path / f'mm{proto}.pkl', mm, proto))
        assert g.metadata['version'] == 'v1.0-trainval' and g[0]['instances'][0]['bbox_label_3d'] == 4
        with pytest.raises(OccFileError, match='no dataroot'):
            g.dataroot


@pytest.mark.parametrize('bad, match', [
    (dict(ego2global=np.full((4, 4), np.nan, np.float32)), 'sample t1: ego2global holds non-finite'),
    (dict(lidar2ego=np.eye(3)), 'sample t1: lidar2ego has shape \\(3, 3\\)'),
    (dict(cams={'CAM_FRONT': dict(cam2ego=np.diag([1, 1, 1, np.inf]))}), 'sample t1: CAM_FRONT cam2ego holds non-finite'),
    (dict(cams={'CAM_BACK': dict(intrinsics='f=500')}), 'sample t1: CAM_BACK intrinsics is not a numeric matrix'),
    (dict(token='t0'), 'sample t0 appears twice'),
])
def test_info_file_checks_every_record(tmp_path, bad, match):
    second = dict(_record('t1'), **bad)
    path = _write(tmp_path / 'occ_infos_val.pkl', {'metadata': {}, 'infos': [_record('t0'), second]})
    with pytest.raises(OccFileError, match='occ_infos_val.pkl: ' + match):
        InfoFile.read(path)


def test_info_file_requires_what_the_reader_needs(tmp_path):
    from occ.data.infos import DATASET_KEYS, RAY_ORIGIN_KEYS
    rec = _record()
    del rec['lidar2ego'], rec['cams']
    path = _write(tmp_path / 'i.pkl', {'metadata': {}, 'infos': [rec]})
    assert len(InfoFile.read(path)) == 1
    with pytest.raises(OccFileError, match='i.pkl: sample t0 lacks lidar2ego'):
        InfoFile.read(path, RAY_ORIGIN_KEYS)
    with pytest.raises(OccFileError, match='sample t0 lacks cams'):
        InfoFile.read(path, DATASET_KEYS)
    for data, what in (([rec], 'got list'), ({'metadata': {}, 'infos': [3]}, 'record 0 is a int')):
        with pytest.raises(OccFileError, match=what):
            InfoFile.read(_write(tmp_path / 'j.pkl', data))


def test_class_counts_recorded_per_split_equal_a_loop(micro_world):
    """create_data records each split's voxels per class (camera-visible and all), counted by hand here."""
    from occ.data.occ3d_io import load_occ3d_labels
    for split in ('train', 'val'):
        info = InfoFile.read(os.path.join(micro_world, f'occ_infos_{split}.pkl'))
        counts = info.class_counts
        assert counts is not None and set(counts) == {'camera', 'all'}
        camera, every = [0] * 18, [0] * 18
        for rec in info.infos:
            lab = load_occ3d_labels(os.path.join(micro_world, rec['occ_path']))
            for v, m in zip(lab['semantics'].reshape(-1).tolist(), lab['mask_camera'].reshape(-1).tolist()):
                if v < 18:
                    every[v] += 1
                    camera[v] += int(m > 0)
        assert counts['camera'] == camera and counts['all'] == every
        assert sum(camera) > 0 and camera[17] < every[17]


def test_class_weights_come_from_the_split_counts(micro_world, tmp_path):
    """WeightedCELoss(class_counts=<info file>) uses the split's own counts; without them, Occ3D's (warned)."""
    import torch

    from occ.models.losses import OCC3D_CLASS_COUNTS, WeightedCELoss, class_weights_from_counts
    path = os.path.join(micro_world, 'occ_infos_train.pkl')
    loss = WeightedCELoss(class_weight='auto', class_counts=path)
    assert loss.weight is None                      # nothing read before the first training step
    logits, target = torch.randn(1, 18, 4, 4, 2), torch.randint(0, 18, (1, 4, 4, 2))
    loss(logits, target)
    own = class_weights_from_counts(InfoFile.read(path).class_counts['camera'])
    np.testing.assert_allclose(loss.weight.numpy(), own)
    assert not np.allclose(own, class_weights_from_counts(OCC3D_CLASS_COUNTS))
    # An info file from before class counts were recorded: warn and use the Occ3D counts.
    data = InfoFile.read(path).to_dict()
    data['metadata'] = {k: v for k, v in data['metadata'].items() if k != 'class_counts'}
    old = tmp_path / 'old_infos.pkl'
    with open(old, 'wb') as f:
        pickle.dump(data, f)
    loss = WeightedCELoss(class_weight='auto', class_counts=str(old))
    with pytest.warns(UserWarning, match='no class_counts'):
        loss(logits, target)
    np.testing.assert_allclose(loss.weight.numpy(), class_weights_from_counts(OCC3D_CLASS_COUNTS))
