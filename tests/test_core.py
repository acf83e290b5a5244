"""Shared modules: grid geometry, atomic writes, Occ3D file IO (incl. the real Occ3D frame)."""
import glob
import os

import numpy as np
import pytest

from occ.constants import CLASS_NAMES, FREE, OCC_COLORS
from occ.data.occ3d_io import (OccFileError, load_occ3d_labels, load_prediction,
                               save_occ3d_labels, save_prediction)
from occ.geometry import CPU_GRID, OCC3D_GRID, OccGrid
from occ.utils.io import atomic_open

# A real Occ3D-nuScenes frame, committed as a fixture (see tests/fixtures/README.md).
REAL = sorted(glob.glob(os.path.join(os.path.dirname(__file__), 'fixtures', 'occ3d-sample', '*', 'labels.npz')))


def test_grid_shapes_and_centres():
    assert OCC3D_GRID.shape == (200, 200, 16)
    assert CPU_GRID.shape == (100, 100, 8)
    c = CPU_GRID.centers()
    assert c.shape == (100, 100, 8, 3)
    # On paper: voxel (0,0,0) spans [-40,-39.2) x [-40,-39.2) x [-1,-0.2) -> centre (-39.6,-39.6,-0.6).
    np.testing.assert_allclose(c[0, 0, 0], [-39.6, -39.6, -0.6], atol=1e-5)
    np.testing.assert_allclose(c[-1, -1, -1], [39.6, 39.6, 5.0], atol=1e-5)


def test_points_to_index_matches_loop_reference():
    rng = np.random.default_rng(0)
    g = OccGrid.from_voxel(0.4)
    pts = rng.uniform([-45, -45, -2], [45, 45, 7], size=(2000, 3))
    idx, inside = g.points_to_index(pts)
    for p, i, ok in zip(pts, idx, inside):
        ref = [int(np.floor((p[a] - g.pc_range[a]) / 0.4)) for a in range(3)]
        ref_ok = all(0 <= ref[a] < g.shape[a] for a in range(3))
        assert list(i) == ref and ok == ref_ok
    # centres map back to their own index
    back, ok = g.points_to_index(g.index_to_points(idx[inside]))
    assert ok.all() and (back == idx[inside]).all()
    # the raster index agrees with the same loop (row-major, last axis fastest) where inside
    flat, flat_ok = g.points_to_flat(pts)
    assert (flat_ok == inside).all()
    for i, f in zip(idx[inside], flat[inside]):
        assert f == (i[0] * g.shape[1] + i[1]) * g.shape[2] + i[2]


def test_colour_map_covers_classes():
    assert OCC_COLORS.shape == (len(CLASS_NAMES), 3) and CLASS_NAMES[FREE] == 'free'


def test_atomic_open_keeps_old_content_on_failure(tmp_path):
    p = tmp_path / 'ckpt.bin'
    p.write_bytes(b'old')
    with pytest.raises(RuntimeError):
        with atomic_open(p) as f:
            f.write(b'new partial')
            raise RuntimeError('killed')
    assert p.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['ckpt.bin']  # no temp file left behind


def _labels(shape=(4, 5, 2)):
    rng = np.random.default_rng(1)
    return dict(semantics=rng.integers(0, 18, shape).astype(np.uint8),
                mask_lidar=rng.integers(0, 2, shape).astype(np.uint8),
                mask_camera=rng.integers(0, 2, shape).astype(np.uint8))


def test_labels_round_trip(tmp_path):
    p = str(tmp_path / 'gts' / 's' / 't' / 'labels.npz')
    lab = _labels()
    save_occ3d_labels(p, **lab)
    out = load_occ3d_labels(p, (4, 5, 2))
    for k in lab:
        np.testing.assert_array_equal(out[k], lab[k])


def test_label_errors_name_file_and_problem(tmp_path):
    p = str(tmp_path / 'labels.npz')
    save_occ3d_labels(p, **_labels())
    # wrong-shaped grid
    with pytest.raises(OccFileError, match=r'labels\.npz.*grid is \(4, 5, 2\), expected \(200, 200, 16\)'):
        load_occ3d_labels(p, (200, 200, 16))
    # truncated file
    data = open(p, 'rb').read()
    t = tmp_path / 'trunc.npz'
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(OccFileError, match=r'trunc\.npz.*(corrupt|truncated|lacks)'):
        load_occ3d_labels(str(t))
    # missing file / missing key / wrong dtype
    with pytest.raises(OccFileError, match='nope.npz: Occ3D labels file not found'):
        load_occ3d_labels(str(tmp_path / 'nope.npz'))
    np.savez(tmp_path / 'nokey.npz', semantics=np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(OccFileError, match=r"nokey\.npz.*lacks key"):
        load_occ3d_labels(str(tmp_path / 'nokey.npz'))
    lab = _labels()
    lab['semantics'] = lab['semantics'].astype(np.int64)
    np.savez(tmp_path / 'dtype.npz', **lab)
    with pytest.raises(OccFileError, match=r'dtype\.npz.*dtype int64, expected uint8'):
        load_occ3d_labels(str(tmp_path / 'dtype.npz'))


def test_prediction_round_trip_and_errors(tmp_path):
    p = str(tmp_path / 'tok.npz')
    sem = _labels()['semantics']
    fut = np.stack([sem] * 3)
    save_prediction(p, sem, fut, bytes_sent=np.float64(123.0))
    out = load_prediction(p, (4, 5, 2), horizons=3)
    np.testing.assert_array_equal(out['semantics_future'], fut)
    assert float(out['bytes_sent']) == 123.0
    with pytest.raises(OccFileError, match='2 horizons, expected at least 3'):
        save_prediction(p, sem, fut[:2])
        load_prediction(p, horizons=3)


def test_real_occ3d_frame_loads_with_published_statistics():
    lab = load_occ3d_labels(REAL[0], OCC3D_GRID.shape)
    sem = lab['semantics']
    assert abs((sem == FREE).mean() - 0.939) < 0.001
    assert abs(lab['mask_camera'].mean() - 0.068) < 0.001
    assert abs(lab['mask_lidar'].mean() - 0.088) < 0.001
    assert (sem != FREE).sum() == 39092


def test_atomic_save_figure_writes_png_and_closes(tmp_path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from occ.utils.io import atomic_save_figure
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    atomic_save_figure(fig, str(tmp_path / 'a.png'), dpi=50)
    assert (tmp_path / 'a.png').read_bytes()[:4] == b'\x89PNG'
    assert not plt.fignum_exists(fig.number)
    fig2, _ = plt.subplots()
    atomic_save_figure(fig2, str(tmp_path / 'b.svg'), close=False, format='svg')
    assert b'<svg' in (tmp_path / 'b.svg').read_bytes()[:400] and plt.fignum_exists(fig2.number)
    plt.close(fig2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.png', 'b.svg']     # no temp files left
