"""``annotations.json``: the Occ3D-nuScenes index of a generated database, as the Occ3D release ships it.

Schema (Occ3D README; every path relative to the data root unless noted)::

    {"train_split": [scene names], "val_split": [scene names],
     "scene_infos": {scene name: {sample token (time order): {
         "timestamp": "<microseconds, as a string>",
         "camera_sensor": {channel: {"img_path": "<channel>/<file>.jpg"  (relative to samples/, the
                                                                           release's imgs/ folder),
                                     "intrinsic": [3][3], "intrinsics": [3][3]  (same matrix: the README
                                          says intrinsic, clients of the release read intrinsics),
                                     "extrinsic": {"translation": [3], "rotation": [4]},  (camera -> ego)
                                     "ego_pose": {"translation": [3], "rotation": [4]}},   (at the image)
                           ...},
         "ego_pose": {"translation": [3], "rotation": [4]},                (at the LiDAR keyframe)
         "gt_path": "gts/<scene>/<token>/labels.npz",
         "prev": "<sample token or ''>", "next": "<sample token or ''>"}}}}
"""
from __future__ import annotations

from occ.constants import CAMERA_NAMES, LIDAR_NAME
from occ.data.occ3d_io import occ3d_label_path


def occ3d_annotations(tables: dict, splits: dict) -> dict:
    """The annotations.json dict of the tables of ``build_tables`` and ``{'train': [...], 'val': [...]}``."""
    by_token = {name: {r['token']: r for r in tables[name]}
                for name in ('sample', 'sample_data', 'ego_pose', 'calibrated_sensor', 'sensor')}
    channel_of = {r['token']: by_token['sensor'][r['sensor_token']]['channel'] for r in tables['calibrated_sensor']}
    key_data: dict = {}
    for sd in tables['sample_data']:
        if sd['is_key_frame']:
            key_data.setdefault(sd['sample_token'], {})[channel_of[sd['calibrated_sensor_token']]] = sd

    def pose(rec):
        return {'translation': list(rec['translation']), 'rotation': list(rec['rotation'])}

    scene_infos = {}
    for scene in sorted(tables['scene'], key=lambda s: s['name']):
        frames, tok = {}, scene['first_sample_token']
        while tok:
            sample = by_token['sample'][tok]
            data = key_data[tok]
            cams = {}
            for ch in CAMERA_NAMES:
                sd = data[ch]
                cs = by_token['calibrated_sensor'][sd['calibrated_sensor_token']]
                cams[ch] = {'img_path': sd['filename'].split('/', 1)[1], 'intrinsic': cs['camera_intrinsic'],
                            'intrinsics': cs['camera_intrinsic'], 'extrinsic': pose(cs),
                            'ego_pose': pose(by_token['ego_pose'][sd['ego_pose_token']])}
            frames[tok] = {'timestamp': str(sample['timestamp']), 'camera_sensor': cams,
                           'ego_pose': pose(by_token['ego_pose'][data[LIDAR_NAME]['ego_pose_token']]),
                           'gt_path': occ3d_label_path('', scene['name'], tok).lstrip('/'),
                           'prev': sample['prev'], 'next': sample['next']}
            tok = sample['next']
        scene_infos[scene['name']] = frames
    return {'train_split': list(splits.get('train', [])), 'val_split': list(splits.get('val', [])),
            'scene_infos': scene_infos}


__all__ = ['occ3d_annotations']
