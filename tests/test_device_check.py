"""tools/device_check.py: the GPU check's sections, budget and report, exercised on CPU.

The GPU halves cannot run here; ``--device cpu --tiny`` runs every section's CPU half
and records the CUDA comparisons as skipped (the slow test). The fast tests cover the
runner's bookkeeping: a failing section is recorded and the ones that need it are
skipped, a section past its cap is stopped, the budget is honoured, and the derived
configs are what stock mmengine loads.
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest

from occ.analysis.device_check import SECTIONS, CheckOptions, run_device_check
from occ.analysis.device_check import runner
from occ.analysis.device_check.runner import STATUSES

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))


@pytest.mark.slow
def test_failed_section_is_recorded_and_dependants_skipped(tmp_path):
    out = tmp_path / 'dc.json'
    report = run_device_check(CheckOptions(out=str(out), device='cpu', tiny=True, world=str(tmp_path / 'nowhere'),
                                           sections=['world', 'ray_iou', 'bev_pool'], budget_s=300),
                              echo=lambda *a: None)
    on_disk = json.load(open(out))
    assert on_disk['summary'] == report['summary']
    world = on_disk['sections']['world']
    assert world['status'] == 'error' and 'nowhere' in world['error'] and 'FileNotFoundError' in world['error']
    assert on_disk['sections']['ray_iou']['status'] == 'skipped'
    assert 'world' in on_disk['sections']['ray_iou']['reason']
    # a section that does not need the world still runs after the failure
    assert on_disk['sections']['bev_pool']['status'] == 'ok'
    assert on_disk['sections']['bev_pool']['cuda_vs_cpu']['status'] == 'skipped'
    assert osp.isfile(on_disk['log']) and 'FileNotFoundError' in open(on_disk['log']).read()


def test_section_past_its_cap_is_stopped(tmp_path):
    opts = CheckOptions(out=str(tmp_path / 'dc.json'), device='cpu', tiny=True).resolved()
    os.makedirs(osp.join(opts.work_dir, 'parts'))
    opts_path = osp.join(opts.work_dir, 'options.json')
    runner.save_json(opts_path, opts.__dict__)
    with open(opts.log, 'a') as log:
        # generating a world takes far longer than 1.5 s (interpreter + torch start alone)
        res = runner._run_section_process('world', opts, opts_path, None, 1.5, log)
    assert res['status'] == 'timeout' and res['seconds'] < 30
    assert 'cap' in res['reason']


def test_sigterm_ends_the_running_section_and_keeps_the_report(tmp_path):
    import signal
    import time
    out = tmp_path / 'dc.json'
    work = tmp_path / 'work'
    p = subprocess.Popen([sys.executable, osp.join(ROOT, 'tools', 'device_check.py'), '--device', 'cpu', '--tiny',
                          '--sections', 'world', 'bev_pool', '--out', str(out), '--work-dir', str(work)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not (work / 'options.json').exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)                                 # the world section's process is running now
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == 1, p.stdout.read()
    report = json.load(open(out))
    assert report['sections']['world']['status'] == 'error'
    assert 'SIGTERM' in report['sections']['world']['error']
    assert report['sections']['bev_pool'] == {'status': 'skipped', 'reason': 'the check was interrupted (SIGTERM)'}
    # no process of the check is left behind (sections run in their own sessions)
    left = []
    for pid in os.listdir('/proc'):
        try:
            cmd = open(f'/proc/{pid}/cmdline', 'rb').read().decode(errors='replace')
        except OSError:
            continue
        if str(work) in cmd:
            left.append(cmd)
    assert not left


def test_budget_used_up_skips_everything(tmp_path):
    report = run_device_check(CheckOptions(out=str(tmp_path / 'dc.json'), device='cpu', tiny=True, budget_s=1),
                              echo=lambda *a: None)
    assert list(report['sections']) == list(SECTIONS)
    assert all(r['status'] == 'skipped' for r in report['sections'].values())
    assert report['targets']['r50_fp16_fps_ge_92']['met'] is None


def test_bad_options_are_errors():
    with pytest.raises(ValueError, match='unknown section'):
        CheckOptions(out='x.json', sections=['nope']).resolved()
    with pytest.raises(ValueError, match='--device'):
        CheckOptions(out='x.json', device='tpu').resolved()


def test_jsonable_is_strict_json():
    import numpy as np
    import torch
    obj = {'a': np.float32(1.5), 'b': torch.tensor([1, 2]), 'c': float('nan'), 'd': (1, np.int64(2)),
           'e': np.array([[0.5, np.inf]])}
    out = runner.jsonable(obj)
    assert out == {'a': 1.5, 'b': [1, 2], 'c': None, 'd': [1, 2], 'e': [[0.5, None]]}
    json.dumps(out, allow_nan=False)


def test_targets_read_off_the_results():
    sections = {
        'bev_pool': {'cuda_vs_cpu': {'status': 'ok'}},
        'sparse_head': {'status': 'skipped'},
        'ray_iou': {'cuda_vs_cpu': {'status': 'failed'}},
        'train_flashocc': {'runs': [{'device': 'cuda', 'batch_size': 4, 'peak_reserved_mib': 20000.0},
                                    {'device': 'cuda', 'batch_size': 4, 'peak_reserved_mib': 26000.0},
                                    {'device': 'cuda', 'batch_size': 1, 'peak_reserved_mib': 90000.0}]},
        'inference': {'runs': [{'config': 'flashocc', 'precision': 'fp16', 'device': 'cuda', 'fps': 120.0}]},
    }
    t = runner._targets(sections)
    assert t['cuda_equals_cpu']['met'] is False
    assert t['r50_batch4_memory_le_24GiB'] == {'value_mib': 26000.0, 'met': False}
    assert t['r50_fp16_fps_ge_92'] == {'value': 120.0, 'met': True}


@pytest.mark.parametrize('name', ['flashocc', 'bevformer'])
@pytest.mark.parametrize('tiny', [False, True])
def test_variant_configs_load_with_stock_mmengine(tmp_path, name, tiny):
    from mmengine.config import Config

    from occ.analysis.device_check import check_configs
    world = str(tmp_path / 'world')
    path = check_configs.write_variant(name, world, tiny, cuda=False, out_dir=str(tmp_path))
    cfg = Config.fromfile(path)
    base = Config.fromfile(check_configs.config_path(name))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg[key].dataset
        assert ds.data_root == world and ds.info_file.startswith(world + os.sep)
        assert tuple(ds.img_size) == ((32, 96) if tiny else tuple(base[key].dataset.img_size))
    assert cfg.val_evaluator.ann_file == osp.join(world, 'occ_infos_val.pkl')
    assert cfg.optim_wrapper.type == 'OptimWrapper' and 'loss_scale' not in cfg.optim_wrapper
    assert cfg.optim_wrapper.optimizer == base.optim_wrapper.optimizer
    assert (cfg.model.backbone.depth == 18) == tiny and cfg.model.type == base.model.type


@pytest.mark.slow
def test_tiny_cpu_check_end_to_end(tmp_path):
    """The whole check on CPU: every section reports a status, training losses are finite,
    CUDA comparisons are skipped (no CUDA here), the CPU halves ran."""
    import torch
    out = tmp_path / 'dc.json'
    env = dict(os.environ, OMP_NUM_THREADS='1')     # OpenMP threads on a shared machine only contend
    # a budget above the default: on a loaded shared machine the tiny run can take several times its
    # idle 2-3 minutes, and this test is about completeness, not speed
    r = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'device_check.py'), '--device', 'cpu', '--tiny',
                        '--budget', '1500', '--out', str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=1800)
    assert out.is_file(), r.stdout + r.stderr
    report = json.load(open(out))
    assert list(report['sections']) == list(SECTIONS)
    for name, sec in report['sections'].items():
        assert sec['status'] in STATUSES, (name, sec)
    assert report['sections']['world']['status'] == 'ok', report['sections']['world']
    for name in ('train_flashocc', 'train_bevformer'):
        sec = report['sections'][name]
        runs = [run for run in sec.get('runs', []) if 'losses' in run]
        assert runs, (name, sec)
        for run in runs:
            assert run['losses'] and all(v is not None and math.isfinite(v) for v in run['losses']), run
        assert {(run['precision'], run['batch_size']) for run in runs} >= {('fp32', 1), ('fp32', 2)}
    assert report['sections']['bev_pool']['checks']['cpu_matches_reference'] is True
    if not torch.cuda.is_available():
        for name in ('bev_pool', 'ray_iou', 'evaluator'):
            sec = report['sections'][name]
            if sec['status'] == 'ok':
                assert sec['cuda_vs_cpu'] == {'status': 'skipped', 'reason': 'no CUDA'}, (name, sec)
    assert r.returncode == (0 if all(s in ('ok', 'skipped') for s in report['summary'].values()) else 1)
