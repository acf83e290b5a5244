"""RayIoU (SparseOcc, Liu et al. 2024, arXiv:2312.17118), vectorised and device-agnostic.

Protocol, as in SparseOcc's ``loaders/ray_metrics.py`` and ``loaders/ego_pose_dataset.py``
(MCG-NJU/SparseOcc), re-implemented here in plain torch:

* rays: 39 pitch angles (``-(pi/2 - atan(k))`` for k = 1..10, then the last
  step repeated until the pitch reaches 0.21 rad, the top of the nuScenes
  LiDAR field of view) x 360 azimuths (1 degree); ``lidar_ray_directions``;
* origins: LiDAR positions of several keyframes of the same scene expressed in
  the current ego frame (``occ.evaluation.origins``); every origin casts all rays;
* a ray marches through the grid voxel by voxel (Amanatides-Woo traversal) from
  the origin; its hit is the first voxel whose label is not free (< 17); the
  hit depth is the distance at which the ray *leaves* that voxel, as SparseOcc's
  ``dvr.render_forward`` reports it; a ray that leaves the grid has no hit
  (label free);
* rays whose GT has no hit are dropped; for each kept ray the predicted class
  is the class of the prediction's first hit (free when it has none);
* a ray is a true positive for class c at threshold t when GT and prediction
  both hit class c and ``|depth_pred - depth_gt| < t`` (t = 1, 2, 4 m);
* counts (GT rays per class, predicted rays per class, TPs per threshold and
  class) are pooled over the whole split; IoU = TP / (GT + pred - TP) per class
  and threshold; RayIoU = nanmean over the 17 semantic classes and the 3
  thresholds (a class with no GT and no predicted ray is left out).
  No visibility mask is applied.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from occ.constants import FREE, NUM_CLASSES
from occ.geometry import OccGrid

RAY_THRESHOLDS = (1.0, 2.0, 4.0)   # metres


def lidar_pitch_angles() -> np.ndarray:
    """SparseOcc's 39 pitch angles (radians), increasing from -pi/4 to ~0.219."""
    pitch = [-(math.pi / 2 - math.atan(k)) for k in range(1, 11)]
    while pitch[-1] < 0.21:            # continue with the last spacing up to the FOV top
        pitch.append(pitch[-1] + (pitch[-1] - pitch[-2]))
    return np.asarray(pitch, np.float64)


def lidar_ray_directions() -> torch.Tensor:
    """Unit ray directions, float64 [39 * 360, 3]: pitch-major, azimuth 0..359 degrees."""
    pitch = torch.from_numpy(lidar_pitch_angles())[:, None]
    azim = torch.deg2rad(torch.arange(360, dtype=torch.float64))[None, :]
    d = torch.stack([torch.cos(pitch) * torch.cos(azim),
                     torch.cos(pitch) * torch.sin(azim),
                     torch.sin(pitch).expand(-1, 360)], -1)
    return d.reshape(-1, 3)


