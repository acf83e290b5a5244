"""Data pipeline: info files, OccDataset (geometry-consistent augmentation), collate, depth targets,
label-only sequences and the camera-output cache of the world model.

Importing ``occ.data`` registers ``OccDataset`` and ``OccSequenceDataset`` in
``occ.registry.DATASETS`` and ``occ_collate`` in ``occ.registry.FUNCTIONS``.
"""
from occ.data.collate import occ_collate
from occ.data.dataset import OccDataset
from occ.data.infos import InfoFile, build_infos
from occ.data.sequence import OccSequenceDataset, SequenceBatch

__all__ = ['OccDataset', 'occ_collate', 'InfoFile', 'build_infos', 'OccSequenceDataset', 'SequenceBatch']
