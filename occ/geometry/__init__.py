"""Geometry in one place: the grid, rigid transforms (SE(3), SE(2)) and warps between ego frames.

Small pure functions (lift-splat-shoot style), numpy and torch, that every
part uses instead of re-deriving cell centres or pose algebra:

- ``grid``: ``OccGrid`` (range, cell size, shape, centres, index <-> metric),
  ``OCC3D_RANGE``, ``OCC3D_GRID`` (0.4 m), ``CPU_GRID`` (0.8 m).
- ``pose``: ``relative_pose`` between (augmented) ego frames, ``planar_pose``,
  ``transform_points`` / ``transform_xy``, and the planar (x, y, yaw) helpers
  of the collaboration (``pose2d``, ``se2``, ``relative_se2``, ``apply_se2``).
- ``warp``: ``warp_labels`` (label grids, nearest) and ``warp_bev`` (BEV
  feature maps, bilinear) into another ego frame.
"""
from .grid import CPU_GRID, OCC3D_GRID, OCC3D_RANGE, OccGrid, xy_range
from .pose import (apply_se2, bev_aug_2d, is_planar, perturb_pose, planar_pose, pose2d, relative_pose, relative_se2,
                   se2, transform_points, transform_xy, yaw_of)
from .warp import (gather_labels, inside_mask, label_pull_index, metric_to_normalized, sample_bev, warp_bev,
                   warp_labels)

__all__ = ['OccGrid', 'OCC3D_RANGE', 'OCC3D_GRID', 'CPU_GRID', 'xy_range', 'relative_pose', 'planar_pose',
           'transform_points', 'transform_xy', 'yaw_of', 'is_planar', 'pose2d', 'se2', 'relative_se2', 'apply_se2',
           'bev_aug_2d', 'perturb_pose', 'warp_labels', 'label_pull_index', 'gather_labels', 'warp_bev',
           'metric_to_normalized', 'inside_mask', 'sample_bev']
