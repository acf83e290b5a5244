"""tools/create_data.py on a tiny synthetic world: counts, order, geometry of the records, errors."""
import json
import os
import pickle
import shutil

import numpy as np
import pytest
from fixtures_data import load_tool, micro_world, tiny_world  # noqa: F401

from occ.constants import CAMERA_NAMES
from occ.data.infos import category_to_occ, detect_version, load_infos, scene_splits
from occ.data.occ3d_io import OccFileError

create_data = load_tool('create_data')


def _nusc(root):
    from nuscenes import NuScenes
    return NuScenes(version=detect_version(root), dataroot=root, verbose=False)


@pytest.mark.slow
def test_counts_match_devkit(tiny_world):
    nusc = _nusc(tiny_world)
    train = load_infos(os.path.join(tiny_world, 'occ_infos_train.pkl'))
    val = load_infos(os.path.join(tiny_world, 'occ_infos_val.pkl'))
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
    infos = load_infos(os.path.join(root, 'occ_infos_train.pkl'))['infos']
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
    train = load_infos(os.path.join(micro_world, 'occ_infos_train.pkl'))
    val = load_infos(os.path.join(micro_world, 'occ_infos_val.pkl'))
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
    infos = load_infos(os.path.join(micro_world, 'occ_infos_train.pkl'))['infos']
    victim = os.path.join(root, infos[2]['occ_path'])
    os.remove(victim)
    with pytest.raises(OccFileError, match=f'{victim}.*missing.*{infos[2]["token"]}'):
        from occ.data.infos import build_infos
        build_infos(root, progress=False)
    assert create_data.main(['--root', root, '--no-progress']) == 1
    assert create_data.main(['--root', root, '--no-progress', '--skip-missing-occ',
                             '--out', str(tmp_path / 'out')]) == 0
    with open(tmp_path / 'out' / 'occ_infos_train.pkl', 'rb') as f:
        kept = pickle.load(f)['infos']
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


def test_load_infos_errors(tmp_path):
    p = tmp_path / 'occ_infos_train.pkl'
    p.write_bytes(b'\x80\x05garbage')
    with pytest.raises(OccFileError, match='occ_infos_train.pkl'):
        load_infos(str(p))
    with pytest.raises(FileNotFoundError, match='create_data'):
        load_infos(str(tmp_path / 'nope.pkl'))