class RayCaster:
    """Rays from T origins x R directions through one grid, cast into several label grids at once.

    Amanatides-Woo traversal vectorised over all rays: every loop iteration
    moves each live ray one voxel. A ray stops when it has hit in every grid
    (the GT and the prediction share the walk) or left the grid, and finished
    rays are dropped from the working set, so the cost follows the distance to
    the nearest surfaces rather than the grid size. Ties follow SparseOcc's
    ``dvr`` kernel: x if ``tx < ty and tx < tz``, else y if ``ty < tz``, else z.

    Args:
        origins: float [T, 3] metres, ego frame, inside the grid.
        directions: float [R, 3] unit vectors.
        grid: the OccGrid of the label grids (cubic voxels).
        device: torch device (None = CPU).
    """

    def __init__(self, origins, directions, grid: OccGrid, device=None):
        self.device = torch.device(device) if device is not None else torch.device('cpu')
        self.grid = grid
        self.shape = tuple(int(s) for s in grid.shape)
        vs = float(grid.voxel_size)
        lower = torch.as_tensor(grid.lower, dtype=torch.float64, device=self.device)
        o = (torch.as_tensor(np.asarray(origins, np.float64), device=self.device).reshape(-1, 3)
             - lower) / vs
        size = torch.tensor(self.shape, dtype=torch.float64, device=self.device)
        if ((o < 0) | (o >= size)).any():
            raise ValueError(f'ray origins must lie inside the grid {grid.pc_range}, got '
                             f'{(o * vs + lower).tolist()}')
        d = torch.as_tensor(np.asarray(directions, np.float64), device=self.device).reshape(-1, 3)
        T, R = o.shape[0], d.shape[0]
        self.o = o[:, None, :].expand(T, R, 3).reshape(-1, 3)
        self.d = d[None].expand(T, R, 3).reshape(-1, 3)
        self.num_rays = T * R

    def cast(self, *grids) -> list:
        """First non-free voxel of every ray in each grid.

        Args:
            grids: label grids uint8/long [X, Y, Z] (numpy or torch); labels < 17 stop a ray.

        Returns:
            one ``(labels long [N], depths float64 [N])`` pair per grid (N = T * R,
            origin-major): label 17 and the grid-exit distance when a ray hits nothing;
            otherwise the hit class and the distance (metres) at which the ray leaves
            the hit voxel, as SparseOcc reports it.
        """
        dev, shape = self.device, self.shape
        flats = []
        for g in grids:
            g = torch.as_tensor(g if torch.is_tensor(g) else np.asarray(g), device=dev)
            if tuple(g.shape) != shape:
                raise ValueError(f'label grid shape {tuple(g.shape)} != ray grid shape {shape}')
            flats.append(g.reshape(-1).to(torch.uint8 if g.dtype == torch.uint8 else torch.long))
        K, n = len(flats), self.num_rays
        vs = float(self.grid.voxel_size)
        o, d = self.o, self.d
        step = torch.where(d >= 0, 1, -1)
        nonzero = d != 0
        safe = torch.where(nonzero, d, torch.ones_like(d))
        voxel = torch.floor(o).long()
        inf = torch.full_like(d, math.inf)
        t_max = torch.where(nonzero, (voxel.double() + (step > 0).double() - o) / safe, inf)
        t_delta = torch.where(nonzero, step.double() / safe, inf)
        size = torch.tensor(shape, device=dev)
        # Voxel steps left along each axis before leaving the grid (exact integers).
        remaining = torch.where(step > 0, size - voxel, voxel + 1)
        strides = torch.tensor([shape[1] * shape[2], shape[2], 1], device=dev)
        lin = (voxel * strides).sum(1)
        lin_step = step * strides                      # flat-index change per axis step
        # One 1-D tensor per quantity and axis: elementwise ops on them beat gathers on [n, 3].
        state = {'idx': torch.arange(n, device=dev), 'lin': lin,
                 'tx': t_max[:, 0], 'ty': t_max[:, 1], 'tz': t_max[:, 2],
                 'dx': t_delta[:, 0], 'dy': t_delta[:, 1], 'dz': t_delta[:, 2],
                 'sx': lin_step[:, 0], 'sy': lin_step[:, 1], 'sz': lin_step[:, 2],
                 'rx': remaining[:, 0], 'ry': remaining[:, 1], 'rz': remaining[:, 2]}
        for k in range(K):
            state[f'lab{k}'] = torch.full((n,), FREE, dtype=torch.long, device=dev)
            state[f'dep{k}'] = torch.zeros(n, dtype=torch.float64, device=dev)
            state[f'open{k}'] = torch.ones(n, dtype=torch.bool, device=dev)
        labels = torch.full((K, n), FREE, dtype=torch.long, device=dev)
        depths = torch.zeros((K, n), dtype=torch.float64, device=dev)

        def flush(done):
            # Write the results of finished rays to the outputs.
            where = state['idx'][done]
            for k in range(K):
                labels[k, where] = state[f'lab{k}'][done]
                depths[k, where] = state[f'dep{k}'][done]

        live, last = n, flats[0].numel() - 1 if K else 0
        for _ in range(sum(shape) + 3):                # at most X + Y + Z boundary crossings
            S = state
            tx, ty, tz = S['tx'], S['ty'], S['tz']
            ax = (tx < ty) & (tx < tz)
            ay = ~ax & (ty < tz)
            az = ~(ax | ay)
            exit_d = torch.minimum(tx, torch.minimum(ty, tz)) * vs
            leaving = (ax & (S['rx'] == 1)) | (ay & (S['ry'] == 1)) | (az & (S['rz'] == 1))
            any_open = torch.zeros_like(ax)
            lin_safe = S['lin'].clamp(0, last)         # rays already out are masked below
            for k in range(K):
                lab = flats[k].take(lin_safe)
                op = S[f'open{k}']
                hit = op & (lab < FREE)
                S[f'lab{k}'] = torch.where(hit, lab.long(), S[f'lab{k}'])
                # hit: depth where it leaves the hit voxel; no hit and leaving: where it leaves the grid
                S[f'dep{k}'] = torch.where(hit | (op & leaving), exit_d, S[f'dep{k}'])
                op = op & ~hit & ~leaving
                S[f'open{k}'] = op
                any_open = any_open | op
            live_now = int(any_open.sum())
            if live_now == 0:
                flush(slice(None))
                break
            if live_now < 0.75 * live:
                # Compact only when enough rays finished: indexing costs more than stepping.
                flush(~any_open)
                sel = any_open.nonzero()[:, 0]
                for key in list(S):
                    S[key] = S[key].index_select(0, sel)
                ax, ay, az = ax[sel], ay[sel], az[sel]
                live = live_now
            S['tx'] = torch.where(ax, S['tx'] + S['dx'], S['tx'])
            S['ty'] = torch.where(ay, S['ty'] + S['dy'], S['ty'])
            S['tz'] = torch.where(az, S['tz'] + S['dz'], S['tz'])
            S['rx'] = S['rx'] - ax.long()
            S['ry'] = S['ry'] - ay.long()
            S['rz'] = S['rz'] - az.long()
            S['lin'] = S['lin'] + torch.where(ax, S['sx'], torch.where(ay, S['sy'], S['sz']))
        return [(labels[k], depths[k]) for k in range(K)]


