"""The synthetic database read the way third-party clients read nuScenes and Occ3D: the devkit's
ego-pose export, split helpers, radar reader, CAN bus API and in-box point counts; the Occ3D
annotations.json index; sweep chains; and make_synthetic's refusal to write into foreign folders."""
import json
import os

import cv2
import numpy as np
import pytest
from fixtures_data import load_tool, tiny_world  # noqa: F401
from pyquaternion import Quaternion

from occ.constants import CAMERA_NAMES, LIDAR_NAME
from occ.data.synthetic import MARKER, generate, scene_names
from occ.data.synthetic.radar import RADAR_NAMES

SMALL = dict(scenes=1, frames=2, seed=4, voxel=0.8, image_size=(32, 64), workers=1, progress=False)


def _nusc(root):
    from nuscenes.nuscenes import NuScenes
    return NuScenes(version='v1.0-trainval', dataroot=root, verbose=False)


def _matrix(rec):
    m = np.eye(4)
    m[:3, :3] = Quaternion(rec['rotation']).rotation_matrix
    m[:3, 3] = rec['translation']
    return m


@pytest.mark.slow
def test_ego_pose_tokens_are_sample_data_tokens(tiny_world):
    from nuscenes.scripts.export_poses import derive_latlon, get_poses
    nusc = _nusc(tiny_world)
    assert len(nusc.ego_pose) == len(nusc.sample_data)
    for sd in nusc.sample_data:
        assert sd['ego_pose_token'] == sd['token']
        assert nusc.get('ego_pose', sd['token'])['timestamp'] == sd['timestamp']
    for scene in nusc.scene:                       # the devkit's export_poses walks LIDAR_TOP this way
        poses = get_poses(nusc, scene['token'])
        assert len(poses) == scene['nbr_samples'] + 9 * (scene['nbr_samples'] - 1)    # keyframes + 20 Hz sweeps
        assert all(a['timestamp'] < b['timestamp'] for a, b in zip(poses, poses[1:]))
        location = nusc.get('log', scene['log_token'])['location']      # one of the four nuScenes maps
        assert len(derive_latlon(location, poses)) == len(poses)


def test_scene_names_follow_the_official_splits():
    from nuscenes.utils.splits import create_splits_scenes
    from occ.data.synthetic.nuscenes_db import can_bus_blacklist
    official = create_splits_scenes()
    names = scene_names(5, 2, val_worlds={3, 4})
    assert len(set(names.values())) == 10
    for (w, _), name in names.items():
        assert name in official['val' if w >= 3 else 'train']
        assert int(name[-4:]) not in can_bus_blacklist()
    assert {161, 309, 71} <= can_bus_blacklist()          # no CAN data / misaligned route in the devkit's lists
    with pytest.raises(ValueError, match='official nuScenes val'):
        scene_names(200, 1, val_worlds=set(range(200)))
    mini = scene_names(3, 1, val_worlds={2}, version='v1.0-mini')        # the devkit pairs mini with these
    assert [mini[(w, 0)] in official['mini_val' if w == 2 else 'mini_train'] for w in range(3)] == [True] * 3


@pytest.mark.slow
def test_custom_splits_through_the_devkit(tiny_world):
    from nuscenes.utils.splits import create_splits_scenes, get_scenes_of_split, is_predefined_split
    nusc = _nusc(tiny_world)
    names = sorted(s['name'] for s in nusc.scene)
    root_splits = json.load(open(os.path.join(tiny_world, 'splits.json')))
    assert not is_predefined_split('synthetic_train')
    assert sorted(get_scenes_of_split('synthetic_train', nusc)) == sorted(root_splits['train']) == names
    assert get_scenes_of_split('synthetic_val', nusc) == root_splits['val'] == []
    # the official lists (what mmdetection3d / BEVDet / the Occ3D converter use) agree with splits.json
    assert set(names) <= set(create_splits_scenes()['train'])


