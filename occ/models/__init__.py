"""Models. Importing this package registers every part in ``occ.registry.MODELS``."""
from . import backbones, collab, heads, losses, temporal, view_transforms, world  # noqa: F401
from .occ_net import OccDataPreprocessor, OccNet  # noqa: F401
