"""OccDataset takes pc_range like every model part; a range the label files do not cover is refused."""
import os

import numpy as np
import pytest
from fixtures_data import micro_world  # noqa: F401

from occ.data import OccDataset
from occ.geometry import OCC3D_RANGE


def test_dataset_grid_uses_pc_range_and_checks_the_labels_range(micro_world):
    info = os.path.join(micro_world, 'occ_infos_train.pkl')
    ds = OccDataset(info, data_root=micro_world, img_size=(32, 64), grid_voxel=0.8, pc_range=list(OCC3D_RANGE))
    assert ds.grid.pc_range == OCC3D_RANGE and ds.grid.shape == (100, 100, 8)
    assert ds.metainfo['pc_range'] == OCC3D_RANGE
    assert ds[0]['voxel_semantics'].shape == (100, 100, 8)
    with pytest.raises(ValueError, match='occ_infos_train.pkl: the labels cover'):
        OccDataset(info, data_root=micro_world, img_size=(32, 64), grid_voxel=0.8,
                   pc_range=(-20.0, -20.0, -1.0, 20.0, 20.0, 5.4))
    # without labels the range is the model's choice (nothing to misread)
    ds = OccDataset(info, data_root=micro_world, img_size=(32, 64), grid_voxel=0.8, load_labels=False,
                    pc_range=(-20.0, -20.0, -1.0, 20.0, 20.0, 5.4))
    assert ds.grid.shape == (50, 50, 8) and 'voxel_semantics' not in ds[0]
    with pytest.raises(ValueError, match='does not tile'):
        OccDataset(info, data_root=micro_world, grid_voxel=0.7)
    assert np.allclose(ds.grid.lower, (-20.0, -20.0, -1.0))
