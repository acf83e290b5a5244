"""Cross-entropy with class weights, explicit or derived from class frequencies."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from occ.registry import MODELS

from ._utils import flatten_valid, zero_loss

# Voxel counts per class (0..17) over the Occ3D-nuScenes training set, as
# published with the CVPR 2023 occupancy challenge baselines (e.g. FB-OCC,
# OPUS). Used when class_weight='auto' and no counts are given.
OCC3D_CLASS_COUNTS = (
    1163161, 2309034, 188743, 2997643, 20317180, 852476, 243808, 2457947,
    497017, 2731022, 7224789, 214411435, 5565043, 63191967, 76098082, 128860031,
    141625221, 2307405309,
)


def class_weights_from_counts(counts: Sequence[float], method: str = 'enet',
                              c: float = 1.02) -> np.ndarray:
    """Class weights from per-class voxel counts.

    Methods (f = count / total):
      'enet'      w = 1 / ln(c + f)  (Paszke et al., ENet 2016). Bounded by
                  1 / ln(c) ≈ 50 for c = 1.02, so rare classes weigh ~30x the
                  free class on Occ3D (a prototype with flat weights never
                  predicted pedestrians or barriers).
      'inv_sqrt'  w = 1 / sqrt(f), then divided by its minimum (gentler than 1/f).

    Returns float32 [C], normalised to mean 1 (scale does not change a
    weighted mean, but keeps logged values comparable).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or (counts < 0).any() or counts.sum() <= 0:
        raise ValueError(f'class counts must be a 1-D non-negative array with a positive sum, got {counts}')
    f = counts / counts.sum()
    if method == 'enet':
        w = 1.0 / np.log(c + f)
    elif method == 'inv_sqrt':
        w = 1.0 / np.sqrt(np.maximum(f, 1e-12))
        w = w / w.min()
    else:
        raise ValueError(f"unknown class-weight method {method!r} (use 'enet' or 'inv_sqrt')")
    return (w / w.mean()).astype(np.float32)


@MODELS.register_module()
class WeightedCELoss(nn.Module):
    """Class-weighted cross-entropy, averaged like ``F.cross_entropy(weight=w)``.

    The mean is Σ w[t_i] · ce_i / Σ w[t_i] over valid voxels.

    Args:
        class_weight: None (flat), a list of C weights, or 'auto' (weights from
            ``class_counts`` by ``class_weights_from_counts(method=auto_method)``).
        class_counts: per-class counts for 'auto': a list of C counts, or the path of a
            training info file whose ``metadata['class_counts']`` (written by
            ``tools/create_data.py``) holds the split's own counts; that file is read at the
            first training step, so inference does not need it. A file without counts (an
            older create_data) falls back to ``OCC3D_CLASS_COUNTS`` with a warning. Default
            (None): ``OCC3D_CLASS_COUNTS``.
        counts_region: which counts of an info file: 'camera' (camera-visible voxels, what
            losses with ``use_mask_camera`` see; default) or 'all'.
        auto_method: 'enet' (default) or 'inv_sqrt'.
        num_classes: C, to check explicit weights and counts.
        label_smoothing: passed to F.cross_entropy.
        loss_weight: multiplies the result.
    """

    def __init__(self, class_weight: str | Sequence[float] | None = 'auto',
                 class_counts: Sequence[float] | str | None = None, auto_method: str = 'enet',
                 num_classes: int = 18, label_smoothing: float = 0.0, loss_weight: float = 1.0,
                 counts_region: str = 'camera'):
        super().__init__()
        self.counts_file = None
        self.auto_method, self.num_classes, self.counts_region = auto_method, int(num_classes), counts_region
        if counts_region not in ('camera', 'all'):
            raise ValueError(f"WeightedCELoss: counts_region must be 'camera' or 'all', got {counts_region!r}")
        if isinstance(class_weight, str):
            if class_weight != 'auto':
                raise ValueError(f"WeightedCELoss: class_weight must be 'auto', a list or None, got {class_weight!r}")
            if isinstance(class_counts, str):
                self.counts_file = class_counts       # read at the first training step
                weight = None
            else:
                counts = OCC3D_CLASS_COUNTS if class_counts is None else class_counts
                if len(counts) != num_classes:
                    raise ValueError(f'WeightedCELoss: {len(counts)} class counts for {num_classes} classes')
                weight = torch.from_numpy(class_weights_from_counts(counts, auto_method))
        elif class_weight is None:
            weight = None
        else:
            weight = torch.as_tensor(class_weight, dtype=torch.float32)
            if weight.numel() != num_classes or bool((weight < 0).any()):
                raise ValueError(f'WeightedCELoss: need {num_classes} non-negative weights, got {list(class_weight)}')
        self.register_buffer('weight', weight, persistent=False)
        self.label_smoothing, self.loss_weight = float(label_smoothing), float(loss_weight)

    def weights_from_info_file(self) -> torch.Tensor:
        """Class weights from ``counts_file``'s recorded counts (OCC3D_CLASS_COUNTS when it has none)."""
        from occ.data.infos import InfoFile
        try:
            counts = InfoFile.read(self.counts_file).class_counts
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f'WeightedCELoss(class_counts={self.counts_file!r}): {e}. class_counts names the training '
                "split's info file; tools/*.py --data-root DIR moves it with the datasets, a config edited "
                'by hand must set it too') from None
        if counts is None:
            warnings.warn(f'{self.counts_file}: no class_counts in the metadata (re-run tools/create_data.py); '
                          'WeightedCELoss uses the real Occ3D class counts')
            counts = OCC3D_CLASS_COUNTS
        else:
            counts = counts[self.counts_region]
        if len(counts) != self.num_classes:
            raise ValueError(f'{self.counts_file}: {len(counts)} class counts for {self.num_classes} classes')
        return torch.from_numpy(class_weights_from_counts(counts, self.auto_method))

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """logits [B, C, ...], target long [B, ...], mask bool [B, ...] or None -> scalar."""
        if self.weight is None and self.counts_file is not None:
            self.weight = self.weights_from_info_file().to(logits.device)
        x, t = flatten_valid(logits, target, mask, type(self).__name__)
        if t.numel() == 0:
            return zero_loss(logits)
        w = None if self.weight is None else self.weight.to(x.dtype)
        if w is not None and float(w[t].sum()) == 0.0:
            return zero_loss(logits)
        return self.loss_weight * F.cross_entropy(x, t, weight=w, label_smoothing=self.label_smoothing)
