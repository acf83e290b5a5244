"""Occupancy evaluation: Occ3D voxel mIoU/IoU, SparseOcc RayIoU, OccWorld forecasting, bytes sent.

``OccEvaluator`` is a list of metric parts (``parts.py``, ``region_parts.py``;
registered in ``occ.registry.METRIC_PARTS``): a new metric is one registered
``MetricPart``. ``OccMetric`` (``occ.registry.METRICS``) is what the mmengine
val/test loops use; ``tools/eval_occ.py`` evaluates prediction files;
``forecasting.evaluate_models`` scores several forecasters on the same batches.
"""
from occ.evaluation.confusion import (MASKS, ConfusionAccumulator, confusion_matrices,
                                      iou_from_hist)
from occ.evaluation.evaluator import (DEFAULT_PARTS, FrameTable, OccEvaluator, build_parts,
                                     grid_for_shape, load_frame_table, save_frame_table,
                                     select_frames)
from occ.evaluation.forecast import forecast_metrics, future_hists, horizon_name
from occ.evaluation.forecast_parts import ForecastMotionSplit, moving_voxels
from occ.evaluation.forecasting import FORECAST_PARTS, evaluate_models, forecast_table
from occ.evaluation.metric import OccMetric
from occ.evaluation.origins import default_origins, origins_from_infos, select_origins
from occ.evaluation.parts import BytesSent, ForecastIoU, MetricPart, RayIoU, VoxelIoU
from occ.evaluation.ray_iou import (RAY_THRESHOLDS, RayIoUAccumulator, RayCaster, cast_rays,
                                    lidar_pitch_angles, lidar_ray_directions)
from occ.evaluation.region_parts import HistoryOnlyRegion, OccludedRegion, RegionIoU
from occ.evaluation.regions import box_mask, history_only_mask, moving_instances, occluded_mask

__all__ = [
    'MASKS', 'ConfusionAccumulator', 'confusion_matrices', 'iou_from_hist',
    'DEFAULT_PARTS', 'FrameTable', 'OccEvaluator', 'build_parts', 'grid_for_shape',
    'load_frame_table', 'save_frame_table', 'select_frames', 'MetricPart', 'VoxelIoU', 'RayIoU',
    'ForecastIoU', 'BytesSent', 'RegionIoU', 'HistoryOnlyRegion', 'OccludedRegion', 'history_only_mask',
    'forecast_metrics', 'future_hists', 'horizon_name', 'ForecastMotionSplit', 'moving_voxels',
    'FORECAST_PARTS', 'evaluate_models', 'forecast_table',
    'OccMetric', 'default_origins', 'origins_from_infos', 'select_origins',
    'RAY_THRESHOLDS', 'RayIoUAccumulator', 'RayCaster', 'cast_rays', 'lidar_pitch_angles',
    'lidar_ray_directions', 'box_mask', 'moving_instances', 'occluded_mask',
]
