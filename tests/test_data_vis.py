"""tools/vis_occ.py on the micro world: one PNG per sample, and the --pred branch."""
import os
import sys
import types

import cv2
import numpy as np
from fixtures_data import load_tool, micro_world  # noqa: F401

from occ.data.infos import InfoFile
from occ.data.occ3d_io import save_prediction

vis_occ = load_tool('vis_occ')


def test_vis_writes_one_png_per_sample(micro_world, tmp_path):
    out = tmp_path / 'vis'
    assert vis_occ.main(['--root', micro_world, '--out', str(out), '--num', '2']) == 0
    pngs = sorted(os.listdir(out))
    assert len(pngs) == 2 and all(p.endswith('.png') for p in pngs)
    img = cv2.imread(str(out / pngs[0]))
    assert img is not None and img.shape[1] > 800
    # The BEV panel holds the driveable-surface magenta of the labels (255, 0, 255), shaded.
    rgb = img[..., ::-1].astype(int)
    magenta = (rgb[..., 0] > 100) & (rgb[..., 1] < 40) & (rgb[..., 2] > 100)
    assert magenta.sum() > 1000


def test_vis_pred_branch_calls_compare(micro_world, tmp_path, monkeypatch):
    calls = []

    def fake(gt, pred_semantics, out_path, title=''):
        calls.append((gt['semantics'].shape, pred_semantics.shape, out_path, title))

    mod = types.ModuleType('occ.vis.compare')
    mod.draw_prediction_vs_gt = fake
    monkeypatch.setitem(sys.modules, 'occ.vis.compare', mod)
    info = InfoFile.read(os.path.join(micro_world, 'occ_infos_val.pkl')).infos[1]
    pred_dir = tmp_path / 'pred'
    save_prediction(str(pred_dir / f'{info["token"]}.npz'), np.full((50, 50, 4), 17, np.uint8))
    rc = vis_occ.main(['--root', micro_world, '--out', str(tmp_path / 'v'), '--tokens', info['token'],
                       '--pred', str(pred_dir)])
    assert rc == 0
    # GT (100x100x8 on disk) is coarsened to the prediction's grid before comparing.
    assert len(calls) == 1 and calls[0][0] == (50, 50, 4) and calls[0][1] == (50, 50, 4)
    assert info['token'] in calls[0][3]


def test_vis_unknown_token_is_an_error(micro_world, tmp_path, capsys):
    assert vis_occ.main(['--root', micro_world, '--out', str(tmp_path), '--tokens', 'nope']) == 1
    assert 'nope' in capsys.readouterr().err
