"""Info files: one record per keyframe, built from any nuScenes root with nuscenes-devkit.

The same code path serves real v1.0-mini / v1.0-trainval and the synthetic
world. Format (docs/CONTRACTS.md): ``occ_infos_<split>.pkl`` holds
``{'metadata': {...}, 'infos': [info, ...]}`` sorted by (scene_name, timestamp),
paths relative to the data root, matrices float32.
"""
from __future__ import annotations

import glob
import json
import os
import pickle

import numpy as np
from pyquaternion import Quaternion

from occ.constants import CAMERA_NAMES, CLASS_NAMES, LIDAR_NAME, NUM_CLASSES
from occ.data.occ3d_io import OccFileError, occ3d_label_path
from occ.geometry import OCC3D_RANGE
from occ.utils.io import atomic_open

INFO_VERSION_ORDER = ('v1.0-trainval', 'v1.0-mini', 'v1.0-test')

# nuScenes category prefix -> Occ3D class index (the lidarseg 16-class merge;
# categories that lidarseg ignores become 'others').
_CATEGORY_TO_OCC = (
    ('movable_object.barrier', 1), ('vehicle.bicycle', 2), ('vehicle.bus', 3),
    ('vehicle.car', 4), ('vehicle.construction', 5), ('vehicle.motorcycle', 6),
    ('human.pedestrian.adult', 7), ('human.pedestrian.child', 7),
    ('human.pedestrian.construction_worker', 7), ('human.pedestrian.police_officer', 7),
    ('movable_object.trafficcone', 8), ('vehicle.trailer', 9), ('vehicle.truck', 10),
)


def category_to_occ(name: str) -> int:
    """nuScenes category name (or an Occ3D class name) -> Occ3D class index; unknown -> 0 (others)."""
    if name in CLASS_NAMES:
        return CLASS_NAMES.index(name)
    for prefix, cls in _CATEGORY_TO_OCC:
        if name == prefix or name.startswith(prefix + '.'):
            return cls
    return 0


def pose_matrix(translation, rotation) -> np.ndarray:
    """nuScenes translation [3] + quaternion (w, x, y, z) -> 4x4 float64."""
    m = np.eye(4)
    m[:3, :3] = Quaternion(rotation).rotation_matrix
    m[:3, 3] = translation
    return m


def detect_version(root: str) -> str:
    """The ``v1.0-*`` table folder under ``root``; trainval > mini > test when several exist."""
    found = sorted(os.path.basename(os.path.dirname(p))
                   for p in glob.glob(os.path.join(root, 'v1.0-*', 'scene.json')))
    if not found:
        raise FileNotFoundError(f'{root}: no nuScenes table folder (v1.0-*/scene.json) found')
    for v in INFO_VERSION_ORDER:
        if v in found:
            return v
    if len(found) > 1:
        raise ValueError(f'{root}: several table folders {found}; pass --version')
    return found[0]


def scene_splits(root: str, version: str, scene_names: list[str], val_fraction: float = 0.2):
    """Split name -> list of scene names, and where the split came from.

    ``splits.json`` in the root wins; otherwise the official nuScenes split for
    mini / trainval / test; otherwise a deterministic split of the sorted names
    (the last ``val_fraction`` of them, at least one, become val).
    """
    path = os.path.join(root, 'splits.json')
    if os.path.isfile(path):
        try:
            with open(path) as f:
                splits = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f'{path}: cannot read splits ({e})') from e
        if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
            raise ValueError(f'{path}: expected {{"train": [scene names], "val": [...]}}')
        return {k: list(v) for k, v in splits.items()}, 'splits.json'
    from nuscenes.utils.splits import create_splits_scenes
    official = create_splits_scenes()
    names = set(scene_names)
    if version == 'v1.0-mini':
        return {'train': official['mini_train'], 'val': official['mini_val']}, 'nuscenes'
    if version == 'v1.0-test':
        return {'test': official['test']}, 'nuscenes'
    if version == 'v1.0-trainval' and names <= set(official['train']) | set(official['val']):
        return {'train': official['train'], 'val': official['val']}, 'nuscenes'
    ordered = sorted(scene_names)
    n_val = max(1, int(round(len(ordered) * val_fraction))) if len(ordered) > 1 else 0
    return {'train': ordered[:len(ordered) - n_val], 'val': ordered[len(ordered) - n_val:]}, 'auto'


