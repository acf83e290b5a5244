"""Bad inputs and faults (issue 15): one test per case of the issue's table, in its order.

Booby-trapped files carry a payload that would create a marker file; every such
test asserts that the marker is absent afterwards (the payload never ran) and
that the error names the file and the forbidden global.
"""
from __future__ import annotations

import ast
import glob
import json
import os
import os.path as osp
import pickle
import re
import shutil
import stat

import numpy as np
import pytest
import torch
from fixtures_data import load_tool, micro_world, write_micro_nuscenes  # noqa: F401
from test_engine import ToyOccModel, test_tool, train_tool, write_config
from test_eval_tool import RANGE, eval_occ, fixture  # noqa: F401

from occ.data.infos import InfoFile, save_infos
from occ.data.occ3d_io import OccFileError
from occ.engine.checkpoint import CheckpointError, load_state_dict, resolve_last_checkpoint
from occ.registry import DATASETS

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
create_data = load_tool('create_data')


class Payload:
    """Unpickling this runs ``exec``, which creates ``marker``: proof that code ran from data."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f'open({self.marker!r}, "w").close()',)


def _trained(tmp_path, iters=4, interval=2):
    cfg = write_config(tmp_path, max_iters=iters, ckpt_interval=interval)
    wd = str(tmp_path / 'wd')
    assert train_tool.main([cfg, '--work-dir', wd]) == 0
    return cfg, wd


# 1. a booby-trapped checkpoint given to test.py, train.py --resume CKPT, load_from=, cache_camera_bev.py
def test_booby_trapped_checkpoint_never_runs(tmp_path, capsys):
    cfg, wd = _trained(tmp_path)
    marker = tmp_path / 'PWNED'
    trojan = str(tmp_path / 'trojan.pth')
    # the real weights (it would evaluate normally) plus the payload in the metadata
    torch.save({'state_dict': load_state_dict(osp.join(wd, 'iter_4.pth')), 'meta': Payload(marker)}, trojan)
    cache_camera_bev = load_tool('cache_camera_bev')
    runs = {
        'test.py': lambda: test_tool.main([cfg, trojan, '--work-dir', str(tmp_path / 't')]),
        'train.py --resume': lambda: train_tool.main([cfg, '--work-dir', str(tmp_path / 'r'), '--resume', trojan]),
        'load_from': lambda: train_tool.main([cfg, '--work-dir', str(tmp_path / 'l'),
                                              '--cfg-options', f'load_from={trojan}']),
        'cache_camera_bev.py': lambda: cache_camera_bev.main([cfg, trojan, '--out', str(tmp_path / 'c')]),
    }
    for name, run in runs.items():
        assert run() == 1, name
        err = capsys.readouterr().err
        assert trojan in err and 'builtins.exec' in err and 'refused' in err, (name, err)
        assert not marker.exists(), name
    with pytest.raises(CheckpointError, match='trojan.pth: refused.*builtins.exec'):
        load_state_dict(trojan)
    assert not marker.exists()


# 2. a booby-trapped eval_occ.py --pred sub.pkl or --info evil.pkl
def test_booby_trapped_pickles_never_run(fixture, capsys):  # noqa: F811
    gt, pred, info, tmp = fixture
    marker = tmp / 'PWNED'
    evil_sub, evil_info = tmp / 'sub.pkl', tmp / 'evil.pkl'
    with open(evil_sub, 'wb') as f:
        pickle.dump({'results': {'t0': Payload(marker)}}, f)
    data = InfoFile.read(info).to_dict()
    data['infos'][0]['boxes'] = Payload(marker)
    with open(evil_info, 'wb') as f:
        pickle.dump(data, f)
    for args, bad in ((['--gt', gt, '--pred', evil_sub], evil_sub), (['--info', evil_info, '--pred', pred], evil_info)):
        assert eval_occ.main([str(a) for a in args] + ['--no-ray-iou', '--pc-range', *RANGE]) == 2
        err = capsys.readouterr().err
        assert f'{bad}: refused to load' in err and 'builtins.exec' in err, err
        assert not marker.exists()
    # every reader of info files goes through InfoFile: the dataset and the metric too
    from occ.data import OccDataset
    from occ.evaluation import OccMetric
    with pytest.raises(OccFileError, match='evil.pkl: refused.*builtins.exec'):
        OccDataset(str(evil_info))
    metric = OccMetric(ann_file=str(evil_info))
    with pytest.raises(OccFileError, match='evil.pkl: refused'):
        metric._origins_for('t0', (20, 20, 8))
    assert not marker.exists()


# 3. test.py with a checkpoint that holds no model weights
def test_checkpoint_without_model_weights_fails_unless_allow_partial(tmp_path, capsys):
    cfg, wd = _trained(tmp_path, iters=2, interval=2)
    empty = str(tmp_path / 'other_model.pth')
    torch.save({'state_dict': {'backbone.conv.weight': torch.zeros(3)}, 'meta': {}}, empty)
    assert test_tool.main([cfg, empty, '--work-dir', wd]) == 1
    err = capsys.readouterr().err
    assert empty in err and 'are missing' in err and 'fc.weight' in err and '--allow-partial' in err
    assert train_tool.main([cfg, '--work-dir', str(tmp_path / 'ft'), '--cfg-options', f'load_from={empty}']) == 1
    assert 'are missing' in capsys.readouterr().err
    assert test_tool.main([cfg, empty, '--work-dir', wd, '--allow-partial']) == 0
    # a wrong shape is as bad as a missing key
    bad = {k: torch.zeros(1, *v.shape) for k, v in ToyOccModel().state_dict().items()}
    torch.save({'state_dict': bad}, str(tmp_path / 'reshaped.pth'))
    assert test_tool.main([cfg, str(tmp_path / 'reshaped.pth'), '--work-dir', wd]) == 1
    assert 'have another shape' in capsys.readouterr().err


# 4. a JPEG truncated to a third
def test_truncated_jpeg_is_an_error_naming_the_file(micro_world, tmp_path):  # noqa: F811
    import cv2

    from occ.data import OccDataset
    from occ.data.dataset import load_image
    root = str(tmp_path / 'world')
    shutil.copytree(micro_world, root)
    info_file = osp.join(root, 'occ_infos_val.pkl')
    rel = InfoFile.read(info_file)[0]['cams']['CAM_FRONT']['data_path']
    path = osp.join(root, rel)
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 3])
    assert cv2.imread(path) is not None          # OpenCV decodes it partly and only warns
    with pytest.raises(OccFileError, match=re.escape(path) + '.*truncated'):
        load_image(path)
    ds = OccDataset(info_file, data_root=root, img_size=(32, 56), grid_voxel=0.8)
    with pytest.raises(OccFileError, match=re.escape(path) + '.*truncated'):
        ds[0]
    png = str(tmp_path / 'x.png')
    cv2.imwrite(png, np.zeros((8, 8, 3), np.uint8))
    assert load_image(png).shape == (8, 8, 3)
    open(png, 'ab').write(b'\0\0')               # trailing padding is fine, a cut is not
    assert load_image(png).shape == (8, 8, 3)
    raw = open(png, 'rb').read()
    open(png, 'wb').write(raw[:-20])
    with pytest.raises(OccFileError, match='x.png.*truncated'):
        load_image(png)
    open(png, 'wb').close()
    with pytest.raises(OccFileError, match='x.png.*cannot be decoded'):
        load_image(png)


# 5. NaN in an ego_pose translation
def test_non_finite_pose_fails_create_data_and_the_dataset(micro_world, tmp_path, capsys):  # noqa: F811
    from occ.data import OccDataset
    root = write_micro_nuscenes(str(tmp_path / 'nan'), scenes=1, frames=2)
    table = osp.join(root, 'v1.0-micro', 'ego_pose.json')
    poses = json.load(open(table))
    poses[1]['translation'][0] = float('nan')
    json.dump(poses, open(table, 'w'))
    assert create_data.main(['--root', root, '--no-progress']) == 1
    err = capsys.readouterr().err
    assert f'{table}: ego_pose {poses[1]["token"]}: non-finite pose' in err
    assert not glob.glob(osp.join(root, 'occ_infos_*.pkl'))
    # an info file written elsewhere (or edited) with a NaN pose fails when the dataset loads
    data = InfoFile.read(osp.join(micro_world, 'occ_infos_val.pkl')).to_dict()
    data['infos'][1]['ego2global'][0, 3] = np.nan
    bad = str(tmp_path / 'occ_infos_val.pkl')
    save_infos(data, bad)
    tok = data['infos'][1]['token']
    with pytest.raises(OccFileError, match=f'{re.escape(bad)}: sample {tok}: ego2global holds non-finite'):
        OccDataset(bad, data_root=micro_world)
    data['infos'][1]['ego2global'][0, 3] = 0.0
    data['infos'][0]['cams']['CAM_BACK']['intrinsics'][0, 0] = np.inf
    save_infos(data, bad)
    with pytest.raises(OccFileError, match='CAM_BACK intrinsics holds non-finite'):
        OccDataset(bad, data_root=micro_world)


def _logged_iters(wd):
    """Training iterations logged in ``wd``, run after run (a resumed run continues the count)."""
    return [json.loads(line)['iter'] for path in sorted(glob.glob(osp.join(wd, '*', 'vis_data', 'scalars.json')))
            for line in open(path) if '"loss"' in line]


# 6. kill -9 after iter_2.pth was written but before the pointer was replaced
def test_resume_uses_newest_complete_checkpoint_without_pointer(tmp_path, caplog):
    cfg, wd = _trained(tmp_path, iters=4, interval=2)
    os.remove(osp.join(wd, 'last_checkpoint'))                    # killed before the first pointer write
    stale = [osp.join(wd, '.last_checkpoint.k2j4h1.tmp'), osp.join(wd, '.iter_6.pth.tmp')]
    for p in stale:
        open(p, 'wb').write(b'half')
    assert resolve_last_checkpoint(wd) == osp.join(wd, 'iter_4.pth')
    cfg6 = write_config(tmp_path, max_iters=6, ckpt_interval=2, name='six.py')
    assert train_tool.main([cfg6, '--work-dir', wd, '--resume']) == 0
    assert _logged_iters(wd) == [1, 2, 3, 4, 5, 6]               # resumed at 4, not from scratch
    assert not any(osp.exists(p) for p in stale)
    assert not glob.glob(osp.join(wd, '.*.tmp'))
    # stale pointer: it names iter_4 but the complete iter_6 is newer
    open(osp.join(wd, 'last_checkpoint'), 'w').write('iter_4.pth')
    assert resolve_last_checkpoint(wd) == osp.join(wd, 'iter_6.pth')


# 7. the pointer names a deleted checkpoint
def test_dangling_pointer_falls_back_to_the_newest_verified_checkpoint(tmp_path):
    cfg, wd = _trained(tmp_path, iters=4, interval=2)
    ckpt4 = osp.join(wd, 'iter_4.pth')
    raw = open(ckpt4, 'rb').read()
    open(ckpt4, 'wb').write(raw[:len(raw) // 2])                 # truncated: skipped
    assert resolve_last_checkpoint(wd) == osp.join(wd, 'iter_2.pth')
    os.remove(ckpt4)                                              # the error's hint: delete it
    assert resolve_last_checkpoint(wd) == osp.join(wd, 'iter_2.pth')
    assert train_tool.main([write_config(tmp_path, max_iters=4, ckpt_interval=2, name='again.py'),
                            '--work-dir', wd, '--resume']) == 0
    assert _logged_iters(wd) == [1, 2, 3, 4, 3, 4]               # resumed at 2
    os.remove(osp.join(wd, 'iter_2.pth'))
    os.remove(osp.join(wd, 'iter_4.pth'))
    open(osp.join(wd, 'last_checkpoint'), 'w').write('iter_4.pth')
    with pytest.raises(CheckpointError, match='iter_4.pth, which does not exist.*no other complete checkpoint'):
        resolve_last_checkpoint(wd)


# 8. work dir copied elsewhere, then --resume
def test_copied_work_dir_resumes_from_its_own_files(tmp_path):
    cfg, wd = _trained(tmp_path, iters=4, interval=2)
    assert open(osp.join(wd, 'last_checkpoint')).read() == 'iter_4.pth'     # relative
    copy = str(tmp_path / 'copy')
    shutil.copytree(wd, copy)
    assert resolve_last_checkpoint(copy) == osp.join(copy, 'iter_4.pth')
    # a pointer from before this change holds the original's absolute path
    open(osp.join(copy, 'last_checkpoint'), 'w').write(osp.join(wd, 'iter_4.pth'))
    assert resolve_last_checkpoint(copy) == osp.join(copy, 'iter_4.pth')
    shutil.rmtree(wd)
    cfg6 = write_config(tmp_path, max_iters=6, ckpt_interval=2, name='six.py')
    assert train_tool.main([cfg6, '--work-dir', copy, '--resume']) == 0
    assert _logged_iters(copy) == [1, 2, 3, 4, 5, 6] and not osp.exists(wd)


# 9. a truncated sample_data.json
def test_truncated_table_names_the_file(tmp_path, capsys):
    root = write_micro_nuscenes(str(tmp_path / 'w'), scenes=1, frames=2)
    table = osp.join(root, 'v1.0-micro', 'sample_data.json')
    text = open(table).read()
    open(table, 'w').write(text[:len(text) // 2])
    assert create_data.main(['--root', root, '--no-progress']) == 1
    err = capsys.readouterr().err
    assert f'{table}: not valid JSON' in err


# 10. missing or undecodable camera images
def test_create_data_counts_missing_files(tmp_path, capsys):
    root = write_micro_nuscenes(str(tmp_path / 'w'), scenes=2, frames=2)
    gone = sorted(glob.glob(osp.join(root, 'samples', 'CAM_FRONT', '*.jpg')))[:2]
    for p in gone:
        os.remove(p)
    assert create_data.main(['--root', root, '--no-progress']) == 1
    err = capsys.readouterr().err
    assert '2 camera image / LiDAR file(s)' in err and 'in 2 sample(s)' in err and gone[0] in err
    assert '--skip-missing-files' in err
    assert create_data.main(['--root', root, '--no-progress', '--skip-missing-files']) == 0
    kept = sum(len(InfoFile.read(p)) for p in glob.glob(osp.join(root, 'occ_infos_*.pkl')))
    assert kept == 4 - 2


# 11. eval JSON path is a directory, or the PNG path is unwritable
def test_eval_checks_every_output_before_writing_any(fixture, capsys):  # noqa: F811
    gt, pred, _, tmp = fixture
    base = ['--gt', str(gt), '--pred', str(pred), '--no-ray-iou', '--pc-range', *RANGE]
    os.makedirs(tmp / 'adir')
    assert eval_occ.main(base + ['--json', str(tmp / 'adir')]) == 2
    assert f'--json {tmp / "adir"}: is a directory' in capsys.readouterr().err
    old = tmp / 'r.json'
    old.write_text('{"previous": true}')
    csv_path = tmp / 'r.csv'
    (tmp / 'afile').write_text('x')
    png = tmp / 'afile' / 'c.png'                              # its folder is a file
    assert eval_occ.main(base + ['--json', str(old), '--csv', str(csv_path), '--confusion-png', str(png)]) == 2
    err = capsys.readouterr().err
    assert 'nothing was written' in err and str(png) in err
    assert json.loads(old.read_text()) == {'previous': True} and not csv_path.exists()
    assert eval_occ.main(base + ['--json', str(old), '--csv', str(csv_path),
                                 '--confusion-png', str(tmp / 'c.png')]) == 0
    assert 'miou' in json.loads(old.read_text()) and csv_path.exists() and (tmp / 'c.png').exists()


@DATASETS.register_module(force=True)
class UnreadableOccFile:
    """A dataset whose file is broken, as OccDataset is on a corrupt info or label file."""

    def __init__(self, **kwargs):
        raise OccFileError('/data/occ_infos_train.pkl: corrupt or truncated info file (EOFError)')


# 12. ValueErrors of make_synthetic.py / OccFileError in train.py
def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    make_synthetic = load_tool('make_synthetic')
    assert make_synthetic.run(['--out', str(tmp_path / 'w'), '--scenes', '0', '--quiet']) == 2
    err = capsys.readouterr().err
    assert err.startswith('make_synthetic: error: ') and 'scenes (0)' in err and 'Traceback' not in err
    cfg = write_config(tmp_path, max_iters=2)
    assert train_tool.main([cfg, '--work-dir', str(tmp_path / 'wd'),
                            '--cfg-options', 'train_dataloader.dataset.type=UnreadableOccFile']) == 1
    err = capsys.readouterr().err
    assert 'train.py: /data/occ_infos_train.pkl: corrupt' in err and 'Traceback' not in err


# 13. files written through occ/utils/io.py
@pytest.mark.parametrize('umask, mode', [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_apply_the_umask(tmp_path, umask, mode):
    from occ.utils.io import atomic_save_json, atomic_save_npz
    old = os.umask(umask)
    try:
        atomic_save_json(str(tmp_path / 'a.json'), {'x': 1})
        atomic_save_npz(str(tmp_path / 'sub' / 'labels.npz'), semantics=np.zeros(3, np.uint8))
    finally:
        os.umask(old)
    for name in ('a.json', 'sub/labels.npz'):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == mode, name


# The rule behind rows 1-2: no deserialiser that can run code is called on a user file.
_SAFE_LOADER = osp.join('occ', 'utils', 'safe_pickle.py')


def _unsafe_calls(path: str) -> list:
    """(line, what) for each call that can execute code from a file it reads."""
    tree = ast.parse(open(path).read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Attribute) and b.attr == 'Unpickler' for b in node.bases):
            found.append((node.lineno, 'pickle.Unpickler subclass'))
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = (f'{f.value.id}.{f.attr}' if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                else getattr(f, 'id', None) or getattr(f, 'attr', None))
        kw = {k.arg: k.value for k in node.keywords}
        const = {k: v.value for k, v in kw.items() if isinstance(v, ast.Constant)}
        if name in ('pickle.load', 'pickle.loads', 'pickle.Unpickler', 'cPickle.load', 'dill.load',
                    'joblib.load', 'pd.read_pickle', 'pandas.read_pickle', 'marshal.loads', 'shelve.open'):
            found.append((node.lineno, name))
        elif name == 'torch.load' and const.get('weights_only') is not True:
            found.append((node.lineno, 'torch.load without weights_only=True'))
        elif name in ('np.load', 'numpy.load') and 'allow_pickle' in kw and const.get('allow_pickle') is not False:
            found.append((node.lineno, 'np.load with allow_pickle'))
    return found


def test_no_code_executing_loader_outside_the_safe_one(tmp_path):
    offenders = []
    for top in ('occ', 'tools'):
        for path in glob.glob(osp.join(ROOT, top, '**', '*.py'), recursive=True):
            rel = osp.relpath(path, ROOT)
            text = open(path).read()
            hits = [] if rel == _SAFE_LOADER else _unsafe_calls(path)
            hits += [(text[:m.start()].count('\n') + 1, m.group(0))
                     for m in re.finditer(r'weights_only\s*=\s*False|allow_pickle\s*=\s*True', text)]
            offenders += [f'{rel}:{line}: {what}' for line, what in hits]
    assert not offenders, '\n'.join(offenders)
    # the scan itself finds what it must
    probe = tmp_path / 'probe.py'
    probe.write_text('import pickle, torch, numpy as np\npickle.load(f)\ntorch.load(p)\n'
                     'torch.load(p, weights_only=False)\nnp.load(p, allow_pickle=True)\n'
                     'class U(pickle.Unpickler): pass\ntorch.load(p, weights_only=True)\nnp.load(p)\n')
    assert sorted(line for line, _ in _unsafe_calls(str(probe))) == [2, 3, 4, 5, 6]