@pytest.mark.slow
def test_annotations_json_schema(tiny_world):
    nusc = _nusc(tiny_world)
    ann = json.load(open(os.path.join(tiny_world, 'annotations.json')))
    splits = json.load(open(os.path.join(tiny_world, 'splits.json')))
    assert ann['train_split'] == splits['train'] and ann['val_split'] == splits['val']
    assert set(ann['scene_infos']) == {s['name'] for s in nusc.scene}
    for scene in nusc.scene:
        infos = ann['scene_infos'][scene['name']]
        tokens, tok = [], scene['first_sample_token']
        while tok:
            tokens.append(tok)
            tok = nusc.get('sample', tok)['next']
        assert list(infos) == tokens                                   # samples in time order
        for tok, info in infos.items():
            sample = nusc.get('sample', tok)
            assert info['timestamp'] == str(sample['timestamp'])
            assert (info['prev'], info['next']) == (sample['prev'], sample['next'])
            assert info['gt_path'] == f'gts/{scene["name"]}/{tok}/labels.npz'
            with np.load(os.path.join(tiny_world, info['gt_path'])) as z:
                assert {'semantics', 'mask_lidar', 'mask_camera'} <= set(z.files)
            lidar_sd = nusc.get('sample_data', sample['data'][LIDAR_NAME])
            ep = nusc.get('ego_pose', lidar_sd['ego_pose_token'])
            assert info['ego_pose'] == {'translation': ep['translation'], 'rotation': ep['rotation']}
            assert set(info['camera_sensor']) == set(CAMERA_NAMES)
            for ch, cam in info['camera_sensor'].items():
                sd = nusc.get('sample_data', sample['data'][ch])
                cs = nusc.get('calibrated_sensor', sd['calibrated_sensor_token'])
                assert os.path.join('samples', cam['img_path']) == sd['filename']   # imgs/ of the release
                img = cv2.imread(os.path.join(tiny_world, 'samples', cam['img_path']))
                assert img.shape[:2] == (sd['height'], sd['width'])
                assert cam['intrinsic'] == cam['intrinsics'] == cs['camera_intrinsic']
                assert np.asarray(cam['intrinsic']).shape == (3, 3)
                assert cam['extrinsic'] == {'translation': cs['translation'], 'rotation': cs['rotation']}
                cep = nusc.get('ego_pose', sd['ego_pose_token'])
                assert cam['ego_pose'] == {'translation': cep['translation'], 'rotation': cep['rotation']}


@pytest.mark.slow
def test_radar_read_by_the_devkit(tiny_world):
    """Every radar file loads with RadarPointCloud.from_file (the default filters keep every return);
    returns lie in the sensor's plane and within its range; those inside the box of a still object
    have no compensated radial velocity, those on a moving one about that of the box (the devkit's
    box_velocity averages over 0.5 s, the radar measures the instant) along the line of sight."""
    from nuscenes.utils.data_classes import RadarPointCloud
    from nuscenes.utils.geometry_utils import points_in_box
    nusc = _nusc(tiny_world)
    assert {s['channel'] for s in nusc.sensor if s['modality'] == 'radar'} == set(RADAR_NAMES)
    total = checked = 0
    for sample in nusc.sample:
        for ch in RADAR_NAMES:
            sd = nusc.get('sample_data', sample['data'][ch])
            assert sd['fileformat'] == 'pcd' and sd['filename'].endswith('.pcd') and sd['is_key_frame']
            path, boxes, _ = nusc.get_sample_data(sd['token'])
            pc = RadarPointCloud.from_file(path)
            RadarPointCloud.disable_filters()
            try:
                assert RadarPointCloud.from_file(path).points.shape == pc.points.shape
            finally:
                RadarPointCloud.default_filters()
            pts = pc.points
            assert pts.shape[0] == 18
            total += pts.shape[1]
            if not pts.shape[1]:
                continue
            assert np.all(pts[2] == 0) and np.all(np.hypot(pts[0], pts[1]) < 101)
            u = pts[:2] / np.linalg.norm(pts[:2], axis=0)
            v_comp = (pts[8:10] * u).sum(0)                      # radial compensated speed
            cs = nusc.get('calibrated_sensor', sd['calibrated_sensor_token'])
            ep = nusc.get('ego_pose', sd['ego_pose_token'])
            g2s = np.linalg.inv(_matrix(ep) @ _matrix(cs))[:3, :3]
            # A point inside a box must carry the Doppler of that box's object or of a box right
            # next to it (range / azimuth noise; a pedestrian beside a passing car): the PCD does
            # not say which object a return came from.
            inside_any = np.zeros(pts.shape[1], bool)
            matched = np.zeros(pts.shape[1], bool)
            for box in boxes:
                vel = nusc.box_velocity(box.token)
                if np.isnan(vel).any():
                    continue
                speed = np.linalg.norm(vel)
                expect = ((g2s @ vel)[:2, None] * u).sum(0)
                # box_velocity is the mean over neighbouring keyframes; pedestrians turn and stop
                # within that time, so their instantaneous Doppler may differ by more.
                slack = 1.5 if box.name.startswith('human.') else 0.5
                tol = 0.3 if speed < 0.05 else 1.0 + slack * speed
                inside_any |= points_in_box(box, pts[:3])
                matched |= points_in_box(box, pts[:3], wlh_factor=1.5) & (np.abs(v_comp - expect) < tol)
            bad = inside_any & ~matched
            assert not bad.any(), (ch, v_comp[bad])
            checked += int(inside_any.sum())
    assert total > 50 and checked > 5


