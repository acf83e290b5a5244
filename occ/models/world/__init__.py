"""Occupancy world model (OccWorld-style), in two stages of composed parts (docs/WORLD.md).

* stage 1, ``OccTokenizerModel``: a scene tokenizer (``OccTokenizer``, a VQ-VAE with a
  ``VectorQuantizer``; or ``ConditionalOccTokenizer``, given an ego-warped anchor)
  trained on the frames a frames part picks (``CurrentFrames`` / ``AnchoredPairs``);
* stage 2, ``OccForecasterModel``: a causal ``TokenForecaster`` on the frozen tokenizer,
  fed by a context part (``GroundTruthContext`` / ``CameraContext``) and, for residual
  forecasting, an anchors part (``EgoWarpAnchors``: ego-warp, band, calibration);
* ``TokenizerOracle`` (diagnostic) and the baselines ``CopyLastForecaster`` /
  ``EgoWarpForecaster``.

Importing registers every part in ``MODELS``. The sequence dataset is
``occ.data.OccSequenceDataset``; the per-horizon evaluation is ``occ.evaluation``.
"""
from .anchors import EgoWarpAnchors, anchor_bev, anchor_prior, anchor_sources
from .baselines import CopyLastForecaster, EgoWarpForecaster
from .conditional_tokenizer import ConditionalOccTokenizer
from .context import CameraContext, GroundTruthContext
from .ego import pose_features, step_poses
from .forecaster import SpatioTemporalBlock, TokenForecaster, causal_mask
from .forecaster_model import OccForecasterModel, TokenizerOracle, load_tokenizer_weights
from .frames import AnchoredPairs, CurrentFrames
from .quantizer import VectorQuantizer
from .tokenizer import OccTokenizer
from .tokenizer_model import OccTokenizerModel

__all__ = ['EgoWarpAnchors', 'anchor_bev', 'anchor_prior', 'anchor_sources', 'CopyLastForecaster',
           'EgoWarpForecaster', 'ConditionalOccTokenizer', 'CameraContext', 'GroundTruthContext', 'pose_features',
           'step_poses', 'SpatioTemporalBlock', 'TokenForecaster', 'causal_mask', 'OccForecasterModel',
           'TokenizerOracle', 'load_tokenizer_weights', 'AnchoredPairs', 'CurrentFrames', 'VectorQuantizer',
           'OccTokenizer', 'OccTokenizerModel']
