"""tools/ablate.py on the toy model: grid expansion, per-run processes, table and plot."""
from __future__ import annotations

import json
import math
import os
import os.path as osp

import pytest

from occ.analysis.ablate import expand_runs, markdown_table, plot, split_values

HERE = osp.dirname(osp.abspath(__file__))


def test_expand_runs_and_values(tmp_path):
    a, b = tmp_path / 'a.py', tmp_path / 'b.py'
    a.write_text('x = 1\n')
    b.write_text('x = 2\n')
    assert split_values('(64,176),(128,352)') == ['(64,176)', '(128,352)']
    runs = expand_runs([str(a), str(b)], ['lr=0.1,0.2', 'img_size=(64,176),(32,88)'])
    assert len(runs) == 8
    assert runs[0]['options'] == {'lr': '0.1', 'img_size': '(64,176)'}
    assert len({r['name'] for r in runs}) == 8
    assert expand_runs([str(a)], [])[0] == {'name': 'a', 'config': str(a), 'options': {}}
    with pytest.raises(ValueError, match='expected key=v1,v2'):
        expand_runs([str(a)], ['lr'])
    with pytest.raises(FileNotFoundError, match='missing.py'):
        expand_runs([str(tmp_path / 'missing.py')], [])


def test_table_and_plot_kinds(tmp_path):
    rows = [{'name': f'r{lr}', 'config': 'c.py', 'options': {'lr': str(lr)}, 'status': 'ok',
             'miou': 10.0 * i, 'train_time_s': 1.5, 'peak_rss_mb': 300.0, 'iters': 5}
            for i, lr in enumerate((0.01, 0.1, 1.0))]
    md = markdown_table(rows, 'miou')
    assert md.count('\n') == 5 and '| r0.1 | 0.1 | 10.00 | 1.5 | 5 | 300 |' in md
    assert plot(rows, 'miou', str(tmp_path / 'p.png'), logx=True) == 'line'
    rows[1]['options'] = {'lr': 'high'}
    assert plot(rows, 'miou', str(tmp_path / 'q.png')) == 'bar'
    for name in ('p.png', 'q.png'):
        assert open(tmp_path / name, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


@pytest.mark.slow
def test_ablate_runs_toy_grid(tmp_path):
    from test_engine import write_config

    from occ.analysis.ablate import main
    cfg = write_config(tmp_path, max_iters=4, ckpt_interval=4,
                       extra="custom_imports = dict(imports=['test_engine'], allow_failed_imports=False)\n")
    root = str(tmp_path / 'abl')
    os.environ['PYTHONPATH'] = HERE + os.pathsep + os.environ.get('PYTHONPATH', '')
    try:
        rc = main([cfg, '--grid', 'optim_wrapper.optimizer.lr=0.0,0.05', '--work-root', root,
                   '--iters', '6', '--metric', 'acc'])
    finally:
        os.environ['PYTHONPATH'] = os.environ['PYTHONPATH'].split(os.pathsep, 1)[1]
    assert rc == 0
    rows = json.load(open(osp.join(root, 'ablation.json')))
    assert [r['options']['optim_wrapper.optimizer.lr'] for r in rows] == ['0.0', '0.05']
    for r in rows:
        assert r['status'] == 'ok' and r['iters'] == 6 and r['peak_rss_mb'] > 50
        assert 0.0 <= r['acc'] <= 1.0
    md = open(osp.join(root, 'ablation.md')).read()
    assert 'toy_cfg__lr-0.05' in md and 'acc' in md
    assert open(osp.join(root, 'ablation.png'), 'rb').read(4) == b'\x89PNG'

    # --load-from: no training, every run tests the given weights -> the trained run's metric.
    ckpt = osp.join(root, rows[1]['name'], open(osp.join(root, rows[1]['name'], 'last_checkpoint')).read().strip())
    root2 = str(tmp_path / 'abl_eval')
    os.environ['PYTHONPATH'] = HERE + os.pathsep + os.environ.get('PYTHONPATH', '')
    try:
        rc = main([cfg, '--grid', 'optim_wrapper.optimizer.lr=0.0,0.05', '--work-root', root2,
                   '--metric', 'acc', '--load-from', ckpt])
        assert main([cfg, '--work-root', root2, '--load-from', str(tmp_path / 'nope.pth')]) == 2
    finally:
        os.environ['PYTHONPATH'] = os.environ['PYTHONPATH'].split(os.pathsep, 1)[1]
    assert rc == 0
    evals = json.load(open(osp.join(root2, 'ablation.json')))
    assert [r['acc'] for r in evals] == [rows[1]['acc'], rows[1]['acc']]
    for r in evals:
        assert r['load_from'] == ckpt and r.get('iters') is None
        assert not osp.exists(osp.join(root2, r['name'], 'train_stats.json'))


def test_bandwidth_report_pools_tables(tmp_path):
    from occ.analysis.ablate import bandwidth_report

    common = osp.join(osp.dirname(__file__), '..', 'configs', 'ablations', 'collab_common.py')

    def row(name, nbytes, miou, **options):     # the strategy is read from the config and options
        return {'name': name, 'status': 'ok', 'miou': miou, 'config': common, 'options': options,
                'metrics': {'miou': miou, 'bytes_sent': nbytes}}
    (tmp_path / 'ego.json').write_text(json.dumps([row('ego', 0, 20.0, **{'model.collab.strategy': 'none'})]))
    (tmp_path / 'sweep.json').write_text(json.dumps(
        [row('full', 1_600_000, 30.0, **{'model.collab.strategy': 'full'}), row('t2', 2_000, 22.0),
         row('t200', 200_000, 28.0), row('k2', 2_000, 25.0, **{'model.collab.strategy': 'topk'})]))
    md = bandwidth_report([str(tmp_path / 'ego.json'), str(tmp_path / 'sweep.json')], str(tmp_path), 'tome')
    # 1/16 of full = 100,000 B, on the tome line between 2 k (22) and 200 k (28) in log2 bytes
    frac = (math.log2(100_000) - math.log2(2_000)) / (math.log2(200_000) - math.log2(2_000))
    at = 22.0 + 6.0 * frac
    assert f'miou {at:.2f}' in md and f'{100 * (at - 20.0) / 10.0:.1f} %' in md
    assert (tmp_path / 'sweep.md').read_text().strip() == md.strip()
    assert (tmp_path / 'sweep.png').read_bytes()[:4] == b'\x89PNG'
