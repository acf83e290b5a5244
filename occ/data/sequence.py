"""Label-only occupancy sequences for the world model (no images are read), and their batch layout.

``OccSequenceDataset`` gives past, current and future label frames (each in its
own ego frame) with their poses; ``SequenceBatch.of(batch)`` turns a collated
batch into one [B, S, ...] sequence, the only view the world models read.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from occ.constants import IGNORE_INDEX
from occ.data.camera_cache import load_camera_frame
from occ.data.dataset import OccDataset
from occ.registry import DATASETS

# Camera-driven world model: the frozen camera model's BEV of every context frame,
# float [B, T + 1, C, X, Y] (oldest first, current last, each in its own ego frame) ...
CONTEXT_BEV_KEY = 'context_bev'
# ... and its occupancy prediction (argmax) of the same frames, uint8 [B, T + 1, X, Y, Z].
CONTEXT_CAMERA_KEY = 'context_camera_semantics'


@DATASETS.register_module()
class OccSequenceDataset(OccDataset):
    """Past and future Occ3D label frames around every keyframe, OccWorld-style.

    Every frame's labels stay in that frame's own ego frame (as OccWorld and
    the Occ3D files have them); the poses say how the ego moved, so a model
    can be conditioned on the motion and the ego-warp baseline can move the
    last frame into each future frame.

    Per sample (torch tensors, no batch axis; ``occ_collate`` stacks them):

    | key | shape | meaning |
    |---|---|---|
    | ``voxel_semantics``, ``mask_camera``, ``mask_lidar`` | uint8 [X, Y, Z] | current frame |
    | ``ego2global`` | float [4, 4] | current pose |
    | ``history`` | dict: ``voxel_semantics`` uint8 [T, X, Y, Z], ``ego2global`` [T, 4, 4], ``valid`` bool [T] | T past frames, oldest first, most recent last |
    | ``future_semantics`` | uint8 [H, X, Y, Z] | frames +1..+H, 255 past the scene end |
    | ``future_ego2global`` | float [H, 4, 4] | their poses (the last valid pose repeated past the end) |
    | ``future_valid`` | bool [H] | |

    A past frame before the scene start repeats the earliest frame with
    ``valid`` False (the pose too, so the motion there is zero).

    Args:
        info_file, data_root, grid_voxel, seed: as ``OccDataset``.
        num_history: T past frames (default 4: with the current frame, 2 s at 2 Hz).
        num_future: H future frames (default 6: +0.5 s .. +3 s).
        require_history: keep only samples whose T past frames all exist.
        min_future: keep only samples with at least this many future frames.
        cache_labels: keep decoded label grids in memory (a 100x100x8 frame is 80 kB).
        camera_cache: folder of cached camera-model outputs (``occ.data.camera_cache``,
            ``tools/cache_camera_bev.py``); adds ``context_bev`` float [T+1, C, X, Y] and
            ``context_camera_semantics`` uint8 [T+1, X, Y, Z] (history then current frame,
            each in its own ego frame) for the camera-driven world model.
    """

    def __init__(self, info_file: str, data_root: str | None = None, grid_voxel: float = 0.8,
                 num_history: int = 4, num_future: int = 6, require_history: bool = False,
                 min_future: int = 0, cache_labels: bool = True, camera_cache: str | None = None,
                 test_mode: bool = True, seed: int = 0):
        super().__init__(info_file, data_root=data_root, grid_voxel=grid_voxel, num_history=num_history,
                         num_future=num_future, future_frame='own', test_mode=test_mode, seed=seed)
        if not self.load_labels:
            raise ValueError(f'{info_file}: OccSequenceDataset needs occupancy labels (metadata has_occ is False)')
        self.require_history, self.min_future = bool(require_history), int(min_future)
        self._cache = {} if cache_labels else None
        self.camera_cache = camera_cache
        self._camera = {}
        self.indices = [n for n, info in enumerate(self.infos) if self._keep(info)]
        if not self.indices:
            raise ValueError(f'{info_file}: no sample has {num_history} past frames and {min_future} future '
                             f'frames (scenes too short for require_history/min_future)')

    def _keep(self, info: dict) -> bool:
        key = info['scene_token']
        if self.require_history and (key, info['frame_idx'] - self.num_history) not in self._by_frame:
            return False
        return self.min_future == 0 or (key, info['frame_idx'] + self.min_future) in self._by_frame

    def __len__(self) -> int:
        return len(self.indices)

    def _frame_labels(self, n: int) -> dict:
        if self._cache is not None and n in self._cache:
            return self._cache[n]
        lab = self._labels(self.infos[n])
        if self._cache is not None:
            self._cache[n] = lab
        return lab

    def _camera_frame(self, n: int) -> dict:
        token = self.infos[n]['token']
        if token not in self._camera:
            fr = load_camera_frame(self.camera_cache, token)
            self._camera[token] = {'bev': fr['bev'].astype(np.float16), 'semantics': fr['semantics']}
        return self._camera[token]

    def __getitem__(self, index: int) -> dict:
        n0 = self.indices[index]
        info = self.infos[n0]
        scene, f0 = info['scene_token'], info['frame_idx']
        cur = self._frame_labels(n0)
        pose0 = np.asarray(info['ego2global'], np.float32)

        hist_sem, hist_pose, hist_valid, ctx_n = [], [], [], []
        for t in range(self.num_history, 0, -1):
            n = self._by_frame.get((scene, f0 - t))
            if n is None:   # before the scene start: the earliest existing frame, flagged invalid
                n = next(self._by_frame[(scene, f)] for f in range(max(f0 - t, 0), f0 + 1)
                         if (scene, f) in self._by_frame)
                hist_valid.append(False)
            else:
                hist_valid.append(True)
            ctx_n.append(n)
            hist_sem.append(self._frame_labels(n)['semantics'])
            hist_pose.append(np.asarray(self.infos[n]['ego2global'], np.float32))

        x, y, z = self.grid.shape
        fut_sem = np.full((self.num_future, x, y, z), IGNORE_INDEX, np.uint8)
        fut_pose = np.repeat(pose0[None], self.num_future, 0)
        fut_valid = np.zeros(self.num_future, bool)
        last = pose0
        for h in range(self.num_future):
            n = self._by_frame.get((scene, f0 + h + 1))
            if n is not None:
                fut_sem[h] = self._frame_labels(n)['semantics']
                last = np.asarray(self.infos[n]['ego2global'], np.float32)
                fut_valid[h] = True
            fut_pose[h] = last

        t = torch.from_numpy
        empty = np.zeros((0, x, y, z), np.uint8)
        extra = {}
        if self.camera_cache:
            cams = [self._camera_frame(n) for n in ctx_n + [n0]]
            extra = {CONTEXT_BEV_KEY: t(np.stack([c['bev'] for c in cams]).astype(np.float32)),
                     CONTEXT_CAMERA_KEY: t(np.stack([c['semantics'] for c in cams]))}
        return {**extra,
            'voxel_semantics': t(cur['semantics'].copy()), 'mask_camera': t(cur['mask_camera'].copy()),
            'mask_lidar': t(cur['mask_lidar'].copy()), 'ego2global': t(pose0),
            'history': {'voxel_semantics': t(np.stack(hist_sem) if hist_sem else empty),
                        'ego2global': t(np.stack(hist_pose) if hist_pose else np.zeros((0, 4, 4), np.float32)),
                        'valid': t(np.asarray(hist_valid, bool))},
            'future_semantics': t(fut_sem), 'future_ego2global': t(fut_pose), 'future_valid': t(fut_valid),
            'sample_token': info['token'], 'scene_token': scene, 'scene_name': info['scene_name'],
            'frame_idx': int(f0),
        }


@dataclass
class SequenceBatch:
    """A collated ``OccSequenceDataset`` batch as one sequence of S = T + 1 (+ H) frames.

    Attributes:
        labels: uint8 [B, S, X, Y, Z]: T past frames, the current one, then (``with_future``)
            the H future frames (255 past the scene end).
        valid: bool [B, S]: the frame exists (padding before the scene start and past its end is False).
        poses: float [B, S, 4, 4] ego2global of every frame (always including the future's:
            the motion is known at prediction time).
        num_context: T + 1; frame ``num_context - 1`` is the current frame.
    """

    labels: torch.Tensor
    valid: torch.Tensor
    poses: torch.Tensor
    num_context: int

    @classmethod
    def of(cls, batch: dict, with_future: bool = True) -> 'SequenceBatch':
        """From a collated batch (``history``, ``voxel_semantics``, ``ego2global``, ``future_*``).

        ``with_future=False`` leaves the future *labels* out (prediction must not read
        them); the future poses stay.
        """
        cur = batch['voxel_semantics'][:, None]
        labels, valid = [cur], [torch.ones(cur.shape[0], 1, dtype=torch.bool, device=cur.device)]
        poses = [batch['ego2global'][:, None]]
        hist = batch.get('history')
        if hist and hist['voxel_semantics'].shape[1]:
            labels.insert(0, hist['voxel_semantics'])
            valid.insert(0, hist['valid'].bool())
            poses.insert(0, hist['ego2global'])
        n_ctx = sum(v.shape[1] for v in labels)
        if 'future_ego2global' in batch:
            poses.append(batch['future_ego2global'])
        if with_future and 'future_semantics' in batch:
            labels.append(batch['future_semantics'])
            valid.append(batch['future_valid'].bool())
        return cls(torch.cat(labels, 1), torch.cat(valid, 1), torch.cat(poses, 1), n_ctx)

    @property
    def context(self) -> torch.Tensor:
        """Past + current labels [B, T + 1, X, Y, Z]."""
        return self.labels[:, :self.num_context]

    @property
    def num_future(self) -> int:
        """Future frames with poses (H)."""
        return self.poses.shape[1] - self.num_context


__all__ = ['OccSequenceDataset', 'SequenceBatch', 'CONTEXT_BEV_KEY', 'CONTEXT_CAMERA_KEY']
