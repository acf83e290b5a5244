"""OccDataset: info file -> per-sample dict of the batch contract, with exact-geometry augmentation.

Frames and augmentation (read this before writing model geometry)
-----------------------------------------------------------------
* ``intrinsics`` [N,3,3] describe the camera after the deterministic resize +
  crop to ``img_size`` (the test-time image); ``img_aug`` [N,4,4] is the random
  image-space part on top (identity in test mode), acting on (u, v, depth, 1)
  as lift-splat's post_rot / post_tran do. A camera-frame point ``X`` (depth
  ``d = X_z``) lands on pixel ``(u', v')`` of ``imgs`` with
  ``[u', v', d, 1] = img_aug @ [u, v, d, 1]``, ``(u, v) = (intrinsics @ X)[:2] / d``.
  Integer pixel coordinates are pixel centres.
* ``cam2ego`` [N,4,4] maps camera -> *original* keyframe ego frame.
* ``bev_aug`` [4,4] maps original ego coordinates -> augmented ego
  coordinates (flip of x and/or y, then a rotation about z). The labels
  (``voxel_semantics``, masks, future labels) are resampled into the augmented
  frame, so model geometry must use ``bev_aug @ cam2ego`` as the camera -> ego
  map. A labelled voxel centre ``c`` (augmented frame) is the camera point
  ``X = inv(bev_aug @ cam2ego) @ c``, seen at the pixel given above. Voxels that come from outside
  the grid after rotation get semantics 255 and masks 0.
* ``ego2global`` is the original pose; the augmented ego frame's pose is
  ``ego2global @ inv(bev_aug)``.
* History frames (``history``, keys as the current frame plus ``bev_aug``
  [T,4,4] and ``valid`` [T]) share the sample's ``img_aug`` draw and its
  ``bev_aug``; each has its own ``cam2ego`` / ``ego2global``, so past ego ->
  current augmented ego is ``bev_aug @ inv(ego2global) @ history.ego2global``.
* Neighbours (``neighbors``: frame keys, ``bev_aug`` (identity), ``valid``,
  ``agent_id``, leading K) are other vehicles: their ``cam2ego`` maps into
  *their own* ego frame (not augmented); neighbour ego -> current augmented ego
  is ``bev_aug @ inv(ego2global) @ neighbors.ego2global``.
* Future labels (``future_semantics`` [H,X,Y,Z], horizon h = h keyframes
  ahead) are expressed in the current augmented ego frame when
  ``future_frame='current'`` (static world stays put; only movers move), or in
  each future frame's own (bev-augmented) ego frame with ``future_frame='own'``.
  Frames past the scene end are 255 with ``future_valid`` False.

Train-time randomness is drawn from ``np.random.default_rng([seed, epoch, index])``
(call ``set_epoch``), so a resumed run sees the same augmentation as an
uninterrupted one, whatever the number of workers. Workers copy the dataset
when they start: with ``persistent_workers=True`` call ``set_epoch`` before
the workers are created, or keep workers non-persistent.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from occ.constants import CAMERA_NAMES, CLASS_NAMES, IGNORE_INDEX, IMG_MEAN, IMG_STD, OCC_COLORS
from occ.data.depth import dense_depth_path, load_dense_depth, load_points, project_depth, transform_points
from occ.data.history_mask import history_visibility_mask
from occ.data.infos import DATASET_KEYS, InfoFile
from occ.data.occ3d_io import OccFileError, load_occ3d_labels
from occ.data.transforms import (BevAug, ImageAug, downsample_labels, image_transforms, resample_labels,
                                 to4x4, warp_image)
from occ.geometry import OCC3D_RANGE, OccGrid
from occ.registry import DATASETS

FRAME_KEYS = ('imgs', 'intrinsics', 'cam2ego', 'img_aug', 'ego2global')


# End markers of complete image files: a truncated JPEG still decodes (the missing rows come
# out grey, libjpeg only warns), so a cut-off file is caught by its missing end marker.
_JPEG_END = b'\xff\xd9'
_PNG_END = b'IEND\xaeB`\x82'


def _truncated(data: bytes) -> bool:
    if data[:2] == b'\xff\xd8':        # JPEG: EOI (FFD9 cannot occur in entropy-coded data)
        return _JPEG_END not in data[-64:]
    if data[:8] == b'\x89PNG\r\n\x1a\n':
        return not data.rstrip(b'\x00').endswith(_PNG_END)
    return False


def load_image(path: str, expect_hw: tuple[int, int] | None = None) -> np.ndarray:
    """RGB uint8 [H, W, 3]; errors name the file (missing, truncated, undecodable, wrong size)."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except FileNotFoundError:
        raise OccFileError(f'{path}: camera image not found') from None
    except OSError as e:
        raise OccFileError(f'{path}: camera image unreadable ({e})') from e
    if _truncated(data):
        raise OccFileError(f'{path}: camera image is truncated (no end-of-image marker; '
                           f'{len(data)} bytes): an interrupted copy or download?')
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise OccFileError(f'{path}: camera image cannot be decoded (corrupt or truncated)')
    if expect_hw is not None and img.shape[:2] != tuple(expect_hw):
        raise OccFileError(f'{path}: image is {img.shape[1]}x{img.shape[0]} (WxH) but the info file says '
                           f'{expect_hw[1]}x{expect_hw[0]}; intrinsics would not match')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def reduce_to_grid(labels: dict, target_shape: tuple, path: str) -> dict:
    """Bring file labels (any integer multiple of the model grid) down to ``target_shape``."""
    shape = labels['semantics'].shape
    factors = [s / t for s, t in zip(shape, target_shape)]
    f = int(round(factors[0]))
    if f < 1 or any(abs(x - f) > 1e-9 for x in factors):
        raise OccFileError(f'{path}: label grid {tuple(shape)} cannot be reduced to the model grid '
                           f'{tuple(target_shape)} (needs the same integer factor on every axis)')
    grids = {k: v for k, v in labels.items() if 'semantics' not in k}
    sem, masks = downsample_labels(labels['semantics'], grids, f)
    out = {'semantics': sem, **masks}
    if 'semantics_coop' in labels:      # a class grid too: majority vote, not a mask's any()
        out['semantics_coop'] = downsample_labels(labels['semantics_coop'], {}, f)[0]
    return out


