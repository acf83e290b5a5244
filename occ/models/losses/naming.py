"""The names losses are logged under: one rule for every part that builds losses from config.

``'WeightedCELoss'`` -> ``loss_weighted_ce``; a prefix names the term's role
(``loss_rec_weighted_ce`` for a tokenizer's reconstruction); an explicit
``name=`` in the config wins; the same type twice gets ``_1``, ``_2``, ...
mmengine sums every logged key that starts with ``loss``.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

import torch.nn as nn

from occ.registry import MODELS


def loss_key(type_name: str, prefix: str = 'loss') -> str:
    """'WeightedCELoss' -> 'loss_weighted_ce', 'LovaszSoftmaxLoss' -> 'loss_lovasz_softmax'."""
    name = type_name[:-4] if type_name.endswith('Loss') else type_name
    name = re.sub(r'(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])', '_', name).lower()
    return f'{prefix}_{name}'


def build_named_losses(cfgs: Optional[Sequence[dict]], prefix: str = 'loss') -> tuple[list, nn.ModuleList]:
    """Build loss configs (``type=`` names in ``MODELS``, optional ``name``) -> (unique names, modules)."""
    names, modules = [], nn.ModuleList()
    for cfg in cfgs or []:
        cfg = dict(cfg)
        name = cfg.pop('name', None) or loss_key(str(cfg['type']), prefix)
        while name in names:      # the same loss type twice: loss_focal, loss_focal_1, ...
            name = f'{name}_{len(names)}'
        names.append(name)
        modules.append(MODELS.build(cfg))
    return names, modules
