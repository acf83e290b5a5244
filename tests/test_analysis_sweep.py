"""Bandwidth sweep: the report function (hand-computed numbers) and the sweep grid over collab_common.py."""
import json
import math
import os

import pytest
from mmengine.config import Config

from occ.analysis.sweep import budget_report, format_report, load_rows, main
from occ.models.collab import CollabFusion
from occ.models.collab.message import max_tokens_for_budget

ROOT = os.path.join(os.path.dirname(__file__), '..')
ROWS = [dict(name='ego', bytes=0, miou=20.0), dict(name='full', bytes=2_560_000, miou=30.0),
        dict(name='tome_20k', bytes=20_000, miou=24.0), dict(name='tome_200k', bytes=200_000, miou=28.0),
        dict(name='tome_2k', bytes=2_000, miou=21.0)]


def test_report_interpolates_in_log2_bytes():
    rep = budget_report(ROWS)
    # 1/16 of full = 160,000 B, between 20,000 (24.0) and 200,000 (28.0) in log2 space.
    t = (math.log2(160_000) - math.log2(20_000)) / (math.log2(200_000) - math.log2(20_000))
    expect = 24.0 + 4.0 * t
    assert rep['target_bytes'] == 160_000
    assert rep['miou_at_target'] == pytest.approx(expect)
    assert rep['retained_at_target'] == pytest.approx((expect - 20.0) / 10.0)
    by = {r['name']: r for r in rep['rows']}
    assert by['ego']['log2_bytes'] is None and by['ego']['gain_retained'] == 0
    assert by['tome_2k']['log2_bytes'] == pytest.approx(math.log2(2000))
    assert by['tome_200k']['gain_retained'] == pytest.approx(0.8)
    assert [r['bytes'] for r in rep['rows']] == sorted(r['bytes'] for r in ROWS)
    assert '1/16 of full' in format_report(rep)


def test_report_says_when_target_is_not_measured(tmp_path, capsys):
    rep = budget_report([r for r in ROWS if r['name'] in ('ego', 'full', 'tome_2k')] +
                        [dict(name='tome_1M', bytes=1_000_000, miou=29.0)])
    assert rep['retained_at_target'] is not None          # 2k .. 1M brackets 160k
    rep = budget_report([r for r in ROWS if r['name'] in ('ego', 'full')] + [dict(name='x', bytes=500_000, miou=29)])
    assert rep['retained_at_target'] is None and 'outside' in rep['note']
    with pytest.raises(ValueError, match='ego-only'):
        budget_report([dict(name='a', bytes=5, miou=1.0)])
    csv_path = tmp_path / 'sweep.csv'
    csv_path.write_text('config,bytes_sent,mIoU\n' + '\n'.join(f"{r['name']},{r['bytes']},{r['miou']}" for r in ROWS))
    assert len(load_rows(str(csv_path))) == 5
    assert main([str(csv_path)]) == 0 and 'tome_20k' in capsys.readouterr().out
    # tools/ablate.py's ablation.json: metrics nested, failed runs skipped.
    abl = tmp_path / 'ablation.json'
    abl.write_text(json.dumps([{'name': r['name'], 'status': 'ok', 'miou': r['miou'],
                                'metrics': {'miou': r['miou'], 'bytes_sent': r['bytes']}} for r in ROWS] +
                              [{'name': 'broken', 'status': 'failed', 'miou': None}]))
    rows = load_rows(str(abl))
    assert [r['name'] for r in rows] == [r['name'] for r in ROWS]
    assert budget_report(rows)['miou_at_target'] == pytest.approx(budget_report(ROWS)['miou_at_target'])
    bad = tmp_path / 'bad.csv'
    bad.write_text('config,miou\nego,1\n')
    with pytest.raises(ValueError, match='bad.csv.*bytes'):
        load_rows(str(bad))


def _cfg(name):
    return Config.fromfile(os.path.join(ROOT, 'configs', 'ablations', name))


# The bandwidth sweep of docs/COLLAB.md: one grid over collab_common.py.
SWEEP_GRID = ['model.collab.strategy=tome,topk,random',
              'model.collab.budget_bytes=2000,6400,20000,64000,200000']