@DATASETS.register_module()
class OccDataset(Dataset):
    """Occ3D-format occupancy dataset over a nuScenes root.

    Args:
        info_file: ``occ_infos_<split>.pkl`` written by tools/create_data.py.
        data_root: root the info paths are relative to (default: the one stored in the file).
        img_size: (H, W) network input size.
        grid_voxel: model voxel size in metres (0.4 -> 200x200x16, 0.8 -> 100x100x8);
            finer label files are coarsened (see ``transforms.downsample_labels``).
        pc_range: (x_min, y_min, z_min, x_max, y_max, z_max) metres of the grid, as every
            model part takes it (default Occ3D's); it must be the range the label files
            cover (the info file's ``metadata['grid']``).
        cameras: camera names, in tensor order.
        aug: ``dict(img=dict(scale, rot, flip, crop_y) or None, bev=dict(rot, flip_x, flip_y) or None)``;
            ignored in test mode.
        num_history: T past frames, ``history_stride`` keyframes apart (most recent last).
        history_mask_frames: past keyframes (``history_stride`` apart) whose camera masks,
            warped into the current frame, join ``mask_camera`` in ``mask_camera_history``
            (``occ.data.history_mask``); None = ``num_history``, 0 = no such mask. Set it
            without ``num_history`` to score a streaming model on the same region.
        num_future: H future label frames.
        future_frame: 'current' or 'own' (see module docstring).
        load_neighbors: add the other agents' inputs (cooperative worlds); ``max_neighbors`` K
            (default: the most any sample has).
        coop_labels: cooperative labels (worlds generated with ``--agents`` > 1, data/README.md):
            ``voxel_semantics`` from ``semantics_coop`` (objects any connected vehicle's LiDAR
            observes) and ``mask_camera_coop`` (voxels any vehicle's cameras see) beside the ego's
            ``mask_camera``; train on it with the model's ``loss_mask_key='mask_camera_coop'``.
        load_depth: add ``depth`` [N, H, W] from ``depth_source`` 'lidar' or 'dense'.
        load_labels: read labels (False for unlabeled test sets).
        test_mode: no random augmentation.
        seed: augmentation seed.
    """

    def __init__(self, info_file: str, data_root: str | None = None, img_size=(256, 704),
                 grid_voxel: float = 0.8, pc_range=OCC3D_RANGE, cameras=CAMERA_NAMES, aug: dict | None = None,
                 num_history: int = 0, history_stride: int = 1, history_mask_frames: int | None = None,
                 num_future: int = 0,
                 future_frame: str = 'current', load_neighbors: bool = False,
                 max_neighbors: int | None = None, coop_labels: bool = False, load_depth: bool = False,
                 depth_source: str = 'lidar',
                 load_labels: bool = True, test_mode: bool = False, seed: int = 0):
        super().__init__()
        if depth_source not in ('lidar', 'dense'):
            raise ValueError(f"depth_source must be 'lidar' or 'dense', got {depth_source!r}")
        if future_frame not in ('current', 'own'):
            raise ValueError(f"future_frame must be 'current' or 'own', got {future_frame!r}")
        data = InfoFile.read(info_file, DATASET_KEYS)    # safe unpickling; finite poses/calibration
        self.info_file = info_file
        self.metadata = data.metadata
        self.infos = data.infos
        self.data_root = data_root if data_root is not None else data.dataroot
        self.img_size = tuple(int(v) for v in img_size)
        self.grid = OccGrid.from_voxel(grid_voxel, pc_range)
        if self.grid.ndim != 3 or not self.grid.tiles_range():
            raise ValueError(f'grid_voxel={grid_voxel} m does not tile the range {self.grid.pc_range}')
        label_range = (self.metadata.get('grid') or {}).get('pc_range')
        if (load_labels and self.metadata.get('has_occ', True) and label_range is not None
                and (len(label_range) != 6 or not np.allclose(label_range, self.grid.pc_range, atol=1e-6))):
            raise ValueError(f'{info_file}: the labels cover {tuple(label_range)} but the dataset '
                             f'pc_range is {self.grid.pc_range}')
        self.cameras = tuple(cameras)
        self.test_mode = test_mode
        aug = aug or {}
        self.img_aug_sampler = None if test_mode or not aug.get('img') else ImageAug(**aug['img'])
        self.bev_aug_sampler = None if test_mode or not aug.get('bev') else BevAug(**aug['bev'])
        self.num_history, self.history_stride = int(num_history), int(history_stride)
        self.history_mask_frames = int(num_history if history_mask_frames is None else history_mask_frames)
        self.num_future, self.future_frame = int(num_future), future_frame
        self.load_neighbors, self.load_depth, self.depth_source = load_neighbors, load_depth, depth_source
        self.load_labels = load_labels and self.metadata.get('has_occ', True)
        self.coop_labels = bool(coop_labels)
        self.seed, self.epoch = int(seed), 0
        self._by_frame = {(i['scene_token'], i['frame_idx']): n for n, i in enumerate(self.infos)}
        self._by_token = {i['token']: n for n, i in enumerate(self.infos)}
        self.max_neighbors = (max_neighbors if max_neighbors is not None else
                              max((len(i.get('neighbors', ())) for i in self.infos), default=0))

    # -- mmengine / sampler hooks ---------------------------------------------------------
    @property
    def metainfo(self) -> dict:
        return {'classes': CLASS_NAMES, 'palette': OCC_COLORS.tolist(), 'grid_shape': self.grid.shape,
                'voxel_size': self.grid.voxel_size, 'pc_range': self.grid.pc_range, 'cameras': self.cameras}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.infos)

    # -- loading ---------------------------------------------------------------------------
    def _path(self, rel: str) -> str:
        return os.path.join(self.data_root, rel)

    def _frame(self, info: dict, img_params: dict | None) -> tuple[dict, list]:
        """Camera inputs of one frame (numpy) and the per-camera full pixel maps."""
        h, w = self.img_size
        imgs, ks, c2e, augs, fulls = [], [], [], [], []
        mean, std = np.asarray(IMG_MEAN, np.float32), np.asarray(IMG_STD, np.float32)
        for cam in self.cameras:
            c = info['cams'].get(cam)
            if c is None:
                raise KeyError(f'{self.info_file}: sample {info["token"]} has no camera {cam}')
            src_hw = (int(c['height']), int(c['width']))
            base, aug = image_transforms(src_hw, self.img_size, img_params)
            full = aug @ base
            img = load_image(self._path(c['data_path']), src_hw)
            img = (warp_image(img, full, (h, w)).astype(np.float32) - mean) / std
            imgs.append(img.transpose(2, 0, 1))
            ks.append((base @ np.asarray(c['intrinsics'], np.float64)).astype(np.float32))
            c2e.append(np.asarray(c['cam2ego'], np.float32))
            augs.append(to4x4(aug))
            fulls.append(full)
        frame = {'imgs': np.stack(imgs), 'intrinsics': np.stack(ks), 'cam2ego': np.stack(c2e),
                 'img_aug': np.stack(augs), 'ego2global': np.asarray(info['ego2global'], np.float32)}
        return frame, fulls

    def _labels(self, info: dict) -> dict:
        path = self._path(info['occ_path'])
        return reduce_to_grid(load_occ3d_labels(path, coop=self.coop_labels), self.grid.shape, path)

    def _depth(self, info: dict, frame: dict, fulls: list) -> np.ndarray:
        hw = self.img_size
        out = []
        if self.depth_source == 'lidar':
            pts = load_points(self._path(info['lidar_path']))
            pts_ego = transform_points(pts, info['lidar2ego'])
            for n, cam in enumerate(self.cameras):
                k = np.asarray(info['cams'][cam]['intrinsics'], np.float64)
                out.append(project_depth(pts_ego, frame['cam2ego'][n], fulls[n] @ k, hw))
        else:
            for n, cam in enumerate(self.cameras):
                path = dense_depth_path(self.data_root, info['cams'][cam]['data_path'])
                out.append(load_dense_depth(path, fulls[n], hw))
        return np.stack(out).astype(np.float32)

    def _history(self, info: dict, img_params, bev_aug: np.ndarray) -> dict:
        frames, valid = [], []
        for t in range(self.num_history, 0, -1):                 # oldest first, most recent last
            want = info['frame_idx'] - t * self.history_stride
            # Before the scene start: repeat the earliest available frame, flagged invalid.
            n = self._by_frame.get((info['scene_token'], max(want, 0)))
            ok = want >= 0 and n is not None
            src = self.infos[n] if n is not None else info
            frames.append(self._frame(src, img_params)[0])
            valid.append(ok)
        out = {k: np.stack([f[k] for f in frames]) for k in FRAME_KEYS}
        # The same BEV augmentation, so a history BEV is built in the same augmented frame.
        out['bev_aug'] = np.repeat(bev_aug[None].astype(np.float32), len(frames), 0)
        out['valid'] = np.asarray(valid, bool)
        return out

    def _history_visibility(self, info: dict, bev_aug: np.ndarray, mask_camera: np.ndarray) -> np.ndarray:
        """``mask_camera_history`` uint8 [X, Y, Z]: visible now or in one of the past keyframes."""
        e_cur_inv = np.linalg.inv(np.asarray(info['ego2global'], np.float64))
        masks, past2cur = [], []
        for t in range(1, self.history_mask_frames + 1):
            n = self._by_frame.get((info['scene_token'], info['frame_idx'] - t * self.history_stride))
            if n is None:                                       # before the scene start
                continue
            past = self.infos[n]
            masks.append(self._labels(past)['mask_camera'])
            past2cur.append(bev_aug @ e_cur_inv @ np.asarray(past['ego2global'], np.float64))
        return history_visibility_mask(mask_camera, masks, past2cur, self.grid)

    def _future(self, info: dict, bev_aug: np.ndarray) -> dict:
        x, y, z = self.grid.shape
        h = self.num_future
        sem = np.full((h, x, y, z), IGNORE_INDEX, np.uint8)
        mcam = np.zeros((h, x, y, z), np.uint8)
        valid = np.zeros(h, bool)
        e_cur = np.asarray(info['ego2global'], np.float64)
        for i in range(h):
            n = self._by_frame.get((info['scene_token'], info['frame_idx'] + i + 1))
            if n is None:
                continue
            fut = self.infos[n]
            lab = self._labels(fut)
            if self.future_frame == 'current':
                src2dst = bev_aug @ np.linalg.inv(e_cur) @ np.asarray(fut['ego2global'], np.float64)
            else:
                src2dst = bev_aug
            lab = _maybe_resample(lab, src2dst, self.grid)
            sem[i], mcam[i], valid[i] = lab['semantics'], lab['mask_camera'], True
        return {'future_semantics': sem, 'future_mask_camera': mcam, 'future_valid': valid}

    def _neighbors(self, info: dict, img_params, ego_frame: dict) -> dict:
        k = self.max_neighbors
        frames, valid, ids = [], [], []
        for nb in list(info.get('neighbors', ()))[:k]:
            n = self._by_token.get(nb['token'])
            if n is None:
                continue
            frames.append(self._frame(self.infos[n], img_params)[0])
            valid.append(True)
            ids.append(int(nb['agent_id']))
        while len(frames) < k:
            # Padding: zero images, the ego's own matrices (well-conditioned), flagged invalid.
            pad = {key: ego_frame[key].copy() for key in FRAME_KEYS}
            pad['imgs'] = np.zeros_like(pad['imgs'])
            frames.append(pad)
            valid.append(False)
            ids.append(-1)
        out = {key: np.stack([f[key] for f in frames]) if frames else
               np.zeros((0,) + ego_frame[key].shape, np.float32) for key in FRAME_KEYS}
        out['bev_aug'] = np.repeat(np.eye(4, dtype=np.float32)[None], k, 0)   # neighbours are never augmented
        out['valid'] = np.asarray(valid, bool)
        out['agent_id'] = np.asarray(ids, np.int64)
        return out

    def rng(self, index: int) -> np.random.Generator:
        """The augmentation generator of sample ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def __getitem__(self, index: int) -> dict:
        info = self.infos[index]
        rng = self.rng(index)
        img_params = self.img_aug_sampler.sample(rng) if self.img_aug_sampler is not None else None
        bev_aug = (self.bev_aug_sampler.sample(rng) if self.bev_aug_sampler is not None
                   else np.eye(4, dtype=np.float32))
        frame, fulls = self._frame(info, img_params)
        out = dict(frame)
        out['bev_aug'] = bev_aug.astype(np.float32)
        if self.load_labels:
            lab = _maybe_resample(self._labels(info), bev_aug, self.grid)
            out['voxel_semantics'] = lab['semantics_coop' if self.coop_labels else 'semantics']
            out['mask_camera'] = lab['mask_camera']
            out['mask_lidar'] = lab['mask_lidar']
            if self.coop_labels:
                out['mask_camera_coop'] = lab['mask_camera_coop']
            if self.history_mask_frames:
                out['mask_camera_history'] = self._history_visibility(info, bev_aug.astype(np.float64),
                                                                      lab['mask_camera'])
            if self.num_future:
                out.update(self._future(info, bev_aug.astype(np.float64)))
        if self.load_depth:
            out['depth'] = self._depth(info, frame, fulls)
        if self.num_history:
            out['history'] = self._history(info, img_params, bev_aug)
        if self.load_neighbors:
            out['neighbors'] = self._neighbors(info, img_params, frame)
        out = _to_torch(out)
        out.update(sample_token=info['token'], scene_token=info['scene_token'],
                   scene_name=info['scene_name'], frame_idx=int(info['frame_idx']))
        return out


def _maybe_resample(lab: dict, src2dst: np.ndarray, grid: OccGrid) -> dict:
    if np.allclose(src2dst, np.eye(4), atol=1e-7):
        return lab
    return resample_labels(lab, src2dst, grid)


def _to_torch(d: dict) -> dict:
    return {k: _to_torch(v) if isinstance(v, dict) else torch.from_numpy(np.ascontiguousarray(v))
            for k, v in d.items()}


__all__ = ['OccDataset', 'load_image', 'reduce_to_grid']