def _table_pose(nusc, table: str, token: str) -> np.ndarray:
    """4x4 pose of a row of ``table`` (ego_pose, calibrated_sensor, sample_annotation).

    OccFileError naming the table file and the row when the translation or rotation
    is malformed or not finite: a NaN pose would otherwise flow silently into every
    matrix of the info file and into training.
    """
    rec = nusc.get(table, token)
    where = f'{os.path.join(nusc.table_root, table + ".json")}: {table} {token}'
    try:
        t = np.asarray(rec['translation'], np.float64)
        q = np.asarray(rec['rotation'], np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise OccFileError(f'{where}: malformed translation/rotation ({type(e).__name__}: {e})') from e
    if t.shape != (3,) or q.shape != (4,):
        raise OccFileError(f'{where}: translation/rotation have shapes {t.shape}/{q.shape}, expected (3,)/(4,)')
    if not (np.isfinite(t).all() and np.isfinite(q).all()):
        raise OccFileError(f'{where}: non-finite pose (translation {t.tolist()}, rotation {q.tolist()})')
    if not 0.5 < np.linalg.norm(q) < 2.0:
        raise OccFileError(f'{where}: rotation {q.tolist()} is not a unit quaternion')
    return pose_matrix(t, q)


def _intrinsics(nusc, cs_token: str) -> np.ndarray:
    k = np.asarray(nusc.get('calibrated_sensor', cs_token)['camera_intrinsic'], np.float64)
    if k.shape != (3, 3) or not np.isfinite(k).all():
        raise OccFileError(f'{os.path.join(nusc.table_root, "calibrated_sensor.json")}: calibrated_sensor '
                           f'{cs_token}: camera_intrinsic must be a finite 3x3 matrix, got {k.tolist()}')
    return k


def _boxes(nusc, sample, global2ego: np.ndarray) -> dict:
    centers, sizes, yaws, cats, inst = [], [], [], [], []
    for tok in sample['anns']:
        a = nusc.get('sample_annotation', tok)
        m = global2ego @ _table_pose(nusc, 'sample_annotation', tok)
        centers.append(m[:3, 3])
        sizes.append(a['size'])
        yaws.append(np.arctan2(m[1, 0], m[0, 0]))
        cats.append(category_to_occ(a['category_name']))
        inst.append(a['instance_token'])
    return {'center': np.asarray(centers, np.float32).reshape(-1, 3),
            'size': np.asarray(sizes, np.float32).reshape(-1, 3),
            'yaw': np.asarray(yaws, np.float32),
            'category': np.asarray(cats, np.int64),
            'instance_token': np.asarray(inst, dtype=object)}


def sample_info(nusc, sample, scene, frame_idx: int, cameras=CAMERA_NAMES) -> dict:
    """One info record (CONTRACTS.md) for a nuScenes sample."""
    lidar_sd = nusc.get('sample_data', sample['data'][LIDAR_NAME])
    ego2global = _table_pose(nusc, 'ego_pose', lidar_sd['ego_pose_token'])
    global2ego = np.linalg.inv(ego2global)
    cams = {}
    for cam in cameras:
        if cam not in sample['data']:
            raise KeyError(f'sample {sample["token"]} (scene {scene["name"]}) has no {cam} data')
        sd = nusc.get('sample_data', sample['data'][cam])
        sensor2ego = _table_pose(nusc, 'calibrated_sensor', sd['calibrated_sensor_token'])
        cam_e2g = _table_pose(nusc, 'ego_pose', sd['ego_pose_token'])
        cams[cam] = {
            'data_path': sd['filename'],
            'intrinsics': _intrinsics(nusc, sd['calibrated_sensor_token']).astype(np.float32),
            # Camera -> keyframe ego: absorbs the motion between camera and LiDAR timestamps.
            'cam2ego': (global2ego @ cam_e2g @ sensor2ego).astype(np.float32),
            'sensor2ego': sensor2ego.astype(np.float32),
            'ego2global': cam_e2g.astype(np.float32),
            'timestamp': int(sd['timestamp']),
            'width': int(sd['width']), 'height': int(sd['height']),
        }
    return {
        'token': sample['token'], 'scene_token': scene['token'], 'scene_name': scene['name'],
        'timestamp': int(sample['timestamp']), 'frame_idx': frame_idx,
        'prev': sample['prev'], 'next': sample['next'],
        'ego2global': ego2global.astype(np.float32),
        'lidar_path': lidar_sd['filename'],
        'lidar2ego': _table_pose(nusc, 'calibrated_sensor', lidar_sd['calibrated_sensor_token']).astype(np.float32),
        'cams': cams,
        'occ_path': occ3d_label_path('', scene['name'], sample['token']),
        'boxes': _boxes(nusc, sample, global2ego),
    }


def label_grid(root: str, infos: list[dict]) -> dict:
    """Grid of the label files, read from the first one (200x200x16 -> 0.4 m, 100x100x8 -> 0.8 m)."""
    from occ.data.occ3d_io import load_occ3d_labels
    for info in infos:
        path = os.path.join(root, info['occ_path'])
        if os.path.isfile(path):
            shape = load_occ3d_labels(path)['semantics'].shape
            extent = np.array(OCC3D_RANGE[3:]) - np.array(OCC3D_RANGE[:3])
            vox = extent / np.array(shape)
            if not np.allclose(vox, vox[0], atol=1e-6):
                raise OccFileError(f'{path}: grid {shape} is not a cubic-voxel grid over {OCC3D_RANGE}')
            return {'pc_range': list(OCC3D_RANGE), 'voxel_size': float(round(vox[0], 6))}
    return {'pc_range': list(OCC3D_RANGE), 'voxel_size': None}


def class_counts(root: str, infos: list[dict]) -> dict:
    """Voxels per class (0..17) over a split's label files, at the label grid.

    ``{'camera': [18 ints] over mask_camera voxels (what losses that use the
    camera mask see), 'all': [18 ints] over every voxel}``; label 255 is not counted.
    Losses derive class weights from these (``WeightedCELoss(class_counts=<info file>)``),
    so a world's weights follow its own frequencies, not real Occ3D's.
    """
    from occ.data.occ3d_io import load_occ3d_labels
    camera = np.zeros(NUM_CLASSES, np.int64)
    every = np.zeros(NUM_CLASSES, np.int64)
    for info in infos:
        lab = load_occ3d_labels(os.path.join(root, info['occ_path']))
        sem = lab['semantics'].reshape(-1)
        keep = sem < NUM_CLASSES
        every += np.bincount(sem[keep], minlength=NUM_CLASSES)
        seen = keep & lab['mask_camera'].reshape(-1).astype(bool)
        camera += np.bincount(sem[seen], minlength=NUM_CLASSES)
    return {'camera': [int(v) for v in camera], 'all': [int(v) for v in every]}


def read_cooperative(root: str) -> dict | None:
    """``cooperative.json`` of a connected-vehicle world -> sample token -> (agent_id, neighbours).

    Format (data/README.md): ``{'agents': K, 'worlds': [[scene names]], 'samples':
    {token: {'agent_id': int, 'neighbors': [{'agent_id': int, 'token': str}, ...], ...}}}``.
    None when the root has no such file.
    """
    path = os.path.join(root, 'cooperative.json')
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            data = json.load(f)
        out = {}
        for tok, rec in data['samples'].items():
            nbs = [{'agent_id': int(n['agent_id']), 'token': str(n['token'])} for n in rec['neighbors']]
            out[tok] = (int(rec['agent_id']), nbs)
        return out
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise OccFileError(f'{path}: cannot read the cooperative sample groups ({type(e).__name__}: {e})') from e


def _broken_table(table_root: str, err: Exception) -> str:
    """Which table file of ``table_root`` fails to parse (the devkit's JSON error names none)."""
    for path in sorted(glob.glob(os.path.join(table_root, '*.json'))):
        try:
            with open(path) as f:
                json.load(f)
        except json.JSONDecodeError as e:
            return f'{path}: not valid JSON, truncated or corrupt nuScenes table ({e})'
        except (OSError, UnicodeDecodeError) as e:
            return f'{path}: unreadable nuScenes table ({type(e).__name__}: {e})'
    return f'{table_root}: a nuScenes table is not valid JSON ({err})'


def referenced_files(info: dict) -> list:
    """Paths (relative to the data root) an info record needs: its LiDAR sweep and camera images."""
    return [info['lidar_path']] + [c['data_path'] for c in info['cams'].values()]


def build_infos(root: str, version: str | None = None, skip_missing_occ: bool = False,
                progress: bool = True, cameras=CAMERA_NAMES, skip_missing_files: bool = False):
    """All info records of a nuScenes root, grouped by split.

    Returns ``(split -> {'metadata', 'infos'}, messages)``. Raises OccFileError
    naming the label file when a sample has no ``gts/`` labels (unless
    ``skip_missing_occ``; then the sample is dropped and reported in ``messages``),
    and saying how many camera images / LiDAR files that the tables reference are
    missing (unless ``skip_missing_files``: such samples are dropped and counted).
    Table files that are not valid JSON, and non-finite or malformed poses and
    calibration, are errors naming the file (and row).
    """
    from nuscenes import NuScenes
    from tqdm import tqdm

    root = os.path.abspath(root)
    version = version or detect_version(root)
    try:
        nusc = NuScenes(version=version, dataroot=root, verbose=False)
    except json.JSONDecodeError as e:
        raise OccFileError(_broken_table(os.path.join(root, version), e)) from e
    has_occ = os.path.isdir(os.path.join(root, 'gts'))
    coop = read_cooperative(root)
    splits, source = scene_splits(root, version, [s['name'] for s in nusc.scene])
    scene_split = {name: split for split, names in splits.items() for name in names}
    out = {split: [] for split in splits}
    messages = []
    missing_files, missing_samples = [], 0
    n_samples = sum(s['nbr_samples'] for s in nusc.scene)
    bar = tqdm(total=n_samples, desc=f'infos {version}', disable=not progress, unit='sample')
    for scene in sorted(nusc.scene, key=lambda s: s['name']):
        split = scene_split.get(scene['name'])
        tok, frame_idx = scene['first_sample_token'], 0
        while tok:
            sample = nusc.get('sample', tok)
            bar.update(1)
            tok = sample['next']
            if split is None:
                frame_idx += 1
                continue
            info = sample_info(nusc, sample, scene, frame_idx, cameras)
            frame_idx += 1
            if has_occ and not os.path.isfile(os.path.join(root, info['occ_path'])):
                msg = (f'{os.path.join(root, info["occ_path"])}: Occ3D labels missing for sample '
                       f'{info["token"]} (scene {scene["name"]})')
                if not skip_missing_occ:
                    raise OccFileError(msg + '; pass --skip-missing-occ to leave such samples out')
                messages.append(msg + ' (skipped)')
                continue
            gone = [os.path.join(root, r) for r in referenced_files(info)
                    if not os.path.isfile(os.path.join(root, r))]
            if gone:
                missing_files += gone
                missing_samples += 1
                continue
            if coop is not None and info['token'] in coop:
                info['agent_id'], info['neighbors'] = coop[info['token']]
            out[split].append(info)
    bar.close()
    if missing_files:
        listing = '\n  ' + '\n  '.join(missing_files[:5]) + (' ...' if len(missing_files) > 5 else '')
        msg = (f'{root}: {len(missing_files)} camera image / LiDAR file(s) referenced by the tables are '
               f'missing, in {missing_samples} sample(s):{listing}')
        if not skip_missing_files:
            raise OccFileError(msg + '\n(incomplete download? pass --skip-missing-files to leave those '
                               'samples out)')
        messages.append(msg + '\n(those samples are skipped)')
    result = {}
    for split, infos in out.items():
        infos.sort(key=lambda i: (i['scene_name'], i['timestamp']))
        grid = label_grid(root, infos) if has_occ else {'pc_range': list(OCC3D_RANGE), 'voxel_size': None}
        metadata = {'version': version, 'dataroot': root, 'splits_from': source, 'grid': grid,
                    'has_occ': has_occ}
        if has_occ:
            metadata['class_counts'] = class_counts(root, infos)
        result[split] = {'metadata': metadata,
                         'infos': infos}
    return result, messages


def save_infos(data: dict, path: str) -> None:
    """Write ``{'metadata', 'infos'}`` atomically (plain data: it reads back through InfoFile)."""
    with atomic_open(path, 'wb') as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)


