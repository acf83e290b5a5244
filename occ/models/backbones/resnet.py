"""ResNet trunk (torchvision) returning multi-scale feature maps.

No weights are ever downloaded: ``pretrained`` is a local checkpoint path
(a torchvision ``resnet*.pth`` state dict, or a dict with a ``state_dict`` key);
without it the trunk is randomly initialised and a one-line warning says so.
"""
from __future__ import annotations

import os
import warnings
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torchvision
from torchvision.ops import FrozenBatchNorm2d

from occ.registry import MODELS

_STRIDES = {0: 2, 1: 4, 2: 8, 3: 16, 4: 32}    # stem output is index 0, layer{i} is index i
_ARCHS = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34, 50: torchvision.models.resnet50}


def _norm_layer(norm: str):
    if norm == 'BN':
        return nn.BatchNorm2d
    if norm == 'FrozenBN':
        return FrozenBatchNorm2d
    if norm == 'GN':
        return lambda c: nn.GroupNorm(32, c)
    raise ValueError(f"norm must be 'BN', 'FrozenBN' or 'GN', got {norm!r}")


@MODELS.register_module()
class ResNetBackbone(nn.Module):
    """torchvision ResNet-18/34/50 trunk.

    Args:
        depth: 18, 34 or 50.
        out_indices: which of layer1..layer4 to return (1 -> stride 4, ..., 4 -> stride 32).
            Layers after the last requested one are not built.
        norm: 'BN', 'FrozenBN' or 'GN' (32 groups).
        frozen_stages: stages whose parameters get requires_grad=False
            (0 = stem, i = stem + layer1..layer_i; -1 = none).
        pretrained: local checkpoint path or None (random init).

    Shapes:
        imgs [B*N, 3, H, W] -> list of [B*N, C_i, H/s_i, W/s_i] for i in out_indices.
    """

    def __init__(self, depth: int = 18, out_indices: Sequence[int] = (2, 3, 4), norm: str = 'BN',
                 frozen_stages: int = -1, pretrained: Optional[str] = None):
        super().__init__()
        if depth not in _ARCHS:
            raise ValueError(f'ResNet depth must be one of {sorted(_ARCHS)}, got {depth}')
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or any(i not in (1, 2, 3, 4) for i in out_indices):
            raise ValueError(f'out_indices must be a non-empty subset of (1, 2, 3, 4), got {out_indices}')
        net = _ARCHS[depth](weights=None, norm_layer=_norm_layer(norm))
        self.out_indices = out_indices
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.num_layers = max(out_indices)
        self.layers = nn.ModuleList([getattr(net, f'layer{i}') for i in range(1, self.num_layers + 1)])
        expansion = 4 if depth == 50 else 1
        self.out_channels = [64 * 2 ** (i - 1) * expansion for i in out_indices]
        self.strides = [_STRIDES[i] for i in out_indices]
        if pretrained:
            self.load_pretrained(pretrained)
        else:
            warnings.warn(f'ResNetBackbone(depth={depth}): no pretrained checkpoint given, random init')
        self._freeze(frozen_stages)

    def load_pretrained(self, path: str) -> None:
        """Load a local torchvision ResNet state dict; errors name the file and the mismatch."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f'pretrained checkpoint {path!r} does not exist (weights are never downloaded)')
        try:
            ckpt = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as e:  # noqa: BLE001  (any unreadable file gets the same clear message)
            raise RuntimeError(f'pretrained checkpoint {path!r} could not be read: {e}') from e
        if isinstance(ckpt, dict) and 'state_dict' in ckpt:
            ckpt = ckpt['state_dict']
        if not isinstance(ckpt, dict):
            raise RuntimeError(f'pretrained checkpoint {path!r} is not a state dict')
        # torchvision names (conv1, bn1, layer1..4) -> this module's names (stem.0/1, layers.i)
        rename = {'conv1.': 'stem.0.', 'bn1.': 'stem.1.'}
        rename.update({f'layer{i}.': f'layers.{i - 1}.' for i in range(1, 5)})
        state = {}
        for k, v in ckpt.items():
            k = k[len('backbone.'):] if k.startswith('backbone.') else k
            for a, b in rename.items():
                if k.startswith(a):
                    state[b + k[len(a):]] = v
                    break
        # layers after the last requested output are not built: drop their weights
        state = {k: v for k, v in state.items()
                 if not k.startswith('layers.') or int(k.split('.')[1]) < self.num_layers}
        own = self.state_dict()
        missing = sorted(set(own) - set(state) - {k for k in own if k.endswith('num_batches_tracked')})
        bad_shape = [f'{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                     for k in state if k in own and state[k].shape != own[k].shape]
        if missing or bad_shape:
            raise RuntimeError(f'pretrained checkpoint {path!r} does not match ResNetBackbone: '
                               f'{len(missing)} missing keys (e.g. {missing[:3]}), shape mismatches {bad_shape[:3]}')
        self.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)

    def _freeze(self, frozen_stages: int) -> None:
        mods = ([self.stem] if frozen_stages >= 0 else []) + list(self.layers[:max(frozen_stages, 0)])
        for m in mods:
            for p in m.parameters():
                p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list:
        x = self.stem(x)
        outs = []
        for i, layer in enumerate(self.layers, start=1):
            x = layer(x)
            if i in self.out_indices:
                outs.append(x)
        return outs
