"""occ.vis.compare: error categories against a loop reference, and the picture itself."""
import glob
import os

import numpy as np
import pytest

from occ.constants import FREE
from occ.data.occ3d_io import load_occ3d_labels
from occ.vis.compare import (CORRECT, FALSE_OCCUPIED, MISSED, NONE, WRONG_CLASS,
                             draw_prediction_vs_gt, error_bev, error_categories)

REAL = sorted(glob.glob(os.path.join(os.path.dirname(__file__), 'fixtures', 'occ3d-sample',
                                     '*', 'labels.npz')))


def test_error_categories_and_column_majority_match_loops():
    rng = np.random.default_rng(0)
    shape = (5, 4, 6)
    gt = np.where(rng.random(shape) < 0.5, FREE, rng.integers(0, 17, shape)).astype(np.uint8)
    pred = np.where(rng.random(shape) < 0.5, FREE, rng.integers(0, 17, shape)).astype(np.uint8)
    mask = (rng.random(shape) < 0.7).astype(np.uint8)
    cat = error_categories(gt, pred, mask)
    for i, j, k in np.ndindex(shape):
        g, p = int(gt[i, j, k]), int(pred[i, j, k])
        if not mask[i, j, k] or (g == FREE and p == FREE):
            ref = NONE
        elif g != FREE and p != FREE:
            ref = CORRECT if g == p else WRONG_CLASS
        else:
            ref = FALSE_OCCUPIED if g == FREE else MISSED
        assert cat[i, j, k] == ref
    bev = error_bev(cat)
    for i, j in np.ndindex(shape[:2]):
        col = [c for c in cat[i, j].tolist() if c != NONE]
        if not col:
            assert bev[i, j] == NONE
        else:
            best = max(range(1, 5), key=lambda c: (col.count(c), c))   # ties -> more serious
            assert bev[i, j] == best


@pytest.mark.skipif(not REAL, reason='real Occ3D fixture missing')
def test_draws_a_png_for_the_real_frame(tmp_path):
    z = load_occ3d_labels(REAL[0])
    pred = np.roll(z['semantics'], 3, 0)
    out = draw_prediction_vs_gt(z, pred, str(tmp_path / 'cmp.png'), title='real frame',
                                max_points_3d=3000)
    data = open(out, 'rb').read()
    assert data[:4] == b'\x89PNG' and len(data) > 20000
    with pytest.raises(ValueError, match='grid'):
        draw_prediction_vs_gt(z, pred[:10], str(tmp_path / 'bad.png'))
