"""Label statistics of the synthetic world against the real Occ3D-nuScenes frame (issue 14).

The targets (0.4 m grid) are checked on keyframes 5, 20 and 35 of two default towns of seed 0 (a
seed the world's settings were chosen on) and of seed 99991 (one they were not chosen on), the
same statistics ``tools/make_synthetic.py --stats`` prints. The real frame's figures are constants
here (source: ``../shared/real/README.md``, measured on the CVPR 2023 challenge's sample
labels.npz), so every comparison runs in any clone; where ``../shared/real`` sits next to the
repository, the constants are also checked against the frame itself.
The default world meets every target on the six seeds its settings were chosen on and on five
others (data/README.md "Statistics"): raised sidewalks (``KERB_HEIGHT``) fill level 1 as in the
real frame, the upward-beam rule brings ``mask_camera`` into range, and the camera mask's rule for
occupied voxels is the one that best reproduces the real frame's own mask (tested below).
"""
import glob
import os

import numpy as np
import pytest

from occ.data.occ3d_io import load_occ3d_labels
from occ.data.synthetic.frame import CAMERA_OCCLUDERS
from occ.data.synthetic.stats import camera_mask_fit, label_statistics, world_statistics

REAL_GLOB = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'real', 'occ3d-sample', '*', 'labels.npz')
GROUND = (11, 12, 13, 14)                 # driveable_surface, other_flat, sidewalk, terrain
# The real frame's figures (../shared/real/README.md): camera-visible shares and the top-3 classes.
REAL_VISIBLE = {4: 0.906, 13: 0.901, 16: 0.430}       # car, sidewalk, vegetation
REAL_TOP3 = {16, 11, 15}                              # vegetation, driveable_surface, manmade
REAL_PER_Z = (11546, 2762, 1443, 1590, 1851, 1912, 2032, 2234, 2310, 2294, 2096, 1861, 1579, 1397, 1187, 998)
REAL_GROUND_PER_Z = (10520, 1504, 26) + (0,) * 13     # classes 11-14 per level (data/README.md, Statistics)
REAL_MASK_CAMERA = 0.068


@pytest.fixture(scope='module', params=[0, 99991], ids=['seed0-chosen-on', 'seed99991-held-out'])
def ours(request):
    return world_statistics(seed=request.param, worlds=2, frames=(5, 20, 35))


def _real_labels():
    files = sorted(glob.glob(REAL_GLOB))
    if not files:
        pytest.skip(f'the real Occ3D frame is not there ({os.path.normpath(REAL_GLOB)}); '
                    'see ../shared/real/README.md')
    return load_occ3d_labels(files[0], (200, 200, 16))


@pytest.fixture(scope='module')
def real():
    return label_statistics([_real_labels()])


def _ground_share_in_levels_0_1(stats):
    g = np.array(stats['ground_per_z'])
    return g[:2].sum() / g.sum()


def test_ground_classes_lie_in_levels_0_and_1(ours):
    assert _ground_share_in_levels_0_1(ours) == 1.0 and ours['ground_per_z'][0] > 5000


def test_real_frame_figures_match_the_frame(real):
    assert real['per_z'] == list(REAL_PER_Z)
    assert real['ground_per_z'] == list(REAL_GROUND_PER_Z)
    assert real['mask_camera'] == pytest.approx(REAL_MASK_CAMERA, abs=0.0005)
    top = sorted(range(17), key=lambda c: -real['share'][c])[:3]
    assert set(top) == REAL_TOP3
    assert _ground_share_in_levels_0_1({'ground_per_z': REAL_GROUND_PER_Z}) > 0.99   # 26 terrain voxels in level 2


def test_camera_visible_shares_within_0_2_of_the_real_frame(ours):
    for c, r in REAL_VISIBLE.items():
        assert abs(ours['visible'][c] - r) <= 0.2, (c, ours['visible'][c], r)


def test_real_frame_visible_shares_match_its_readme(real):
    for c, r in REAL_VISIBLE.items():
        assert real['visible'][c] == pytest.approx(r, abs=0.001)


def test_top3_occupied_classes_are_the_real_ones(ours):
    top = set(sorted(range(17), key=lambda c: -ours['share'][c])[:3])
    assert top == REAL_TOP3, sorted(range(17), key=lambda c: -ours['share'][c])[:4]


def test_occupied_per_level_within_2x_of_the_real_frame(ours):
    ratio = np.array(ours['per_z']) / np.array(REAL_PER_Z)
    assert np.all((ratio >= 0.5) & (ratio <= 2.0)), np.round(ratio, 2)


def test_raised_sidewalks_fill_level_1(ours):
    assert ours['ground_per_z'][1] > 1000           # the real frame: 1,504 ground voxels in level 1


def test_mask_camera_fraction_in_0_05_0_09(ours):
    assert 0.05 <= ours['mask_camera'] <= 0.09


def test_camera_occluders_best_reproduce_the_real_mask():
    """CAMERA_OCCLUDERS is the value at which the camera mask's rule for occupied voxels agrees best
    with the real frame's own mask_camera, on the real frame's own occupancy; the strict rule
    (line of sight, 0) holds far fewer voxels than the real mask does."""
    fit = camera_mask_fit(_real_labels(), occluders=range(11))
    best = max(fit, key=lambda r: r['agreement'])
    assert best['max_occluders'] == CAMERA_OCCLUDERS, [(r['max_occluders'], round(r['agreement'], 3)) for r in fit]
    assert best['agreement'] > fit[0]['agreement'] + 0.05
    assert fit[0]['held'] < 0.7 * fit[0]['real_held'] and abs(best['held'] - best['real_held']) < 0.1


def test_make_synthetic_stats_prints_the_table_and_the_mask_fit(capsys):
    from fixtures_data import load_tool
    files = sorted(glob.glob(REAL_GLOB))
    if not files:
        pytest.skip('the real Occ3D frame is not there')
    assert load_tool('make_synthetic').run(['--stats', '1', '--real', files[0]]) == 0
    out = capsys.readouterr().out
    assert '| in mask_camera: vegetation |' in out and '| 0.430 |' in out
    fit = out.split('camera-mask rule on the real frame')[1]
    assert f'N={CAMERA_OCCLUDERS}: 0.742' in fit and 'N=0: 0.640' in fit
