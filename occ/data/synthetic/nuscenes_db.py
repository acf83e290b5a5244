"""The 13 nuScenes tables of a generated database, built from per-keyframe records.

Tokens are md5 hex digests of what the record is (seed, world, agent, frame,
channel, object), so the same generation always yields the same tokens and
files, whichever worker rendered what. As in nuScenes, every ``ego_pose`` has
the token of its ``sample_data``, and scene names are ``scene-NNNN``, taken
from the devkit's official train / val lists (see ``scene_names``).
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile

import numpy as np
from pyquaternion import Quaternion

from occ.constants import CAMERA_NAMES, LIDAR_NAME
from occ.utils.io import atomic_save_json

from .radar import RADAR_NAMES

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
CHANNELS = tuple(CAMERA_NAMES) + (LIDAR_NAME,) + RADAR_NAMES


def token(*parts) -> str:
    return hashlib.md5('|'.join(str(p) for p in parts).encode()).hexdigest()


def modality(channel: str) -> str:
    return 'lidar' if channel == LIDAR_NAME else 'radar' if channel.startswith('RADAR') else 'camera'


@functools.lru_cache(maxsize=None)
def can_bus_blacklist() -> frozenset:
    """Scene numbers the devkit's ``NuScenesCanBus`` rejects (no CAN data) or warns about (route
    misaligned), read from the devkit itself (it only builds them for an existing ``can_bus`` folder)."""
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus
    with tempfile.TemporaryDirectory() as d:
        os.mkdir(os.path.join(d, 'can_bus'))
        api = NuScenesCanBus(dataroot=d)
    return frozenset(api.can_blacklist) | frozenset(api.route_blacklist)


def official_scene_pool(split: str) -> list:
    """The devkit's official scene names of ``split`` (train, val, mini_train, mini_val), in order,
    minus the CAN bus blacklists."""
    from nuscenes.utils import splits
    bad = can_bus_blacklist()
    return [n for n in getattr(splits, split) if int(n[-4:]) not in bad]


def scene_names(scenes: int, agents: int, val_worlds, version: str = 'v1.0-trainval') -> dict:
    """(world, agent) -> nuScenes scene name.

    Scenes of train worlds take the official train names in order, scenes of val worlds the
    official val names (``mini_train`` / ``mini_val`` for a ``*-mini`` version, as the devkit pairs
    them), so tools that split by ``nuscenes.utils.splits`` (mmdetection3d, BEVDet, the Occ3D
    converter) put each scene where ``splits.json`` does.
    """
    val_worlds = set(val_worlds)
    out, used = {}, {'train': 0, 'val': 0}
    prefix = 'mini_' if version.endswith('mini') else ''
    pools = {s: official_scene_pool(prefix + s) for s in used}
    for w in range(scenes):
        split = 'val' if w in val_worlds else 'train'
        for k in range(agents):
            if used[split] >= len(pools[split]):
                raise ValueError(f'{split} needs more than the {len(pools[split])} official nuScenes {prefix}{split} '
                                 f'scene names (CAN bus blacklists left out); use fewer scenes or agents')
            out[(w, k)] = pools[split][used[split]]
            used[split] += 1
    return out


def quat(m: np.ndarray) -> list:
    """nuScenes rotation [w, x, y, z] of a 3x3 rotation matrix."""
    q = Quaternion(matrix=np.asarray(m, np.float64), atol=1e-6)
    return [float(v) for v in q.elements]


def yaw_quat(yaw: float) -> list:
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def visibility_token(num_lidar_pts: int) -> str:
    """Heuristic visibility level from the LiDAR returns on the object (no occlusion-free render exists)."""
    return '1' if num_lidar_pts == 0 else '2' if num_lidar_pts < 5 else '3' if num_lidar_pts < 20 else '4'


def build_tables(records: list, seed: int, names: dict, calib: dict, map_files: dict) -> dict:
    """All 13 tables.

    Args:
        records: per (world, agent, keyframe) dicts from the generator with keys world, agent,
            frame, timestamp, ego2global, files (channel -> relative path), image_hw, boxes
            (with num_lidar_pts / num_radar_pts) and sweeps (list of dicts channel, timestamp,
            file, ego2global: the non-key sample_data after this keyframe).
        names: (world, agent) -> scene name.
        calib: (world, agent) -> channel -> (sensor2ego [4,4], intrinsics [3,3] or None).
        map_files: world -> relative map PNG path.
    """
    t = {name: [] for name in TABLES}
    t['category'] = [{'token': token('category', c), 'name': c, 'description': c, 'index': i + 1}
                     for i, c in enumerate(CATEGORIES)]
    t['attribute'] = [{'token': token('attribute', a), 'name': a, 'description': a} for a in ATTRIBUTES]
    t['visibility'] = [{'token': k, 'level': lv, 'description': f'visibility of whole object is {lv}'}
                       for k, lv in VISIBILITY]
    channels = [ch for ch in CHANNELS if any(ch in r['files'] for r in records)]
    t['sensor'] = [{'token': token('sensor', ch), 'channel': ch, 'modality': modality(ch)} for ch in channels]
    records = sorted(records, key=lambda r: (r['world'], r['agent'], r['frame']))
    by_scene: dict = {}
    for r in records:
        by_scene.setdefault((r['world'], r['agent']), []).append(r)
    agents = 1 + max(k for _, k in by_scene)
    for w in sorted({w for w, _ in by_scene}):
        logs = [token(seed, 'log', w, k) for k in range(agents) if (w, k) in by_scene]
        t['map'].append({'token': token(seed, 'map', w), 'log_tokens': logs, 'category': 'semantic_prior',
                         'filename': map_files[w]})
    for (w, k), recs in by_scene.items():
        name = names[(w, k)]
        log_tok, scene_tok = token(seed, 'log', w, k), token(seed, 'scene', w, k)
        # location is one of the four nuScenes maps in the schema (tools key lat/lon references and
        # map files on it): Boston, which drives on the right like the towns; logfile names the town.
        t['log'].append({'token': log_tok, 'logfile': f'synth-town-{seed}-{w}-vehicle-{k}',
                         'vehicle': f'synth-vehicle-{k}', 'date_captured': '2024-01-01', 'location': 'boston-seaport'})
        for ch in channels:
            s2e, k3 = calib[(w, k)][ch]
            t['calibrated_sensor'].append({
                'token': token(seed, 'calib', w, k, ch), 'sensor_token': token('sensor', ch),
                'translation': [float(v) for v in s2e[:3, 3]], 'rotation': quat(s2e[:3, :3]),
                'camera_intrinsic': [] if k3 is None else np.asarray(k3, float).tolist()})
        stoks = [token(seed, 'sample', w, k, r['frame']) for r in recs]
        t['scene'].append({'token': scene_tok, 'log_token': log_tok, 'nbr_samples': len(recs),
                           'first_sample_token': stoks[0], 'last_sample_token': stoks[-1], 'name': name,
                           'description': f'synthetic town {w} (seed {seed}), connected vehicle {k}'})
        # sample_data of each channel in time order: keyframes and the sweeps between them.
        per_channel = {ch: [] for ch in channels}
        for i, r in enumerate(recs):
            t['sample'].append({'token': stoks[i], 'timestamp': r['timestamp'], 'scene_token': scene_tok,
                                'prev': stoks[i - 1] if i else '', 'next': stoks[i + 1] if i + 1 < len(recs) else ''})
            for ch in channels:
                per_channel[ch].append((r['timestamp'], True, stoks[i], token(seed, 'sd', w, k, r['frame'], ch),
                                        r['files'][ch], r['ego2global']))
            for sw in r['sweeps']:
                # A sweep belongs to the nearest keyframe in time (the earlier one on a tie), as in nuScenes.
                later = i + 1 < len(recs) and recs[i + 1]['timestamp'] - sw['timestamp'] < \
                    sw['timestamp'] - r['timestamp']
                per_channel[sw['channel']].append((sw['timestamp'], False, stoks[i + 1] if later else stoks[i],
                                                   token(seed, 'sd', w, k, r['frame'], sw['channel'], 'sweep',
                                                         sw['timestamp']), sw['file'], sw['ego2global']))
        h, wd = recs[0]['image_hw']
        for ch, rows in per_channel.items():
            rows.sort(key=lambda e: e[0])
            cam = modality(ch) == 'camera'
            for j, (ts, key, stok, sd, fname, e2g) in enumerate(rows):
                t['ego_pose'].append({'token': sd, 'timestamp': ts, 'rotation': quat(e2g[:3, :3]),
                                      'translation': [float(v) for v in e2g[:3, 3]]})
                t['sample_data'].append({
                    'token': sd, 'sample_token': stok, 'ego_pose_token': sd,
                    'calibrated_sensor_token': token(seed, 'calib', w, k, ch), 'timestamp': ts,
                    'fileformat': 'jpg' if cam else 'pcd', 'is_key_frame': key,
                    'height': h if cam else 0, 'width': wd if cam else 0, 'filename': fname,
                    'prev': rows[j - 1][3] if j else '', 'next': rows[j + 1][3] if j + 1 < len(rows) else ''})
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
                    'translation': list(b['translation']), 'size': list(b['size']), 'rotation': list(b['rotation']),
                    'prev': atoks[j - 1] if j else '', 'next': atoks[j + 1] if j + 1 < len(items) else '',
                    'num_lidar_pts': int(b['num_lidar_pts']), 'num_radar_pts': int(b.get('num_radar_pts', 0))})
    return t


def write_tables(root: str, version: str, tables: dict) -> dict:
    """Write ``<root>/<version>/<table>.json`` atomically; return row counts."""
    d = os.path.join(root, version)
    for name in TABLES:
        atomic_save_json(os.path.join(d, f'{name}.json'), tables[name], indent=0)
    return {name: len(tables[name]) for name in TABLES}
