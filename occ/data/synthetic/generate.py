"""Write a synthetic nuScenes-format database with Occ3D labels (parallel over worlds and frame chunks).

Layout under ``out_dir`` (all paths in the tables are relative to it):

    v1.0-trainval/*.json                    the 13 nuScenes tables
    v1.0-trainval/splits.json               the devkit's custom splits (synthetic_train, synthetic_val)
    samples/CAM_*/<scene>__CAM_*__<ts>.jpg  camera images (keyframes)
    samples/LIDAR_TOP/<scene>__LIDAR_TOP__<ts>.pcd.bin   float32 x 5 (x, y, z, intensity, ring)
    samples/RADAR_*/<scene>__RADAR_*__<ts>.pcd          nuScenes radar PCD (18 fields)
    sweeps/LIDAR_TOP/..., sweeps/CAM_*/...  non-key sample_data between keyframes (20 Hz LiDAR; cameras
                                            at 12 Hz only with camera_sweeps)
    depth/CAM_*/<image stem>.png            uint16 z-depth in mm (0 = sky, 65535 = 65.5 m or farther)
    semantics2d/CAM_*/<image stem>.png      uint8 Occ3D class per pixel (17 = sky)
    gts/<scene>/<sample_token>/labels.npz   Occ3D labels (semantics, mask_lidar, mask_camera; with agents > 1
                                            also semantics_coop, mask_camera_coop: coop_labels.py)
    annotations.json                        the Occ3D-nuScenes index (occ3d_index.py)
    can_bus/<scene>_<message>.json          CAN bus expansion: pose, vehicle_monitor, route (can_bus.py)
    maps/<map_token>.png                    driveable-area mask, 0.1 m/px
    splits.json                             {"train": [scene names], "val": [...]}
    cooperative.json                        (only with agents > 1) connected-vehicle sample groups
    .occ_synthetic                          marker: this generator created the folder
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time

import cv2
import numpy as np

from occ.constants import CAMERA_NAMES, LIDAR_NAME
from occ.data.occ3d_io import occ3d_label_path, save_occ3d_labels
from occ.geometry import OccGrid
from occ.utils.io import atomic_save_json, atomic_write_bytes

from .can_bus import can_bus_messages
from .coop_labels import cooperative_labels
from .frame import camera_sweep, frame_rng, lidar_sweep, render_frame
from .nuscenes_db import build_tables, scene_names, token, write_tables
from .occ3d_index import occ3d_annotations
from .radar import RADAR_NAMES, radar2ego, radar_pcd_bytes
from .sensors import camera_rig, lidar2ego
from .world import KERB_HEIGHT, build_world, camera_tilt

DEFAULT_IMAGE_SIZE = (144, 256)       # nuScenes aspect ratio (1600 x 900 scaled by 0.16)
BASE_TIMESTAMP = 1_600_000_000_000_000  # microseconds
KEYFRAME_US = 500_000
FRAME_CHUNK = 8                       # keyframes per work item (world building is cheap and cached)
LIDAR_SWEEPS = 9                      # LiDAR sweeps between keyframes: 20 Hz, as in nuScenes
CAMERA_SWEEPS = 5                     # camera sweeps between keyframes with camera_sweeps: 12 Hz
MARKER = '.occ_synthetic'
CUSTOM_SPLITS = {'train': 'synthetic_train', 'val': 'synthetic_val'}


def depth_path(image_rel: str) -> str:
    """``samples/CAM_X/<stem>.jpg`` -> ``depth/CAM_X/<stem>.png`` (relative to the root)."""
    parts = image_rel.split('/')
    return '/'.join(['depth', parts[-2], os.path.splitext(parts[-1])[0] + '.png'])


def semantics2d_path(image_rel: str) -> str:
    """``samples/CAM_X/<stem>.jpg`` -> ``semantics2d/CAM_X/<stem>.png`` (relative to the root)."""
    parts = image_rel.split('/')
    return '/'.join(['semantics2d', parts[-2], os.path.splitext(parts[-1])[0] + '.png'])


def timestamp(world: int, frame: int) -> int:
    return BASE_TIMESTAMP + world * 3_600_000_000 + frame * KEYFRAME_US


def sweep_offsets(n: int) -> list:
    """Microseconds after a keyframe of ``n`` evenly spaced sweeps before the next keyframe."""
    return [int(round(j * KEYFRAME_US / (n + 1))) for j in range(1, n + 1)]


_WORLD_CACHE: dict = {}


def _world(seed, w, frames, agents, kerb_height, upward_endpoint_only):
    key = (seed, w, frames, agents, kerb_height, upward_endpoint_only)
    if key not in _WORLD_CACHE:
        _WORLD_CACHE.clear()
        _WORLD_CACHE[key] = build_world(seed, w, frames, agents, kerb_height=kerb_height,
                                        upward_endpoint_only=upward_endpoint_only)
    return _WORLD_CACHE[key]


def _encode(ext: str, img: np.ndarray, params=()) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    if not ok:
        raise RuntimeError(f'OpenCV could not encode a {ext} image of shape {img.shape}')
    return buf.tobytes()


def _jpeg(rgb: np.ndarray) -> bytes:
    return _encode('.jpg', rgb[:, :, ::-1], (cv2.IMWRITE_JPEG_QUALITY, 92))


def _render_chunk(job):
    """Render and write keyframes ``f0..f1-1`` of every agent of world ``w`` (with the sweeps that
    follow each keyframe); return their records."""
    out_dir, seed, w, f0, f1, frames, agents, voxel, image_size, names, opts = job
    t0 = time.perf_counter()
    world = _world(seed, w, frames, agents, opts['kerb_height'], opts['upward_endpoint_only'])
    t_world = time.perf_counter() - t0
    grid = OccGrid.from_voxel(voxel)
    records = []
    if f0 == 0:
        map_rel = f'maps/{token(seed, "map", w)}.png'
        atomic_write_bytes(os.path.join(out_dir, map_rel), _encode('.png', world.town.drivable_mask_png()))
        for k in range(agents):
            for msg, data in can_bus_messages(world, k, timestamp(w, 0)).items():
                atomic_save_json(os.path.join(out_dir, 'can_bus', f'{names[(w, k)]}_{msg}.json'), data, indent=None)
    t_render = t_write = t_sweep = 0.0
    for f in range(f0, f1):
        ts = timestamp(w, f)
        lidars = {}          # keyframe LiDAR scans of the group, shared by its cooperative labels
        for k in range(agents):
            t1 = time.perf_counter()
            fr = render_frame(world, f, k, image_size, grid, radar=opts['radar'])
            t2 = time.perf_counter()
            name = names[(w, k)]
            files = {}
            for cam in fr['cams']:
                rel = f'samples/{cam["name"]}/{name}__{cam["name"]}__{ts}.jpg'
                files[cam['name']] = rel
                atomic_write_bytes(os.path.join(out_dir, rel), _jpeg(cam['rgb']))
                depth_mm = np.clip(np.round(cam['depth'] * 1000), 0, 65535).astype(np.uint16)
                atomic_write_bytes(os.path.join(out_dir, depth_path(rel)), _encode('.png', depth_mm))
                atomic_write_bytes(os.path.join(out_dir, semantics2d_path(rel)), _encode('.png', cam['semantics']))
            rel = f'samples/{LIDAR_NAME}/{name}__{LIDAR_NAME}__{ts}.pcd.bin'
            files[LIDAR_NAME] = rel
            atomic_write_bytes(os.path.join(out_dir, rel), fr['lidar']['points'].astype(np.float32).tobytes())
            for ch, pts in fr['radar'].items():
                rel = f'samples/{ch}/{name}__{ch}__{ts}.pcd'
                files[ch] = rel
                atomic_write_bytes(os.path.join(out_dir, rel), radar_pcd_bytes(pts))
            sample_tok = token(seed, 'sample', w, k, f)
            lab = fr['labels']
            coop = {}
            if agents > 1:
                lidars[(f, k)] = fr['lidar']
                coop = cooperative_labels(world, f, k, grid, image_size, lab['mask_camera'], lidars)
            save_occ3d_labels(occ3d_label_path(out_dir, name, sample_tok), lab['semantics'], lab['mask_lidar'],
                              lab['mask_camera'], **coop)
            t3 = time.perf_counter()
            sweeps = []
            if f + 1 < frames:
                for j, off in enumerate(sweep_offsets(opts['lidar_sweeps']), 1):
                    sw = lidar_sweep(world, (f * KEYFRAME_US + off) / 1e6, k, frame_rng(world, f, k, 100 + j))
                    rel = f'sweeps/{LIDAR_NAME}/{name}__{LIDAR_NAME}__{ts + off}.pcd.bin'
                    atomic_write_bytes(os.path.join(out_dir, rel), sw['points'].astype(np.float32).tobytes())
                    sweeps.append({'channel': LIDAR_NAME, 'timestamp': ts + off, 'file': rel,
                                   'ego2global': sw['ego2global']})
                for j, off in enumerate(sweep_offsets(opts['camera_sweeps']), 1):
                    sw = camera_sweep(world, (f * KEYFRAME_US + off) / 1e6, k, image_size,
                                      [frame_rng(world, f, k, 200 + 10 * j + c) for c in range(len(CAMERA_NAMES))])
                    for ch, rgb in zip(CAMERA_NAMES, sw['rgb']):
                        rel = f'sweeps/{ch}/{name}__{ch}__{ts + off}.jpg'
                        atomic_write_bytes(os.path.join(out_dir, rel), _jpeg(rgb))
                        sweeps.append({'channel': ch, 'timestamp': ts + off, 'file': rel,
                                       'ego2global': sw['ego2global']})
            t_sweep += time.perf_counter() - t3
            t_write += t3 - t2
            t_render += t2 - t1
            records.append({'world': w, 'agent': k, 'frame': f, 'timestamp': ts, 'ego2global': fr['ego2global'],
                            'files': files, 'image_hw': tuple(image_size), 'boxes': fr['boxes'], 'sweeps': sweeps})
    return records, {'world_s': t_world, 'render_s': t_render, 'write_s': t_write, 'sweeps_s': t_sweep}


def prepare_output_root(out_dir: str, force: bool = False, owned=()) -> bool:
    """Make ``out_dir`` ready for a generation; return whether this generator owns it.

    A missing or empty folder becomes ours: the marker file ``MARKER`` is written first. A folder
    with the marker was created by an earlier generation: the paths it lists as its own are
    removed, so nothing stale (old scenes' labels, sweeps) survives. Any other non-empty folder is
    refused (ValueError naming it) unless ``force``; then files are written into it, nothing is
    removed, and no marker is left (a later run needs ``force`` again).
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f'{out_dir}: output root exists and is not a directory')
    marker = os.path.join(out_dir, MARKER)
    if os.path.isfile(marker):
        try:
            with open(marker) as f:
                previous = json.load(f).get('owned', [])
        except (OSError, ValueError, AttributeError) as e:
            raise ValueError(f'{marker}: unreadable marker of a synthetic world ({e}); delete the folder') from e
        for rel in previous:
            path = os.path.normpath(os.path.join(out_dir, rel))
            if not path.startswith(os.path.normpath(out_dir) + os.sep):
                continue                       # only paths inside the root, whatever the marker says
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)
    elif os.path.isdir(out_dir) and os.listdir(out_dir):
        if not force:
            raise ValueError(f'{out_dir}: folder is not empty and was not created by make_synthetic (no {MARKER} '
                             f'marker); choose a new or empty folder, or pass --force (force=True) to write into it')
        return False
    os.makedirs(out_dir, exist_ok=True)
    atomic_save_json(marker, {'generator': 'occ.data.synthetic', 'owned': sorted(owned)})
    return True


