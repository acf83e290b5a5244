"""Data pipeline: info files, OccDataset (geometry-consistent augmentation), collate, depth targets.

Importing ``occ.data`` registers ``OccDataset`` in ``occ.registry.DATASETS`` and
``occ_collate`` in ``occ.registry.FUNCTIONS``.
"""
from occ.data.collate import occ_collate
from occ.data.dataset import OccDataset
from occ.data.infos import InfoFile, build_infos

__all__ = ['OccDataset', 'occ_collate', 'InfoFile', 'build_infos']
