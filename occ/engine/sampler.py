"""A DefaultSampler that tells the dataset which epoch it is serving."""
from __future__ import annotations

from mmengine.dataset import DefaultSampler

from occ.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class EpochSyncSampler(DefaultSampler):
    """``DefaultSampler`` that forwards ``set_epoch`` to ``dataset.set_epoch`` if it has one.

    The dataset can then draw its augmentation from ``(seed, epoch, index)``
    instead of a global RNG, so a resumed run (which replays the sampler from
    epoch 0 and skips already-seen batches) feeds exactly the batches the
    uninterrupted run would have. mmengine calls ``sampler.set_epoch`` before
    each new ``iter(dataloader)``; non-persistent workers are re-forked then
    and see the new epoch (keep ``persistent_workers=False`` with this sampler).

    Registered in ``occ.registry.DATA_SAMPLERS`` (scope ``occ``): configs with
    ``default_scope = 'occ'`` name it ``'EpochSyncSampler'``, others ``'occ.EpochSyncSampler'``.
    """

    def __init__(self, dataset, shuffle: bool = True, seed=None, round_up: bool = True):
        super().__init__(dataset, shuffle=shuffle, seed=seed, round_up=round_up)
        self._forward_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self._forward_epoch(epoch)

    def _forward_epoch(self, epoch: int) -> None:
        set_epoch = getattr(self.dataset, 'set_epoch', None)
        if callable(set_epoch):
            set_epoch(epoch)