def test_sweep_grid_spans_100x_and_builds():
    from occ.analysis.ablate import expand_runs, parse_value
    from occ.analysis.sweep import strategy_of
    doc = open(os.path.join(ROOT, 'docs', 'COLLAB.md')).read()
    assert '--grid ' + ' '.join(SWEEP_GRID) in doc
    runs = expand_runs([os.path.join(ROOT, 'configs/ablations/collab_common.py')], SWEEP_GRID)
    budgets = {}
    for run in runs:
        cfg = _cfg('collab_common.py')
        cfg.merge_from_dict({k: parse_value(v) for k, v in run['options'].items()})
        col = cfg.model.collab
        assert strategy_of(run['name']) == col.strategy      # the sweep report reads names
        budgets.setdefault(col.strategy, []).append(col.budget_bytes)
        m = CollabFusion(**{k: v for k, v in col.items() if k != 'type'})
        assert (m.strategy, m.budget_bytes) == (col.strategy, col.budget_bytes)
    for strat in ('tome', 'topk', 'random'):
        assert len(budgets[strat]) == 5 and max(budgets[strat]) / min(budgets[strat]) >= 100
    # Every sweep budget fits at least one fp16 token of the 64-channel CPU model.
    assert max_tokens_for_budget(min(budgets['tome']), 64, 'fp16', True) >= 1
    ego, full = _cfg('collab_budget_ego.py'), _cfg('collab_budget_full.py')
    assert ego.model.collab.strategy == 'none' and ego.train_dataloader.dataset.load_neighbors is False
    assert full.model.collab.strategy == 'full' and strategy_of('collab_budget_full') == 'full'
    cfg = _cfg('collab_robust_latency.py')
    assert cfg.model.collab.link.latency == 1 and cfg.model.collab.budget_bytes == 20000
    assert cfg.train_dataloader.dataset.load_neighbors is True
    m = CollabFusion(**{k: v for k, v in cfg.model.collab.items() if k != 'type'})
    assert m.strategy == 'tome' and m.link.latency == 1
    assert cfg.model.collab.embed_dims == cfg.model.view_transform.out_channels
    assert list(cfg.model.collab.pc_range) == list(cfg.model.view_transform.pc_range)


def test_report_curve_filter_and_plot(tmp_path, capsys):
    from occ.analysis.sweep import plot_sweep, strategy_of
    assert strategy_of('collab_budget_topk_20k') == 'topk' and strategy_of('collab_budget_ego') == 'ego'
    assert strategy_of('x') == ''
    rows = [dict(name='collab_budget_ego', bytes=0, miou=20.0),
            dict(name='collab_budget_full', bytes=2_560_000, miou=30.0),
            dict(name='collab_budget_tome_20k', bytes=20_000, miou=24.0),
            dict(name='collab_budget_tome_200k', bytes=200_000, miou=28.0),
            dict(name='collab_budget_random_20k', bytes=20_000, miou=21.0),
            dict(name='collab_budget_random_200k', bytes=200_000, miou=22.0)]
    tome = budget_report(rows, curve='tome')
    ref = budget_report([dict(r, name=r['name'].split('_')[-1]) for r in rows
                         if 'random' not in r['name']])
    assert tome['ego_miou'] == 20.0 and tome['full_miou'] == 30.0
    assert tome['miou_at_target'] == pytest.approx(ref['miou_at_target'])
    rnd = budget_report(rows, curve='random')
    assert rnd['miou_at_target'] < tome['miou_at_target']
    with pytest.raises(ValueError, match="no 'topk' rows"):
        budget_report(rows, curve='topk')
    plot_sweep(tome, str(tmp_path / 's.png'), title='t')
    assert open(tmp_path / 's.png', 'rb').read(4) == b'\x89PNG'
    path = tmp_path / 'rows.json'
    path.write_text(json.dumps(rows))
    assert main([str(path), '--curve', 'tome', '--plot', str(tmp_path / 'm.png')]) == 0
    assert (tmp_path / 'm.png').exists()
    single = capsys.readouterr().out.split('plot:')[0]
    # Rows of several tables are pooled: the ego run and the budget runs come from two ablations.
    (tmp_path / 'ego.json').write_text(json.dumps(rows[:1]))
    (tmp_path / 'rest.json').write_text(json.dumps(rows[1:]))
    assert main([str(tmp_path / 'ego.json'), str(tmp_path / 'rest.json'), '--curve', 'tome']) == 0
    assert capsys.readouterr().out == single
