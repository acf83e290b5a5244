"""Region metric parts: Occ3D voxel metrics inside a per-frame region of the grid.

A region part names the voxels it scores (``region``); its statistics are the
int64 [18, 18] confusion counts inside the region, summed over frames, from
which mIoU, geometry IoU and the recall of occupied GT voxels follow. A new
region is one registered subclass of ``RegionIoU``.

* ``HistoryOnlyRegion`` (default): voxels seen by a camera in an aligned past
  input frame but not now (``mask_camera_history & ~mask_camera``); scored when
  the dataset provides ``mask_camera_history`` (``num_history > 0``).
* ``OccludedRegion``: occupied GT voxels outside the current camera mask
  (``regions.occluded_mask``).
* ``CoopRegions``: cooperative visibility, three regions at once: ego-visible
  (``mask_camera``), neighbour-only (``mask_camera_coop & ~mask_camera``) and their
  union; scored when the dataset provides ``mask_camera_coop`` (``coop_labels=True``).

The region masks themselves live in ``occ/evaluation/regions.py``.
"""
from __future__ import annotations

import abc

import numpy as np

from occ.constants import FREE
from occ.evaluation.confusion import iou_from_hist, masked_hist
from occ.evaluation.parts import SEMANTIC_NAMES, MetricPart, nan_if_none, pct
from occ.evaluation.regions import history_only_mask, neighbour_only_mask, occluded_mask
from occ.registry import METRIC_PARTS


def region_summary(total: np.ndarray, frames: int) -> dict:
    """``miou``, ``iou``, ``occupied_recall``, ``voxels``, ``num_frames``, ``per_class`` of the
    summed confusion counts [18, 18] of one region."""
    m = iou_from_hist(total)
    occupied = total[:FREE].sum()
    recall = total[:FREE, :FREE].sum() / occupied if occupied else float('nan')
    return {'miou': pct(m['miou']), 'iou': pct(m['iou']), 'occupied_recall': pct(float(recall)),
            'voxels': int(total.sum()), 'num_frames': frames,
            'per_class': {n: pct(v) for n, v in zip(SEMANTIC_NAMES, m['per_class'][:FREE])}}


def region_flat(name: str, r: dict) -> dict:
    """Flat keys ``miou_<name>``, ``iou_<name>``, ``recall_<name>`` of a ``region_summary``."""
    return {f'miou_{name}': nan_if_none(r['miou']), f'iou_{name}': nan_if_none(r['iou']),
            f'recall_{name}': nan_if_none(r['occupied_recall'])}


class RegionIoU(MetricPart):
    """mIoU / IoU / occupied recall inside ``region(f)``; ``name`` keys the summary entry.

    Summary entry ``<name>``: ``miou``, ``iou``, ``occupied_recall`` (share of GT-
    occupied voxels predicted occupied), ``voxels`` (scored voxels), ``per_class``.
    Flat keys: ``miou_<name>``, ``iou_<name>``, ``recall_<name>``.
    """

    @abc.abstractmethod
    def region(self, f: dict) -> np.ndarray:
        """bool [X, Y, Z]: the voxels this region scores in frame ``f``."""

    def frame(self, f):
        return masked_hist(f['pred'], f['gt'], self.region(f).view(np.uint8))

    def summary(self, total, frames, mask):
        return {self.name: region_summary(total, frames)}

    def flat(self, s):
        return region_flat(self.name, s[self.name])


@METRIC_PARTS.register_module()
class HistoryOnlyRegion(RegionIoU):
    """Voxels visible in an aligned past frame but not in the current one.

    Needs ``mask_camera_history`` (uint8 [X, Y, Z], 1 = visible now or in any past
    input frame warped into the current ego frame; ``occ.data`` produces it when
    ``num_history > 0``) and ``mask_camera``.
    """

    name = 'history_only'
    inputs = ('pred', 'gt', 'mask_camera', 'mask_camera_history')

    def region(self, f):
        return history_only_mask(f['mask_camera_history'], f['mask_camera'])


@METRIC_PARTS.register_module()
class OccludedRegion(RegionIoU):
    """Occupied GT voxels no camera sees now (what memory or priors must fill in)."""

    name = 'occluded'
    inputs = ('pred', 'gt', 'mask_camera')

    def region(self, f):
        return occluded_mask(f['gt'], f['mask_camera'])


@METRIC_PARTS.register_module()
class CoopRegions(MetricPart):
    """Cooperative visibility regions: where the ego sees, where only a neighbour sees, and both.

    Needs ``mask_camera`` and ``mask_camera_coop`` (``OccDataset(coop_labels=True)``: voxels
    any connected vehicle's cameras see, in the ego's grid). Statistics: int64 [3, 18, 18]
    confusion counts in ``REGIONS`` order. Summary entries ``ego_visible``, ``neighbour_only``
    and ``coop_union`` (each as ``RegionIoU``); flat keys ``miou_<region>`` etc. The neighbour-
    only region is where collaboration must show its gain (docs/COLLAB.md).
    """

    name = 'coop_regions'
    inputs = ('pred', 'gt', 'mask_camera', 'mask_camera_coop')
    REGIONS = ('ego_visible', 'neighbour_only', 'coop_union')

    def frame(self, f):
        ego = f['mask_camera'].astype(bool)
        regions = (ego, neighbour_only_mask(f['mask_camera_coop'], f['mask_camera']),
                   ego | f['mask_camera_coop'].astype(bool))
        return np.stack([masked_hist(f['pred'], f['gt'], r.view(np.uint8)) for r in regions])

    def summary(self, total, frames, mask):
        return {r: region_summary(total[i], frames) for i, r in enumerate(self.REGIONS)}

    def flat(self, s):
        out = {}
        for r in self.REGIONS:
            out.update(region_flat(r, s[r]))
        return out
