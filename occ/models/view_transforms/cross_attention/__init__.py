"""Cross-attention view transform (BEVFormer's spatial encoder), pure torch.

- ``encoder.py``: ``CrossAttentionBEV`` (registered in ``MODELS``): learned BEV
  queries, encoder layers, upsampling to the occupancy grid.
- ``reference_points.py``: the queries' 3D reference pillars and their
  projection into the cameras.
- ``spatial_attention.py``: ``SpatialCrossAttention``, deformable attention
  from queries to multi-camera, multi-scale features (sampling:
  ``occ.ops.deform_sampling``).
"""
from .encoder import CrossAttentionBEV
from .reference_points import pillar_points, project_pillars
from .spatial_attention import SpatialCrossAttention

__all__ = ['CrossAttentionBEV', 'SpatialCrossAttention', 'pillar_points', 'project_pillars']
