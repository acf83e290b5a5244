"""One object that turns per-frame predictions into every occupancy metric.

``OccEvaluator`` is a list of metric parts (``occ/evaluation/parts.py``,
``region_parts.py``; registered in ``METRIC_PARTS``). ``frame_result`` asks
each part for the additive statistics of one frame and returns them in a
small, picklable dict (sparse counts); ``add_result`` sums such dicts in any
order, so the tool's worker pool and mmengine's distributed result collection
reduce to the same sums. ``summary`` / ``flat_metrics`` give the numbers in
percent. ``frame_table`` stacks per-frame statistics (one array per part) and
``metrics_from_totals`` recomputes the numbers from any weighted sum of them,
which is how a bootstrap resamples frames without approximating mIoU.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from occ.evaluation.confusion import MASKS, ConfusionAccumulator
from occ.evaluation import region_parts  # noqa: F401  (registers the region parts)
from occ.evaluation.parts import SEMANTIC_NAMES, MetricPart, grid_for_shape  # noqa: F401
from occ.geometry import OCC3D_RANGE
from occ.registry import METRIC_PARTS
from occ.utils.io import atomic_save_npz

# ``ray_iou=False`` drops RayIoU; parts whose inputs a frame lacks skip it.
DEFAULT_PARTS = ('VoxelIoU', 'RayIoU', 'ForecastIoU', 'BytesSent', 'HistoryOnlyRegion')
FIXED_INPUTS = ('pred', 'gt', 'mask_camera', 'mask_lidar', 'origins', 'pred_future',
                'gt_future', 'bytes_sent')


def _pack(a: np.ndarray) -> tuple:
    """Dense statistics -> (shape, flat nonzero indices int32, values): a few hundred bytes."""
    flat = np.asarray(a).ravel()
    nz = np.flatnonzero(flat)
    return (a.shape, nz.astype(np.int32), flat[nz])


def _unpack(packed: tuple) -> np.ndarray:
    shape, idx, val = packed
    out = np.zeros(int(np.prod(shape)), val.dtype)
    out[idx] = val
    return out.reshape(shape)


def _add_padded(total, a: np.ndarray) -> np.ndarray:
    """``total + a`` with both zero-padded to the larger shape (e.g. fewer forecast horizons)."""
    if total is None:
        return a.copy()
    if total.shape == a.shape:
        total += a
        return total
    shape = tuple(max(s, t) for s, t in zip(total.shape, a.shape))
    out = np.zeros(shape, np.result_type(total, a))
    out[tuple(slice(0, s) for s in total.shape)] += total
    out[tuple(slice(0, s) for s in a.shape)] += a
    return out


def _numpy(x):
    """numpy view of an array, scalar or (any-device) torch tensor; None stays None."""
    if x is None:
        return None
    return x.detach().cpu().numpy() if hasattr(x, 'detach') else np.asarray(x)


class FrameTable(NamedTuple):
    """Per-frame statistics of one evaluated split (``save_frame_table`` / ``load_frame_table``).

    ``tokens``: sample token of each row; ``table``: ``OccEvaluator.frame_table`` arrays;
    ``parts``: registered type names of the evaluator's parts (``OccEvaluator(parts=parts)``
    recomputes every metric from the table).
    """
    tokens: list
    table: dict
    parts: list


def save_frame_table(path: str, tokens: list, table: dict, parts=()) -> None:
    """Write per-frame statistics (``frame_table``), their tokens and part types to ``path`` (.npz, atomic)."""
    atomic_save_npz(path, tokens=np.asarray(list(tokens), dtype=str),
                    parts=np.asarray([type(p).__name__ if isinstance(p, MetricPart) else str(p)
                                      for p in parts], dtype=str), **table)


def load_frame_table(path: str) -> FrameTable:
    """``save_frame_table``'s file (no pickle); errors name the file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError as e:
        raise FileNotFoundError(f'{path}: per-frame statistics not found') from e
    except (ValueError, OSError) as e:
        raise ValueError(f'{path}: not a per-frame statistics file ({e})') from e
    if 'tokens' not in data or 'hist' not in data:
        raise ValueError(f'{path}: per-frame statistics need "tokens" and "hist", got {sorted(data)}')
    tokens = data.pop('tokens').tolist()
    parts = data.pop('parts').tolist() if 'parts' in data else []
    for k, v in data.items():
        if len(v) != len(tokens):
            raise ValueError(f'{path}: {k} has {len(v)} frames, tokens has {len(tokens)}')
    return FrameTable(tokens, data, parts)