@pytest.mark.slow
def test_can_bus_pose_messages(tiny_world):
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus
    nusc = _nusc(tiny_world)
    can = NuScenesCanBus(dataroot=tiny_world)
    for scene in nusc.scene:
        poses = can.get_messages(scene['name'], 'pose')
        utime = np.array([m['utime'] for m in poses])
        assert set(poses[0]) == {'utime', 'pos', 'orientation', 'vel', 'accel', 'rotation_rate'}
        assert np.all(np.diff(utime) == 20_000)                              # 50 Hz
        samples, tok = [], scene['first_sample_token']
        while tok:
            samples.append(nusc.get('sample', tok))
            tok = samples[-1]['next']
        assert utime[0] == samples[0]['timestamp'] and utime[-1] == samples[-1]['timestamp']
        for s in samples:
            # what BEVFormer-style converters take: the last message not after the sample
            m = poses[int(np.nonzero(utime <= s['timestamp'])[0][-1])]
            ep = nusc.get('ego_pose', nusc.get('sample_data', s['data'][LIDAR_NAME])['ego_pose_token'])
            assert m['pos'] == ep['translation'] and m['orientation'] == ep['rotation']
            assert len(m['pos'] + m['orientation'] + m['accel'] + m['rotation_rate'] + m['vel']) == 16
        # the velocity integrates to the driven path between keyframes (ego frame x = heading)
        pos = np.array([m['pos'][:2] for m in poses])
        yaw = np.array([Quaternion(m['orientation']).yaw_pitch_roll[0] for m in poses])
        vel = np.array([m['vel'][0] for m in poses])
        step = np.stack([np.cos(yaw), np.sin(yaw)], 1) * vel[:, None] / 50
        assert np.abs(np.cumsum(step[:-1], 0)[-1] - (pos[-1] - pos[0])).max() < 0.1
        monitor = can.get_messages(scene['name'], 'vehicle_monitor')
        assert [m['utime'] for m in monitor] == [s['timestamp'] for s in samples]
        assert np.allclose([m['vehicle_speed'] for m in monitor], vel[::25] * 3.6)
        route = np.array(can.get_messages(scene['name'], 'route'))
        assert route.ndim == 2 and route.shape[1] == 2
        assert np.linalg.norm(route[None] - pos[:, None], axis=2).min(1).max() < 3.0  # driving on its route


@pytest.mark.slow
def test_in_box_point_counts_are_the_devkits(tiny_world):
    from nuscenes.utils.data_classes import LidarPointCloud, RadarPointCloud
    from nuscenes.utils.geometry_utils import points_in_box
    nusc = _nusc(tiny_world)
    n_lidar = n_radar = 0
    for sample in nusc.sample:
        radar = {a: 0 for a in sample['anns']}
        for ch in (LIDAR_NAME,) + RADAR_NAMES:
            path, boxes, _ = nusc.get_sample_data(sample['data'][ch], selected_anntokens=sample['anns'])
            pc = (LidarPointCloud if ch == LIDAR_NAME else RadarPointCloud).from_file(path)
            for box in boxes:
                n = int(points_in_box(box, pc.points[:3]).sum())
                if ch == LIDAR_NAME:
                    assert n == nusc.get('sample_annotation', box.token)['num_lidar_pts'], box.token
                    n_lidar += n > 0
                else:
                    radar[box.token] += n
        for tok, n in radar.items():
            assert n == nusc.get('sample_annotation', tok)['num_radar_pts'], tok
            n_radar += n > 0
    assert n_lidar > 20 and n_radar > 5


