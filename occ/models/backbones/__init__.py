"""Image backbones and necks (see docs/CONTRACTS.md)."""
from .fpn import FPNNeck  # noqa: F401
from .resnet import ResNetBackbone  # noqa: F401