def select_frames(table: dict, index) -> dict:
    """The rows ``index`` (int array) of every array of a frame table."""
    return {k: v[index] for k, v in table.items()}


def build_parts(parts=None, ray_iou: bool = True, ray_device=None) -> list:
    """Metric parts from names / config dicts / instances (None = ``DEFAULT_PARTS``).

    ``ray_iou=False`` leaves RayIoU out; ``ray_device`` is the default device of RayIoU.
    """
    out = []
    for p in DEFAULT_PARTS if parts is None else parts:
        if isinstance(p, MetricPart):
            out.append(p)
            continue
        cfg = dict(type=p) if isinstance(p, str) else dict(p)
        if cfg.get('type') == 'RayIoU':
            if not ray_iou:
                continue
            cfg.setdefault('device', ray_device)
        part = METRIC_PARTS.build(cfg)
        if not isinstance(part, MetricPart):
            raise TypeError(f'metric part {cfg!r} built {type(part).__name__}, not a MetricPart')
        out.append(part)
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        raise ValueError(f'metric parts with the same name: {names}')
    return out


class OccEvaluator:
    """Streaming evaluator made of metric parts (voxel mIoU/IoU, RayIoU, forecasting, bytes, regions).

    Args:
        ray_iou: keep the RayIoU part (costs two ray casts of ~14k rays per origin per frame).
        ray_device: torch device of the ray casts (None = CUDA when available, else CPU).
        pc_range: metric range of the grid; the voxel size follows from the array shape.
        parts: metric parts (registered names, config dicts or ``MetricPart`` instances);
            None = ``DEFAULT_PARTS``.
    """

    def __init__(self, ray_iou: bool = True, ray_device=None, pc_range=OCC3D_RANGE, parts=None):
        self.pc_range = tuple(pc_range)
        self.parts = build_parts(parts, ray_iou, ray_device)
        self.reset()

    def reset(self) -> None:
        """Forget every added frame (the parts and their caches stay)."""
        self.totals = {p.name: None for p in self.parts}
        self.frames = {p.name: 0 for p in self.parts}

    def empty_copy(self) -> 'OccEvaluator':
        """A new evaluator with the same parts and range and nothing added."""
        ev = OccEvaluator.__new__(OccEvaluator)
        ev.pc_range, ev.parts = self.pc_range, self.parts
        ev.reset()
        return ev

    def part(self, name: str) -> MetricPart:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(f'no metric part named {name!r}; parts: {[p.name for p in self.parts]}')

    @property
    def inputs(self) -> set:
        """Names of every frame input some part reads (beyond ``pc_range``)."""
        return {k for p in self.parts for k in p.inputs}

    @property
    def conf(self) -> ConfusionAccumulator:
        """The voxel confusion counts as a ``ConfusionAccumulator`` (hist [3, 18, 18])."""
        acc = ConfusionAccumulator()
        total = self.totals.get('hist')
        if total is not None:
            acc.add_hist(total, self.frames['hist'])
        return acc

    # ---- per frame -------------------------------------------------------
    def frame_result(self, pred, gt, mask_camera=None, mask_lidar=None, origins=None,
                     pred_future=None, gt_future=None, bytes_sent=None, **extra) -> dict:
        """Small summary of one frame (does not change the accumulator).

        Args:
            pred, gt: uint8 [X, Y, Z]; mask_camera, mask_lidar: uint8/bool [X, Y, Z].
            origins: float [T, 3] RayIoU origins in the ego frame (None: nuScenes LiDAR default).
            pred_future: uint8 [H, X, Y, Z]; gt_future: uint8 [H', X, Y, Z].
            bytes_sent: scalar or per-agent array of bytes sent for this frame.
            extra: further inputs parts may read, e.g. ``mask_camera_history`` uint8 [X, Y, Z].

        Returns ``{part name: packed statistics}`` for the parts that scored the frame.
        """
        f = {k: _numpy(v) for k, v in dict(pred=pred, gt=gt, mask_camera=mask_camera,
                                              mask_lidar=mask_lidar, pred_future=pred_future,
                                              gt_future=gt_future, bytes_sent=bytes_sent,
                                              **extra).items()}
        f['origins'] = origins
        f['pc_range'] = self.pc_range
        res = {}
        for p in self.parts:
            if any(f.get(k) is None for k in p.inputs):
                continue
            stats = p.frame(f)
            if stats is not None:
                res[p.name] = _pack(np.asarray(stats))
        return res

    def add_result(self, res: dict, weight: int = 1) -> None:
        """Add one ``frame_result`` (``weight`` times: a frame drawn k times by a bootstrap)."""
        for p in self.parts:
            if p.name in res:
                a = _unpack(res[p.name])
                self.totals[p.name] = _add_padded(self.totals[p.name], a if weight == 1 else a * weight)
                self.frames[p.name] += weight

    def add(self, *args, **kwargs) -> dict:
        """``frame_result`` then ``add_result``."""
        res = self.frame_result(*args, **kwargs)
        self.add_result(res)
        return res

    # ---- per-frame tables (bootstrap) ------------------------------------
    def frame_table(self, results: list) -> dict:
        """Per-frame statistics of ``results`` (frame_result dicts), stacked per part.

        Returns ``{name: values [F, ...]}`` (zero-padded to one shape) and
        ``{name + '.present': bool [F]}``; ``metrics_from_table`` pools any weighted
        selection of these frames exactly as ``add_result`` would.
        """
        out = {}
        for p in self.parts:
            arrays = [_unpack(r[p.name]) if p.name in r else None for r in results]
            shapes = [a.shape for a in arrays if a is not None]
            if not shapes:
                continue
            shape = tuple(max(s) for s in zip(*shapes))
            dtype = np.result_type(*[a.dtype for a in arrays if a is not None])
            stack = np.zeros((len(results),) + shape, dtype)
            for i, a in enumerate(arrays):
                if a is not None:
                    stack[(i,) + tuple(slice(0, s) for s in a.shape)] = a
            out[p.name] = stack
            out[p.name + '.present'] = np.array([a is not None for a in arrays])
        return out

    def metrics_from_table(self, table: dict, weights=None, mask: str = 'camera') -> dict:
        """``flat_metrics`` of the frames of ``table`` weighted by ``weights`` [F] (None = all once).

        A bootstrap draw is ``weights = np.bincount(draw, minlength=F)``: the sums
        equal adding every drawn frame, so mIoU is recomputed from the pooled
        confusion matrix, never averaged over frames.
        """
        ev = self.empty_copy()
        for p in self.parts:
            if p.name not in table:
                continue
            stack = table[p.name]
            present = table[p.name + '.present']
            w = np.ones(len(stack), np.int64) if weights is None else np.asarray(weights)
            w = w * present
            if w.sum() == 0:
                continue
            if np.issubdtype(stack.dtype, np.integer) and np.issubdtype(w.dtype, np.integer):
                total = np.tensordot(w.astype(np.int64), stack, 1)
            else:
                total = np.tensordot(w.astype(np.float64), stack.astype(np.float64), 1)
            ev.totals[p.name], ev.frames[p.name] = total, int(w.sum())
        return ev.flat_metrics(mask)

    # ---- results ---------------------------------------------------------
    def summary(self, mask: str = 'camera') -> dict:
        """Structured results in percent (None where undefined), JSON-serialisable."""
        if mask not in MASKS:
            raise ValueError(f'mask must be one of {MASKS}, got {mask!r}')
        out = {}
        for p in self._reported():
            out.update(p.summary(self.totals[p.name], self.frames[p.name], mask))
        return out

    def _reported(self) -> list:
        return [p for p in self.parts if self.frames[p.name] or p.always_reported]

    def flat_metrics(self, mask: str = 'camera') -> dict:
        """Flat dict of floats (percent; NaN where undefined) for loggers and mmengine."""
        s = self.summary(mask)
        out = {}
        for p in self._reported():
            out.update(p.flat(s))
        return out