def generate(out_dir: str, scenes: int = 6, frames: int = 40, seed: int = 0, agents: int = 1, voxel: float = 0.8,
             image_size=DEFAULT_IMAGE_SIZE, workers: int = 2, progress: bool = True,
             version: str = 'v1.0-trainval', val_fraction: float = 0.2, lidar_sweeps: int = LIDAR_SWEEPS,
             camera_sweeps: int = 0, radar: bool = True, force: bool = False, kerb_height: float = KERB_HEIGHT,
             upward_endpoint_only: bool = True) -> dict:
    """Generate ``scenes`` worlds x ``frames`` keyframes (x ``agents`` connected vehicles).

    ``lidar_sweeps`` / ``camera_sweeps``: non-key sample_data between consecutive keyframes (9 =
    20 Hz LiDAR, 5 = 12 Hz cameras, as in nuScenes; 0 = none). ``radar``: write the 5 radars.
    ``force``: write into a non-empty folder this generator did not create (see prepare_output_root).
    ``kerb_height``: metres the sidewalks stand above the road (default 0.2; 0: one ground plane;
    data/README.md, "Kerbs"). ``upward_endpoint_only``: LiDAR beams above the horizontal observe
    no free space in the labels' masks (default; data/README.md, "Statistics").

    Returns a summary dict: ``tables`` (row count per nuScenes table), ``scenes``
    (scene names), ``splits``, ``keyframes``, ``seconds`` (wall time) and
    per-stage CPU seconds summed over workers.
    """
    if scenes < 1 or frames < 1 or agents < 1:
        raise ValueError(f'scenes ({scenes}), frames ({frames}) and agents ({agents}) must be >= 1')
    if voxel not in (0.4, 0.8):
        raise ValueError(f'voxel must be 0.4 or 0.8 (Occ3D grid or its CPU version), got {voxel}')
    if not 0 <= val_fraction < 1:
        raise ValueError(f'val_fraction must be in [0, 1) (the share of towns held out for val), got {val_fraction}')
    if lidar_sweeps < 0 or camera_sweeps < 0:
        raise ValueError(f'lidar_sweeps ({lidar_sweeps}) and camera_sweeps ({camera_sweeps}) must be >= 0')
    if not 0 <= kerb_height < 1:
        raise ValueError(f'kerb_height must be in [0, 1) metres, got {kerb_height}')
    image_size = tuple(int(v) for v in image_size)
    if min(image_size) < 16:
        raise ValueError(f'image_size {image_size} is too small (need at least 16 x 16)')
    t_start = time.perf_counter()
    out_dir = os.path.abspath(out_dir)
    n_val = 0 if scenes < 2 or val_fraction == 0 else max(1, int(round(scenes * val_fraction)))
    val_worlds = set(range(scenes - n_val, scenes))
    names = scene_names(scenes, agents, val_worlds, version)
    owned = [version, 'samples', 'sweeps', 'depth', 'semantics2d', 'gts', 'maps', 'can_bus', 'splits.json',
             'annotations.json', 'cooperative.json']
    prepare_output_root(out_dir, force, owned)
    opts = {'lidar_sweeps': int(lidar_sweeps), 'camera_sweeps': int(camera_sweeps), 'radar': bool(radar),
            'kerb_height': float(kerb_height), 'upward_endpoint_only': bool(upward_endpoint_only)}
    jobs = [(out_dir, seed, w, f0, min(frames, f0 + FRAME_CHUNK), frames, agents, voxel, image_size,
             {key: n for key, n in names.items() if key[0] == w}, opts)
            for w in range(scenes) for f0 in range(0, frames, FRAME_CHUNK)]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=scenes * frames * agents, desc='synthetic keyframes', unit='frame')
    records, stages = [], {'world_s': 0.0, 'render_s': 0.0, 'write_s': 0.0, 'sweeps_s': 0.0}

    def collect(res):
        recs, st = res
        records.extend(recs)
        for key in stages:
            stages[key] += st[key]
        if bar is not None:
            bar.update(len(recs))

    if workers > 1 and len(jobs) > 1:
        ctx = mp.get_context('fork' if 'fork' in mp.get_all_start_methods() else 'spawn')
        with ctx.Pool(min(workers, len(jobs))) as pool:
            for res in pool.imap_unordered(_render_chunk, jobs):
                collect(res)
    else:
        for job in jobs:
            collect(_render_chunk(job))
    if bar is not None:
        bar.close()
    calib = {}
    for w in range(scenes):
        for k in range(agents):
            rig = camera_rig(image_size, camera_tilt(seed, w, k))
            calib[(w, k)] = {c['name']: (c['cam2ego'], c['intrinsics']) for c in rig}
            calib[(w, k)][LIDAR_NAME] = (lidar2ego(), None)
            calib[(w, k)].update({r: (radar2ego(r), None) for r in RADAR_NAMES})
    map_files = {w: f'maps/{token(seed, "map", w)}.png' for w in range(scenes)}
    tables = build_tables(records, seed, names, calib, map_files)
    counts = write_tables(out_dir, version, tables)
    order = [(w, k) for w in range(scenes) for k in range(agents)]
    splits = {'train': [names[key] for key in order if key[0] not in val_worlds],
              'val': [names[key] for key in order if key[0] in val_worlds]}
    atomic_save_json(os.path.join(out_dir, 'splits.json'), splits)
    atomic_save_json(os.path.join(out_dir, version, 'splits.json'), {CUSTOM_SPLITS[k]: v for k, v in splits.items()})
    atomic_save_json(os.path.join(out_dir, 'annotations.json'), occ3d_annotations(tables, splits), indent=None)
    if agents > 1:
        atomic_save_json(os.path.join(out_dir, 'cooperative.json'), cooperative_index(seed, scenes, frames, agents,
                                                                                      names))
    return {'out_dir': out_dir, 'version': version, 'tables': counts, 'scenes': [names[key] for key in order],
            'splits': splits, 'keyframes': len(records), 'image_size': image_size, 'voxel': voxel,
            'seconds': time.perf_counter() - t_start, 'stage_cpu_seconds': stages, 'workers': workers}


def cooperative_index(seed: int, scenes: int, frames: int, agents: int, names: dict) -> dict:
    """For every sample of every connected vehicle: its agent id and the other vehicles' samples
    at the same timestamp. ``names``: (world, agent) -> scene name."""
    samples = {}
    for w in range(scenes):
        for f in range(frames):
            toks = [token(seed, 'sample', w, k, f) for k in range(agents)]
            for k, tk in enumerate(toks):
                samples[tk] = {'agent_id': k, 'scene': names[(w, k)], 'timestamp': timestamp(w, f),
                               'neighbors': [{'agent_id': j, 'token': toks[j]} for j in range(agents) if j != k]}
    return {'agents': agents,
            'worlds': [[names[(w, k)] for k in range(agents)] for w in range(scenes)],
            'samples': samples}


__all__ = ['generate', 'depth_path', 'semantics2d_path', 'cooperative_index', 'prepare_output_root',
           'sweep_offsets']