def test_box_counts_match_the_devkit_on_faces_and_corners():
    """count_points_in_boxes against the devkit's get_sample_data + points_in_box route, on random
    boxes with float32 points scattered around them and placed exactly on faces and corners."""
    from nuscenes.utils.data_classes import Box
    from nuscenes.utils.geometry_utils import points_in_box
    from occ.data.synthetic.box_counts import count_points_in_boxes
    from occ.data.synthetic.nuscenes_db import yaw_quat
    rng = np.random.default_rng(0)
    pose = {'translation': [120.3, -41.7, 0.0], 'rotation': yaw_quat(0.7)}
    sensor = {'translation': [0.94, 0.0, 1.84], 'rotation': list(Quaternion(axis=[0, 0, 1], angle=-np.pi / 2).elements)}
    s2g = _matrix(pose) @ _matrix(sensor)
    boxes, pts = [], []
    for _ in range(40):
        w, l, h = rng.uniform(0.5, 3, 3)
        c = np.array(pose['translation']) + [*rng.uniform(-20, 20, 2), h / 2]
        boxes.append({'translation': c.tolist(), 'size': [w, l, h], 'rotation': yaw_quat(rng.uniform(-3, 3))})
        rot = Quaternion(boxes[-1]['rotation']).rotation_matrix
        local = rng.uniform(-1.2, 1.2, (60, 3)) * [l / 2, w / 2, h / 2]
        local[:20] = np.sign(local[:20]) * [l / 2, w / 2, h / 2]                      # corners
        local[20:30, 0] = np.sign(local[20:30, 0]) * l / 2                           # faces
        pts.append((local @ rot.T + c - s2g[:3, 3]) @ s2g[:3, :3])                  # into the sensor frame
    pts = np.concatenate(pts).astype(np.float32)
    ours = count_points_in_boxes(pts, boxes, sensor, pose)
    for b, n in zip(boxes, ours):
        box = Box(b['translation'], b['size'], Quaternion(b['rotation']))
        box.translate(-np.array(pose['translation']))
        box.rotate(Quaternion(pose['rotation']).inverse)
        box.translate(-np.array(sensor['translation']))
        box.rotate(Quaternion(sensor['rotation']).inverse)
        assert n == points_in_box(box, pts[:, :3].T).sum()
    assert ours.sum() > 400


@pytest.mark.slow
def test_lidar_sweep_chains(tiny_world):
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus
    from nuscenes.utils.data_classes import LidarPointCloud
    nusc = _nusc(tiny_world)
    can = NuScenesCanBus(dataroot=tiny_world)
    for scene in nusc.scene:
        can_pose = {m['utime']: m for m in can.get_messages(scene['name'], 'pose')}
        first = nusc.get('sample', scene['first_sample_token'])
        for ch in CAMERA_NAMES + (LIDAR_NAME,) + RADAR_NAMES:
            sd = nusc.get('sample_data', first['data'][ch])
            assert sd['prev'] == ''
            chain = [sd]
            while sd['next']:
                nxt = nusc.get('sample_data', sd['next'])
                assert nxt['prev'] == sd['token'] and nxt['timestamp'] > sd['timestamp']
                chain.append(sd := nxt)
            keys = [i for i, s in enumerate(chain) if s['is_key_frame']]
            assert len(keys) == scene['nbr_samples'] and keys[0] == 0 and keys[-1] == len(chain) - 1
            if ch != LIDAR_NAME:
                assert len(chain) == len(keys)                 # cameras (by default) and radars: keyframes only
                continue
            k0, k1 = chain[keys[0]], chain[keys[1]]
            sweeps = chain[keys[0] + 1:keys[1]]
            assert len(sweeps) == 9 and not any(s['is_key_frame'] for s in sweeps)
            ts = [s['timestamp'] for s in chain[keys[0]:keys[1] + 1]]
            assert np.all(np.diff(ts) == 50_000)                # 20 Hz
            p0 = np.array(nusc.get('ego_pose', k0['token'])['translation'])
            p1 = np.array(nusc.get('ego_pose', k1['token'])['translation'])
            for s in sweeps:
                assert s['filename'].startswith(f'sweeps/{LIDAR_NAME}/') and s['fileformat'] == 'pcd'
                near = k0 if s['timestamp'] - k0['timestamp'] <= k1['timestamp'] - s['timestamp'] else k1
                assert s['sample_token'] == near['sample_token']    # the nearest keyframe, as in nuScenes
                assert len(LidarPointCloud.from_file(os.path.join(tiny_world, s['filename'])).points[0]) > 5000
                ep = nusc.get('ego_pose', s['token'])
                p, gap = np.array(ep['translation']), np.linalg.norm(p1 - p0)
                # on the way between the keyframe poses, where the CAN bus says the vehicle was
                assert np.linalg.norm(p - p0) <= gap + 0.05 and np.linalg.norm(p - p1) <= gap + 0.05
                if s['timestamp'] in can_pose:
                    assert can_pose[s['timestamp']]['pos'] == ep['translation']


