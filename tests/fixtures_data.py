"""Tiny synthetic worlds for the data tests, generated once per test process.

Import the fixtures into a test module (``from fixtures_data import tiny_world``).
The world is cached in a module global, so several test modules that import
the fixture still generate it only once.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))


def load_tool(name: str):
    """Import ``tools/<name>.py`` as a module without putting tools/ on sys.path
    (tools/test.py would shadow the standard library's ``test`` package)."""
    import importlib.util
    key = f'occ_tools_{name}'
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, os.path.join(REPO, 'tools', f'{name}.py'))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
    return sys.modules[key]

# One town, 2 keyframes, 2 connected vehicles (one scene each), small images: covers the
# geometry and cooperative tests; ~25 s of CPU to build, so the tests using it are marked slow.
# Mechanics (history, future, errors) use the hand-written micro world below instead.
TINY = dict(scenes=1, frames=2, seed=0, image_size=(90, 160), agents=2)
_CACHE: dict = {}


def make_world(root: str, scenes: int, frames: int, seed: int, image_size, agents=None, voxel=0.4) -> str:
    """Write a synthetic nuScenes root with tools/make_synthetic.py and its info files."""
    cmd = [sys.executable, os.path.join(REPO, 'tools', 'make_synthetic.py'), '--out', root,
           '--scenes', str(scenes), '--frames', str(frames), '--seed', str(seed),
           '--image-size', str(image_size[0]), str(image_size[1]), '--voxel', str(voxel)]
    if agents:
        cmd += ['--agents', str(agents)]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    subprocess.run(cmd, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    rc = load_tool('create_data').main(['--root', root, '--no-progress'])
    assert rc == 0, f'create_data failed on {root}'
    return root


def _world(tmp_path_factory, key: str, spec: dict) -> str:
    if key not in _CACHE:
        root = str(tmp_path_factory.mktemp(key))
        _CACHE[key] = make_world(root, **spec)
    return _CACHE[key]


@pytest.fixture(scope='session')
def tiny_world(tmp_path_factory) -> str:
    """Root of a 1-town, 2-keyframe, 2-agent synthetic world with occ_infos_{train,val}.pkl."""
    return _world(tmp_path_factory, 'tiny_world', TINY)


# --- a micro nuScenes root written directly (no generator): fast tests of the mechanics ---------

def _tok(*parts) -> str:
    import hashlib
    return hashlib.md5('/'.join(map(str, parts)).encode()).hexdigest()


def write_micro_nuscenes(root: str, scenes: int = 2, frames: int = 4, image_hw=(45, 80), seed: int = 0,
                         version: str = 'v1.0-micro', voxel: float = 0.8) -> str:
    """A minimal but complete nuScenes root the devkit loads: straight drives, one car each scene.

    Images are noise, labels are a ground plane plus a box where the car is; no
    splits.json, so create_data falls back to the deterministic split.
    """
    import json

    import cv2
    import numpy as np
    from pyquaternion import Quaternion

    from occ.constants import CAMERA_NAMES, FREE
    from occ.data.occ3d_io import save_occ3d_labels
    from occ.geometry import OccGrid

    rng = np.random.default_rng(seed)
    h, w = image_hw
    t = {k: [] for k in ('category', 'attribute', 'visibility', 'instance', 'sensor', 'calibrated_sensor',
                         'ego_pose', 'log', 'scene', 'sample', 'sample_data', 'sample_annotation', 'map')}
    t['category'].append({'token': _tok('cat'), 'name': 'vehicle.car', 'description': ''})
    t['visibility'].append({'token': '4', 'level': 'v80-100', 'description': ''})
    yaws = {'CAM_FRONT_LEFT': 55, 'CAM_FRONT': 0, 'CAM_FRONT_RIGHT': -55,
            'CAM_BACK_LEFT': 110, 'CAM_BACK': 180, 'CAM_BACK_RIGHT': -110}
    f = w / 2 / np.tan(np.radians(35))
    for ch in CAMERA_NAMES + ('LIDAR_TOP',):
        t['sensor'].append({'token': _tok('sensor', ch), 'channel': ch,
                            'modality': 'lidar' if ch == 'LIDAR_TOP' else 'camera'})
        if ch == 'LIDAR_TOP':
            rot, trans, k = Quaternion(axis=[0, 0, 1], degrees=-90), [0.9, 0.0, 1.8], []
        else:
            # Camera axes (x right, y down, z forward) turned to look along yaw.
            base = Quaternion(matrix=np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float))
            rot = Quaternion(axis=[0, 0, 1], degrees=yaws[ch]) * base
            trans, k = [1.0, 0.0, 1.5], [[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]]
        t['calibrated_sensor'].append({'token': _tok('cs', ch), 'sensor_token': _tok('sensor', ch),
                                       'translation': trans, 'rotation': list(rot.elements),
                                       'camera_intrinsic': k})
    grid = OccGrid.from_voxel(voxel)
    for s in range(scenes):
        name = f'scene-{s:04d}'
        log = _tok('log', s)
        t['log'].append({'token': log, 'logfile': '', 'vehicle': 'micro', 'date_captured': '2026-01-01',
                         'location': 'micro'})
        inst = _tok('inst', s)
        car = np.array([10.0 + 3 * s, 4.0, 0.8])       # global; the ego drives along +x at 5 m/keyframe
        samples = [_tok('sample', s, i) for i in range(frames)]
        anns = [_tok('ann', s, i) for i in range(frames)]
        t['instance'].append({'token': inst, 'category_token': _tok('cat'), 'nbr_annotations': frames,
                              'first_annotation_token': anns[0], 'last_annotation_token': anns[-1]})
        t['scene'].append({'token': _tok('scene', s), 'log_token': log, 'nbr_samples': frames, 'name': name,
                           'description': '', 'first_sample_token': samples[0], 'last_sample_token': samples[-1]})
        for i, st in enumerate(samples):
            ts = 1_000_000 * (100 * s + 1) + 500_000 * i
            ego = np.array([5.0 * i, 0.0, 0.0])
            t['sample'].append({'token': st, 'timestamp': ts, 'scene_token': _tok('scene', s),
                                'prev': samples[i - 1] if i else '', 'next': samples[i + 1] if i + 1 < frames else ''})
            t['sample_annotation'].append({
                'token': anns[i], 'sample_token': st, 'instance_token': inst, 'visibility_token': '4',
                'attribute_tokens': [], 'translation': car.tolist(), 'size': [1.8, 4.4, 1.6],
                'rotation': [1.0, 0, 0, 0], 'prev': anns[i - 1] if i else '',
                'next': anns[i + 1] if i + 1 < frames else '', 'num_lidar_pts': 10, 'num_radar_pts': 0})
            for ch in CAMERA_NAMES + ('LIDAR_TOP',):
                sd = _tok('sd', s, i, ch)
                ep = _tok('ep', s, i, ch)
                # Cameras fire 10 ms after the LiDAR: cam2ego must absorb that motion.
                dt = 0 if ch == 'LIDAR_TOP' else 10_000
                t['ego_pose'].append({'token': ep, 'timestamp': ts + dt, 'rotation': [1.0, 0, 0, 0],
                                      'translation': (ego + [dt * 1e-5, 0, 0]).tolist()})
                if ch == 'LIDAR_TOP':
                    fn = f'samples/LIDAR_TOP/{name}__LIDAR_TOP__{ts}.pcd.bin'
                    pts = np.concatenate([rng.uniform(-30, 30, (500, 3)), rng.uniform(0, 1, (500, 2))], 1)
                    os.makedirs(os.path.join(root, os.path.dirname(fn)), exist_ok=True)
                    pts.astype(np.float32).tofile(os.path.join(root, fn))
                    fmt, hh, ww = 'pcd', 0, 0
                else:
                    fn = f'samples/{ch}/{name}__{ch}__{ts + dt}.jpg'
                    os.makedirs(os.path.join(root, os.path.dirname(fn)), exist_ok=True)
                    cv2.imwrite(os.path.join(root, fn), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
                    fmt, hh, ww = 'jpg', h, w
                t['sample_data'].append({'token': sd, 'sample_token': st, 'ego_pose_token': ep,
                                         'calibrated_sensor_token': _tok('cs', ch), 'timestamp': ts + dt,
                                         'fileformat': fmt, 'is_key_frame': True, 'height': hh, 'width': ww,
                                         'filename': fn, 'prev': '', 'next': ''})
            sem = np.full(grid.shape, FREE, np.uint8)
            sem[:, :, 0] = 11
            idx, ok = grid.points_to_index(car - ego)
            if ok:
                sem[idx[0], idx[1], 1:3] = 4
            save_occ3d_labels(os.path.join(root, 'gts', name, st, 'labels.npz'), sem,
                              np.ones_like(sem), (sem != FREE).astype(np.uint8))
    # The devkit needs one map record covering every log, and its mask file.
    os.makedirs(os.path.join(root, 'maps'), exist_ok=True)
    cv2.imwrite(os.path.join(root, 'maps', 'micro.png'), np.zeros((8, 8), np.uint8))
    t['map'].append({'token': _tok('map'), 'log_tokens': [r['token'] for r in t['log']],
                     'category': 'semantic_prior', 'filename': 'maps/micro.png'})
    os.makedirs(os.path.join(root, version), exist_ok=True)
    for k, v in t.items():
        with open(os.path.join(root, version, k + '.json'), 'w') as fh:
            json.dump(v, fh)
    return root


@pytest.fixture(scope='session')
def micro_world(tmp_path_factory) -> str:
    """A 2-scene x 4-frame hand-written nuScenes root at 0.8 m with info files (auto split)."""
    if 'micro' not in _CACHE:
        root = write_micro_nuscenes(str(tmp_path_factory.mktemp('micro')))
        assert load_tool('create_data').main(['--root', root, '--no-progress']) == 0
        _CACHE['micro'] = root
    return _CACHE['micro']
