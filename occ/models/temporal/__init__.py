"""Temporal memory: past BEV maps aligned by ego motion and fused (docs/TEMPORAL.md).

``TemporalFusion`` is the module OccNet calls; the fusion ops are
``ConcatConvFusion`` (BEVDet4D-style), ``TemporalSelfAttention``
(BEVFormer-style deformable attention) and ``ConvGRUFusion`` (recurrent).
"""
from .align import BEVAligner
from .registry import TEMPORAL_FUSIONS
from .concat_fusion import ConcatConvFusion
from .conv_gru import ConvGRUFusion
from .temporal_attention import TemporalSelfAttention
from .temporal_fusion import TemporalFusion

__all__ = ['BEVAligner', 'TEMPORAL_FUSIONS', 'ConcatConvFusion',
           'ConvGRUFusion', 'TemporalSelfAttention', 'TemporalFusion']