def test_camera_sweeps_and_unchanged_keyframes(tmp_path):
    """Camera sweeps (12 Hz) behind a flag; sweeps and radar draw from their own random streams, so
    keyframe images, LiDAR and labels are byte-identical with or without them."""
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    generate(a, lidar_sweeps=0, radar=False, **SMALL)
    generate(b, camera_sweeps=5, **SMALL)
    for sub in ('samples/CAM_FRONT', 'samples/LIDAR_TOP', 'depth/CAM_BACK', 'gts'):
        files = sorted(os.path.relpath(os.path.join(d, f), a) for d, _, fs in os.walk(os.path.join(a, sub))
                       for f in fs)
        assert files
        for f in files:
            assert open(os.path.join(a, f), 'rb').read() == open(os.path.join(b, f), 'rb').read(), f
    nusc = _nusc(b)
    for ch in CAMERA_NAMES:
        sd = nusc.get('sample_data', nusc.sample[0]['data'][ch])
        chain = []
        while sd['next']:
            sd = nusc.get('sample_data', sd['next'])
            chain.append(sd)
        assert [s['is_key_frame'] for s in chain] == [False] * 5 + [True]
        assert np.all(np.abs(np.diff([nusc.sample[0]['timestamp']] + [s['timestamp'] for s in chain]) - 83_333) <= 1)
        img = cv2.imread(os.path.join(b, chain[0]['filename']))
        assert chain[0]['filename'].startswith(f'sweeps/{ch}/') and img.shape[:2] == (32, 64)


def test_out_folder_refusal(tmp_path):
    tool = load_tool('make_synthetic')
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('mine')
    args = ['--scenes', '1', '--frames', '1', '--image-size', '32', '64', '--workers', '1', '--quiet',
            '--lidar-sweeps', '0', '--no-radar']
    for bad in (['--out', str(foreign)], ['--out', str(tmp_path / 'new'), '--val-fraction', '1.0'],
                ['--out', str(tmp_path / 'new'), '--val-fraction', '-0.1']):
        with pytest.raises(SystemExit) as e:
            tool.main(bad + args)
        assert e.value.code == 2
    assert os.listdir(foreign) == ['notes.txt'] and not (tmp_path / 'new').exists()
    with pytest.raises(ValueError, match='--force'):
        generate(str(foreign), **SMALL)
    # --force writes into it, keeps what was there and leaves no marker (it is still not ours)
    generate(str(foreign), force=True, lidar_sweeps=0, radar=False, **SMALL)
    assert (foreign / 'notes.txt').read_text() == 'mine' and not (foreign / MARKER).exists()
    assert (foreign / 'annotations.json').exists()
    # a folder it created is regenerated cleanly: nothing of the previous world survives
    own = str(tmp_path / 'own')
    generate(own, lidar_sweeps=0, radar=False, **dict(SMALL, scenes=2))
    old = set(os.listdir(os.path.join(own, 'gts')))
    generate(own, lidar_sweeps=0, radar=False, **dict(SMALL, val_fraction=0.0))
    assert set(os.listdir(os.path.join(own, 'gts'))) == {'scene-0001'} and len(old) == 2
    assert json.load(open(os.path.join(own, 'splits.json'))) == {'train': ['scene-0001'], 'val': []}
