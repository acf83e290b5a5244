"""Write a synthetic nuScenes-format database with Occ3D labels (parallel over worlds and frame chunks).

Layout under ``out_dir`` (all paths in the tables are relative to it):

    v1.0-trainval/*.json                    the 13 nuScenes tables
    samples/CAM_*/<scene>__CAM_*__<ts>.jpg  camera images
    samples/LIDAR_TOP/<scene>__LIDAR_TOP__<ts>.pcd.bin   float32 x 5 (x, y, z, intensity, ring)
    depth/CAM_*/<image stem>.png            uint16 z-depth in mm (0 = sky, 65535 = 65.5 m or farther)
    semantics2d/CAM_*/<image stem>.png      uint8 Occ3D class per pixel (17 = sky)
    gts/<scene>/<sample_token>/labels.npz   Occ3D labels (semantics, mask_lidar, mask_camera)
    maps/<map_token>.png                    driveable-area mask, 0.1 m/px
    splits.json                             {"train": [scene names], "val": [...]}
    cooperative.json                        (only with agents > 1) connected-vehicle sample groups
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time

import cv2
import numpy as np

from occ.constants import LIDAR_NAME
from occ.data.occ3d_io import occ3d_label_path, save_occ3d_labels
from occ.geometry import OccGrid
from occ.utils.io import atomic_save_json, atomic_write_bytes

from .frame import render_frame
from .nuscenes_db import build_tables, scene_name, token, write_tables
from .sensors import camera_rig, lidar2ego
from .world import build_world

DEFAULT_IMAGE_SIZE = (144, 256)       # nuScenes aspect ratio (1600 x 900 scaled by 0.16)
BASE_TIMESTAMP = 1_600_000_000_000_000  # microseconds
FRAME_CHUNK = 8                       # keyframes per work item (world building is cheap and cached)


def depth_path(image_rel: str) -> str:
    """``samples/CAM_X/<stem>.jpg`` -> ``depth/CAM_X/<stem>.png`` (relative to the root)."""
    parts = image_rel.split('/')
    return '/'.join(['depth', parts[-2], os.path.splitext(parts[-1])[0] + '.png'])


def semantics2d_path(image_rel: str) -> str:
    """``samples/CAM_X/<stem>.jpg`` -> ``semantics2d/CAM_X/<stem>.png`` (relative to the root)."""
    parts = image_rel.split('/')
    return '/'.join(['semantics2d', parts[-2], os.path.splitext(parts[-1])[0] + '.png'])


def timestamp(world: int, frame: int) -> int:
    return BASE_TIMESTAMP + world * 3_600_000_000 + frame * 500_000


_WORLD_CACHE: dict = {}


def _world(seed, w, frames, agents):
    key = (seed, w, frames, agents)
    if key not in _WORLD_CACHE:
        _WORLD_CACHE.clear()
        _WORLD_CACHE[key] = build_world(seed, w, frames, agents)
    return _WORLD_CACHE[key]


def _encode(ext: str, img: np.ndarray, params=()) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    if not ok:
        raise RuntimeError(f'OpenCV could not encode a {ext} image of shape {img.shape}')
    return buf.tobytes()


def _render_chunk(job):
    """Render and write keyframes ``f0..f1-1`` of every agent of world ``w``; return their records."""
    out_dir, seed, w, f0, f1, frames, agents, voxel, image_size = job
    t0 = time.perf_counter()
    world = _world(seed, w, frames, agents)
    t_world = time.perf_counter() - t0
    grid = OccGrid.from_voxel(voxel)
    records = []
    if f0 == 0:
        map_rel = f'maps/{token(seed, "map", w)}.png'
        atomic_write_bytes(os.path.join(out_dir, map_rel), _encode('.png', world.town.drivable_mask_png()))
    t_render = t_write = 0.0
    for f in range(f0, f1):
        ts = timestamp(w, f)
        for k in range(agents):
            t1 = time.perf_counter()
            fr = render_frame(world, f, k, image_size, grid)
            t2 = time.perf_counter()
            name = scene_name(w, k, agents)
            files = {}
            for cam in fr['cams']:
                rel = f'samples/{cam["name"]}/{name}__{cam["name"]}__{ts}.jpg'
                files[cam['name']] = rel
                atomic_write_bytes(os.path.join(out_dir, rel),
                                   _encode('.jpg', cam['rgb'][:, :, ::-1], (cv2.IMWRITE_JPEG_QUALITY, 92)))
                depth_mm = np.clip(np.round(cam['depth'] * 1000), 0, 65535).astype(np.uint16)
                atomic_write_bytes(os.path.join(out_dir, depth_path(rel)), _encode('.png', depth_mm))
                atomic_write_bytes(os.path.join(out_dir, semantics2d_path(rel)), _encode('.png', cam['semantics']))
            rel = f'samples/{LIDAR_NAME}/{name}__{LIDAR_NAME}__{ts}.pcd.bin'
            files[LIDAR_NAME] = rel
            atomic_write_bytes(os.path.join(out_dir, rel), fr['lidar']['points'].astype(np.float32).tobytes())
            sample_tok = token(seed, 'sample', w, k, f)
            lab = fr['labels']
            save_occ3d_labels(occ3d_label_path(out_dir, name, sample_tok), lab['semantics'], lab['mask_lidar'],
                              lab['mask_camera'])
            t_write += time.perf_counter() - t2
            t_render += t2 - t1
            records.append({'world': w, 'agent': k, 'frame': f, 'timestamp': ts, 'ego2global': fr['ego2global'],
                            'files': files, 'image_hw': tuple(image_size), 'boxes': fr['boxes'],
                            'num_lidar_points': len(fr['lidar']['points'])})
    return records, {'world_s': t_world, 'render_s': t_render, 'write_s': t_write}


def generate(out_dir: str, scenes: int = 6, frames: int = 40, seed: int = 0, agents: int = 1, voxel: float = 0.8,
             image_size=DEFAULT_IMAGE_SIZE, workers: int = 2, progress: bool = True,
             version: str = 'v1.0-trainval', val_fraction: float = 0.2) -> dict:
    """Generate ``scenes`` worlds x ``frames`` keyframes (x ``agents`` connected vehicles).

    Returns a summary dict: ``tables`` (row count per nuScenes table), ``scenes``
    (scene names), ``splits``, ``keyframes``, ``seconds`` (wall time) and
    per-stage CPU seconds summed over workers.
    """
    if scenes < 1 or frames < 1 or agents < 1:
        raise ValueError(f'scenes ({scenes}), frames ({frames}) and agents ({agents}) must be >= 1')
    if voxel not in (0.4, 0.8):
        raise ValueError(f'voxel must be 0.4 or 0.8 (Occ3D grid or its CPU version), got {voxel}')
    image_size = tuple(int(v) for v in image_size)
    if min(image_size) < 16:
        raise ValueError(f'image_size {image_size} is too small (need at least 16 x 16)')
    t_start = time.perf_counter()
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f'{out_dir}: output root exists and is not a directory')
    os.makedirs(out_dir, exist_ok=True)
    jobs = [(out_dir, seed, w, f0, min(frames, f0 + FRAME_CHUNK), frames, agents, voxel, image_size)
            for w in range(scenes) for f0 in range(0, frames, FRAME_CHUNK)]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=scenes * frames * agents, desc='synthetic keyframes', unit='frame')
    records, stages = [], {'world_s': 0.0, 'render_s': 0.0, 'write_s': 0.0}

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
    rig = camera_rig(image_size)
    calib = {c['name']: (c['cam2ego'], c['intrinsics']) for c in rig}
    calib[LIDAR_NAME] = (lidar2ego(), None)
    map_files = {w: f'maps/{token(seed, "map", w)}.png' for w in range(scenes)}
    tables = build_tables(records, seed, agents, calib, map_files)
    counts = write_tables(out_dir, version, tables)
    n_val = 0 if scenes < 2 else max(1, int(round(scenes * val_fraction)))
    val_worlds = set(range(scenes - n_val, scenes))
    splits = {'train': [scene_name(w, k, agents) for w in range(scenes) if w not in val_worlds for k in range(agents)],
              'val': [scene_name(w, k, agents) for w in sorted(val_worlds) for k in range(agents)]}
    atomic_save_json(os.path.join(out_dir, 'splits.json'), splits)
    if agents > 1:
        atomic_save_json(os.path.join(out_dir, 'cooperative.json'), cooperative_index(seed, scenes, frames, agents))
    return {'out_dir': out_dir, 'version': version, 'tables': counts,
            'scenes': [scene_name(w, k, agents) for w in range(scenes) for k in range(agents)],
            'splits': splits, 'keyframes': len(records), 'image_size': image_size, 'voxel': voxel,
            'seconds': time.perf_counter() - t_start, 'stage_cpu_seconds': stages, 'workers': workers}


def cooperative_index(seed: int, scenes: int, frames: int, agents: int) -> dict:
    """For every sample of every connected vehicle: its agent id and the other vehicles' samples
    at the same timestamp."""
    samples = {}
    for w in range(scenes):
        for f in range(frames):
            toks = [token(seed, 'sample', w, k, f) for k in range(agents)]
            for k, tk in enumerate(toks):
                samples[tk] = {'agent_id': k, 'scene': scene_name(w, k, agents), 'timestamp': timestamp(w, f),
                               'neighbors': [{'agent_id': j, 'token': toks[j]} for j in range(agents) if j != k]}
    return {'agents': agents,
            'worlds': [[scene_name(w, k, agents) for k in range(agents)] for w in range(scenes)],
            'samples': samples}


__all__ = ['generate', 'depth_path', 'semantics2d_path', 'cooperative_index']
