"""View transforms: image features -> BEV features (see docs/CONTRACTS.md)."""
from .lift_splat import LiftSplat  # noqa: F401
from .cross_attention import CrossAttentionBEV  # noqa: F401  (subpackage)
