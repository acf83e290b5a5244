"""The 13 nuScenes tables of a generated database, built from per-keyframe records.

Tokens are md5 hex digests of what the record is (seed, world, agent, frame,
channel, object), so the same generation always yields the same tokens and
files, whichever worker rendered what.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np
from pyquaternion import Quaternion

from occ.constants import CAMERA_NAMES, LIDAR_NAME
from occ.utils.io import atomic_save_json

CATEGORIES = (
    'human.pedestrian.adult', 'human.pedestrian.child', 'human.pedestrian.wheelchair',
    'human.pedestrian.stroller', 'human.pedestrian.personal_mobility', 'human.pedestrian.police_officer',
    'human.pedestrian.construction_worker', 'animal', 'vehicle.car', 'vehicle.motorcycle', 'vehicle.bicycle',
    'vehicle.bus.bendy', 'vehicle.bus.rigid', 'vehicle.truck', 'vehicle.construction',
    'vehicle.emergency.ambulance', 'vehicle.emergency.police', 'vehicle.trailer', 'movable_object.barrier',
    'movable_object.trafficcone', 'movable_object.pushable_pullable', 'movable_object.debris',
    'static_object.bicycle_rack',
)
ATTRIBUTES = ('vehicle.moving', 'vehicle.stopped', 'vehicle.parked', 'cycle.with_rider', 'cycle.without_rider',
              'pedestrian.sitting_lying_down', 'pedestrian.standing', 'pedestrian.moving')
VISIBILITY = (('1', 'v0-40'), ('2', 'v40-60'), ('3', 'v60-80'), ('4', 'v80-100'))
TABLES = ('category', 'attribute', 'visibility', 'instance', 'sensor', 'calibrated_sensor', 'ego_pose', 'log',
          'scene', 'sample', 'sample_data', 'sample_annotation', 'map')


def token(*parts) -> str:
    return hashlib.md5('|'.join(str(p) for p in parts).encode()).hexdigest()


def scene_name(world: int, agent: int, agents: int) -> str:
    """``synth-0003`` for single-vehicle worlds, ``synth-0003-agent1`` for connected vehicles."""
    return f'synth-{world:04d}' if agents == 1 else f'synth-{world:04d}-agent{agent}'


def quat(m: np.ndarray) -> list:
    """nuScenes rotation [w, x, y, z] of a 3x3 rotation matrix."""
    q = Quaternion(matrix=np.asarray(m, np.float64), atol=1e-6)
    return [float(v) for v in q.elements]


def yaw_quat(yaw: float) -> list:
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def visibility_token(num_lidar_pts: int) -> str:
    """Heuristic visibility level from the LiDAR returns on the object (no occlusion-free render exists)."""
    return '1' if num_lidar_pts == 0 else '2' if num_lidar_pts < 5 else '3' if num_lidar_pts < 20 else '4'


def build_tables(records: list, seed: int, agents: int, calib: dict, map_files: dict) -> dict:
    """All 13 tables.

    Args:
        records: per (world, agent, frame) dicts from the generator with keys world, agent,
            frame, timestamp, ego2global, files (channel -> relative path), image_hw, boxes.
        calib: channel -> (sensor2ego [4,4], intrinsics [3,3] or None).
        map_files: world -> relative map PNG path.
    """
    t = {name: [] for name in TABLES}
    t['category'] = [{'token': token('category', c), 'name': c, 'description': c, 'index': i + 1}
                     for i, c in enumerate(CATEGORIES)]
    t['attribute'] = [{'token': token('attribute', a), 'name': a, 'description': a} for a in ATTRIBUTES]
    t['visibility'] = [{'token': k, 'level': lv, 'description': f'visibility of whole object is {lv}'}
                       for k, lv in VISIBILITY]
    channels = list(CAMERA_NAMES) + [LIDAR_NAME]
    t['sensor'] = [{'token': token('sensor', ch), 'channel': ch,
                    'modality': 'lidar' if ch == LIDAR_NAME else 'camera'} for ch in channels]
    records = sorted(records, key=lambda r: (r['world'], r['agent'], r['frame']))
    by_scene: dict = {}
    for r in records:
        by_scene.setdefault((r['world'], r['agent']), []).append(r)
    worlds = sorted({w for w, _ in by_scene})
    for w in worlds:
        logs = [token(seed, 'log', w, k) for k in range(agents) if (w, k) in by_scene]
        t['map'].append({'token': token(seed, 'map', w), 'log_tokens': logs, 'category': 'semantic_prior',
                         'filename': map_files[w]})
    for (w, k), recs in by_scene.items():
        name = scene_name(w, k, agents)
        log_tok, scene_tok = token(seed, 'log', w, k), token(seed, 'scene', w, k)
        t['log'].append({'token': log_tok, 'logfile': name, 'vehicle': f'synth-vehicle-{k}',
                         'date_captured': '2024-01-01', 'location': f'synth-town-{seed}-{w}'})
        for ch in channels:
            s2e, k3 = calib[ch]
            t['calibrated_sensor'].append({
                'token': token(seed, 'calib', w, k, ch), 'sensor_token': token('sensor', ch),
                'translation': [float(v) for v in s2e[:3, 3]], 'rotation': quat(s2e[:3, :3]),
                'camera_intrinsic': [] if k3 is None else np.asarray(k3, float).tolist()})
        stoks = [token(seed, 'sample', w, k, r['frame']) for r in recs]
        t['scene'].append({'token': scene_tok, 'log_token': log_tok, 'nbr_samples': len(recs),
                           'first_sample_token': stoks[0], 'last_sample_token': stoks[-1], 'name': name,
                           'description': f'synthetic town {w} (seed {seed}), connected vehicle {k}'})
        for i, r in enumerate(recs):
            t['sample'].append({'token': stoks[i], 'timestamp': r['timestamp'], 'scene_token': scene_tok,
                                'prev': stoks[i - 1] if i else '', 'next': stoks[i + 1] if i + 1 < len(recs) else ''})
            e2g = r['ego2global']
            for ch in channels:
                sd = token(seed, 'sd', w, k, r['frame'], ch)
                ep = token(seed, 'ego', w, k, r['frame'], ch)
                t['ego_pose'].append({'token': ep, 'timestamp': r['timestamp'],
                                      'rotation': quat(e2g[:3, :3]), 'translation': [float(v) for v in e2g[:3, 3]]})
                cam = ch != LIDAR_NAME
                t['sample_data'].append({
                    'token': sd, 'sample_token': stoks[i], 'ego_pose_token': ep,
                    'calibrated_sensor_token': token(seed, 'calib', w, k, ch), 'timestamp': r['timestamp'],
                    'fileformat': 'jpg' if cam else 'pcd', 'is_key_frame': True,
                    'height': r['image_hw'][0] if cam else 0, 'width': r['image_hw'][1] if cam else 0,
                    'filename': r['files'][ch],
                    'prev': token(seed, 'sd', w, k, recs[i - 1]['frame'], ch) if i else '',
                    'next': token(seed, 'sd', w, k, recs[i + 1]['frame'], ch) if i + 1 < len(recs) else ''})
        # Annotations, chained per object through the samples where it is annotated.
        per_obj: dict = {}
        for i, r in enumerate(recs):
            for b in r['boxes']:
                per_obj.setdefault(b['object'], []).append((i, b))
        for obj in sorted(per_obj):
            items = per_obj[obj]
            inst = token(seed, 'instance', w, k, obj)
            atoks = [token(seed, 'ann', w, k, obj, recs[i]['frame']) for i, _ in items]
            t['instance'].append({'token': inst, 'category_token': token('category', items[0][1]['category']),
                                  'nbr_annotations': len(items), 'first_annotation_token': atoks[0],
                                  'last_annotation_token': atoks[-1]})
            for j, (i, b) in enumerate(items):
                t['sample_annotation'].append({
                    'token': atoks[j], 'sample_token': stoks[i], 'instance_token': inst,
                    'visibility_token': visibility_token(b['num_lidar_pts']),
                    'attribute_tokens': [token('attribute', b['attribute'])] if b['attribute'] else [],
                    'translation': [float(v) for v in b['center']], 'size': [float(v) for v in b['size_wlh']],
                    'rotation': yaw_quat(b['yaw']), 'prev': atoks[j - 1] if j else '',
                    'next': atoks[j + 1] if j + 1 < len(items) else '',
                    'num_lidar_pts': b['num_lidar_pts'], 'num_radar_pts': 0})
    return t


def write_tables(root: str, version: str, tables: dict) -> dict:
    """Write ``<root>/<version>/<table>.json`` atomically; return row counts."""
    d = os.path.join(root, version)
    for name in TABLES:
        atomic_save_json(os.path.join(d, f'{name}.json'), tables[name], indent=0)
    return {name: len(tables[name]) for name in TABLES}
