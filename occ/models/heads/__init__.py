"""Occupancy heads (see docs/CONTRACTS.md)."""
from .base import BaseOccHead  # noqa: F401
from .bev_encoder import BEVEncoder  # noqa: F401
from .dense_occ_head import DenseOccHead  # noqa: F401
from .sparse_occ_head import SparseOccHead  # noqa: F401