# Keys each reader needs in every record (CONTRACTS.md); InfoFile.read(require=...) checks them.
DATASET_KEYS = ('token', 'scene_token', 'scene_name', 'frame_idx', 'timestamp', 'ego2global', 'cams',
                'occ_path')
EVAL_KEYS = ('token', 'scene_name', 'timestamp', 'ego2global', 'occ_path')
RAY_ORIGIN_KEYS = ('token', 'scene_name', 'timestamp', 'ego2global', 'lidar2ego')

# Matrices checked (shape, all finite) wherever a record or one of its cameras has them.
_RECORD_MATRICES = {'ego2global': (4, 4), 'lidar2ego': (4, 4)}
_CAMERA_MATRICES = {'intrinsics': (3, 3), 'cam2ego': (4, 4), 'sensor2ego': (4, 4), 'ego2global': (4, 4)}


def _bad_matrix(value, shape) -> str | None:
    """Why ``value`` is not a finite matrix of ``shape`` (None when it is)."""
    try:
        m = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        return f'is not a numeric matrix ({type(value).__name__})'
    if m.shape != shape:
        return f'has shape {m.shape}, expected {shape}'
    if not np.isfinite(m).all():
        return 'holds non-finite values (NaN or inf)'
    return None


class InfoFile:
    """An info file (``occ_infos_<split>.pkl``, CONTRACTS.md), read safely and checked.

    The one reader of info files: the pickle goes through the restricted unpickler
    (``occ.utils.safe_pickle``: no code runs from the file), and every record is
    checked before anything uses it: a dict with a unique ``token``, the keys the
    caller ``require``-s, and finite pose / calibration matrices of the right shape
    (``ego2global``, ``lidar2ego``, each camera's ``intrinsics``, ``cam2ego``,
    ``sensor2ego``, ``ego2global``). Errors name the file, the sample and the key.

    Besides occ's own layout (``{'metadata': {...}, 'infos': [...]}``, also
    mmdet3d 0.x's), mmdet3d 1.x's ``{'metainfo': {...}, 'data_list': [...]}`` reads.

    Attributes:
        path: the file read.
        metadata: dict (``dataroot``, ``grid``, ``has_occ``, ...; empty when absent).
        infos: list of record dicts in file order (scene, then time, for occ files).
    """

    def __init__(self, path: str, metadata: dict, infos: list):
        self.path, self.metadata, self.infos = path, metadata, infos

    @classmethod
    def read(cls, path: str, require=('token',)) -> 'InfoFile':
        """Read and check ``path``; ``require``: record keys the caller needs (``DATASET_KEYS``, ...)."""
        from occ.utils.safe_pickle import UnsafePickleError, safe_load
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'{path}: info file not found (run tools/create_data.py --root <data root>)')
        try:
            data = safe_load(path)
        except UnsafePickleError as e:
            raise OccFileError(str(e)) from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
                MemoryError) as e:
            raise OccFileError(f'{path}: corrupt or truncated info file ({type(e).__name__}: {e})') from e
        if isinstance(data, dict) and isinstance(data.get('infos'), list):
            metadata, infos = data.get('metadata', {}), data['infos']
        elif isinstance(data, dict) and isinstance(data.get('data_list'), list):
            metadata, infos = data.get('metainfo', {}), data['data_list']
        else:
            raise OccFileError(f'{path}: not an info file (expected a dict with "metadata" and an '
                               f'"infos" list, got {type(data).__name__})')
        if not isinstance(metadata, dict):
            raise OccFileError(f'{path}: "metadata" is a {type(metadata).__name__}, expected a dict')
        out = cls(path, metadata, infos)
        out._check(tuple(require))
        return out

    def _check(self, require: tuple) -> None:
        seen = set()
        for n, info in enumerate(self.infos):
            if not isinstance(info, dict):
                raise OccFileError(f'{self.path}: record {n} is a {type(info).__name__}, expected a dict')
            where = f'{self.path}: sample {info.get("token", f"#{n}")!s}'
            absent = [k for k in require if k not in info]
            if absent:
                raise OccFileError(f'{where} lacks {", ".join(absent)} (written by another tool or an '
                                   'old create_data? re-run tools/create_data.py)')
            tok = info.get('token')
            if tok in seen:
                raise OccFileError(f'{where} appears twice')
            seen.add(tok)
            for key, shape in _RECORD_MATRICES.items():
                if key in info and (why := _bad_matrix(info[key], shape)):
                    raise OccFileError(f'{where}: {key} {why}')
            cams = info.get('cams')
            if isinstance(cams, dict):
                for cam, rec in cams.items():
                    if not isinstance(rec, dict):
                        continue
                    for key, shape in _CAMERA_MATRICES.items():
                        if key in rec and (why := _bad_matrix(rec[key], shape)):
                            raise OccFileError(f'{where}: {cam} {key} {why}')
            elif 'cams' in require:
                raise OccFileError(f'{where}: "cams" is a {type(cams).__name__}, expected a dict')

    @property
    def dataroot(self) -> str:
        """The root the records' paths are relative to (``metadata['dataroot']``)."""
        root = self.metadata.get('dataroot')
        if not isinstance(root, str) or not root:
            raise OccFileError(f'{self.path}: metadata has no dataroot; pass the data root explicitly')
        return root

    @property
    def grid(self) -> dict | None:
        """``{'pc_range', 'voxel_size'}`` of the label files, when create_data recorded it."""
        grid = self.metadata.get('grid')
        return grid if isinstance(grid, dict) else None

    @property
    def class_counts(self) -> dict | None:
        """``{'camera': [18], 'all': [18]}`` voxel counts per class of this split, when recorded."""
        counts = self.metadata.get('class_counts')
        if not isinstance(counts, dict):
            return None
        for key, value in counts.items():
            if (not isinstance(value, (list, tuple)) or len(value) != NUM_CLASSES
                    or any(not isinstance(v, (int, np.integer)) or v < 0 for v in value)):
                raise OccFileError(f'{self.path}: metadata class_counts[{key!r}] must be {NUM_CLASSES} '
                                   f'non-negative integers, got {value!r}')
        return counts

    def to_dict(self) -> dict:
        return {'metadata': self.metadata, 'infos': self.infos}

    def __len__(self) -> int:
        return len(self.infos)

    def __iter__(self):
        return iter(self.infos)

    def __getitem__(self, index):
        return self.infos[index]

    def __repr__(self) -> str:
        return f'InfoFile({self.path!r}, {len(self.infos)} samples)'