def cast_rays(semantics, origins, directions, grid: OccGrid, device=None):
    """First non-free voxel along every (origin, direction) ray of one label grid.

    Args:
        semantics: uint8/long [X, Y, Z] labels (17 = free; any label < 17 stops a ray).
        origins: float [T, 3] ray origins in metres, ego frame, inside the grid.
        directions: float [R, 3] unit directions.
        grid: the OccGrid of ``semantics`` (range and cubic voxel size).

    Returns:
        labels long [T * R] (17 where the ray leaves the grid without a hit) and
        depths float64 [T * R] in metres, origin-major (see ``RayCaster.cast``).
    """
    if device is None and torch.is_tensor(semantics):
        device = semantics.device
    return RayCaster(origins, directions, grid, device).cast(semantics)[0]


class RayIoUAccumulator:
    """Pools SparseOcc RayIoU counts over frames.

    ``gt_cnt`` / ``pred_cnt`` int64 [18]: kept rays whose GT / predicted first hit
    has that class; ``tp`` int64 [3, 18]: true positives per depth threshold.
    """

    def __init__(self, thresholds=RAY_THRESHOLDS):
        self.thresholds = tuple(float(t) for t in thresholds)
        self.gt_cnt = np.zeros(NUM_CLASSES, np.int64)
        self.pred_cnt = np.zeros(NUM_CLASSES, np.int64)
        self.tp = np.zeros((len(self.thresholds), NUM_CLASSES), np.int64)

    @staticmethod
    def frame_counts(pred, gt, caster: RayCaster, thresholds=RAY_THRESHOLDS) -> dict:
        """Counts of one frame: dict ``gt_cnt`` [18], ``pred_cnt`` [18], ``tp`` [len(thresholds), 18].

        ``caster`` holds the frame's rays (its origins); GT and prediction share one walk.
        """
        (gl, gd), (pl, pd) = caster.cast(gt, pred)
        valid = gl != FREE                      # rays whose GT hits nothing are dropped
        gl, gd, pl, pd = gl[valid], gd[valid], pl[valid], pd[valid]
        same = gl == pl
        err = (pd - gd).abs()
        tp = torch.stack([torch.bincount(gl[same & (err < t)], minlength=NUM_CLASSES)
                          for t in thresholds])
        return {'gt_cnt': torch.bincount(gl, minlength=NUM_CLASSES).cpu().numpy(),
                'pred_cnt': torch.bincount(pl, minlength=NUM_CLASSES).cpu().numpy(),
                'tp': tp.cpu().numpy()}

    def add_counts(self, counts: dict) -> None:
        self.gt_cnt += np.asarray(counts['gt_cnt'], np.int64)
        self.pred_cnt += np.asarray(counts['pred_cnt'], np.int64)
        self.tp += np.asarray(counts['tp'], np.int64)

    def add(self, pred, gt, origins, grid: OccGrid, directions=None, device=None) -> dict:
        """Cast the frame's rays from ``origins`` [T, 3] (metres) and add its counts."""
        if directions is None:
            directions = lidar_ray_directions()
        c = self.frame_counts(pred, gt, RayCaster(origins, directions, grid, device),
                              self.thresholds)
        self.add_counts(c)
        return c

    def metrics(self) -> dict:
        """Fractions: ``ray_iou`` (nanmean over 17 classes x thresholds), ``ray_iou@<t>``,
        ``per_class`` float [17] (nanmean over thresholds), ``per_threshold`` [T, 17]."""
        with np.errstate(divide='ignore', invalid='ignore'):
            iou = self.tp / (self.gt_cnt + self.pred_cnt - self.tp).astype(np.float64)
        iou = iou[:, :FREE]
        out = {'per_threshold': iou}
        defined = np.isfinite(iou)
        out['ray_iou'] = float(np.nanmean(iou)) if defined.any() else float('nan')
        for j, t in enumerate(self.thresholds):
            out[f'ray_iou@{t:g}'] = float(np.nanmean(iou[j])) if defined[j].any() else float('nan')
        with np.errstate(invalid='ignore'):
            cls_defined = defined.any(0)
            per_class = np.full(FREE, np.nan)
            per_class[cls_defined] = np.nanmean(iou[:, cls_defined], 0)
        out['per_class'] = per_class
        return out
