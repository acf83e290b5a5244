"""Occupancy world model (OccWorld-style): scene tokenizer, causal token forecaster, baselines.

Importing registers ``OccTokenizer``, ``VectorQuantizer``, ``TokenForecaster``,
``ConditionalOccTokenizer``, ``OccWorldModel``, ``CopyLastForecaster`` in ``MODELS`` and
``OccSequenceDataset`` in ``DATASETS``. See docs/WORLD.md.
"""
from .baselines import CopyLastForecaster
from .conditional_tokenizer import ConditionalOccTokenizer, anchor_bev, anchor_prior
from .dataset import OccSequenceDataset
from .ego import pose_features, step_poses
from .evaluate import evaluate_forecasters, format_table
from .forecaster import SpatioTemporalBlock, TokenForecaster, causal_mask
from .quantizer import VectorQuantizer
from .tokenizer import OccTokenizer
from .world_model import OccWorldModel, anchor_sources, warp_sequence

__all__ = ['CopyLastForecaster', 'ConditionalOccTokenizer', 'anchor_bev', 'anchor_prior', 'anchor_sources',
           'warp_sequence', 'OccSequenceDataset', 'pose_features', 'step_poses',
           'evaluate_forecasters', 'format_table', 'SpatioTemporalBlock', 'TokenForecaster',
           'causal_mask', 'VectorQuantizer', 'OccTokenizer', 'OccWorldModel']
