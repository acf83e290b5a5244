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
ROWS = [dict(name='ego', strategy='ego', bytes=0, miou=20.0),
        dict(name='full', strategy='full', bytes=2_560_000, miou=30.0),
        dict(name='tome_20k', strategy='tome', bytes=20_000, miou=24.0),
        dict(name='tome_200k', strategy='tome', bytes=200_000, miou=28.0),
        dict(name='tome_2k', strategy='tome', bytes=2_000, miou=21.0)]


def _rows(rows, tmp_path, name='t.json'):
    path = tmp_path / name
    path.write_text(json.dumps(rows))
    return load_rows(str(path))


def test_report_interpolates_in_log2_bytes(tmp_path):
    rep = budget_report(_rows(ROWS, tmp_path), fractions=(1 / 16, 1 / 64))
    # 1/16 of full = 160,000 B, between 20,000 (24.0) and 200,000 (28.0) in log2 space.
    t = (math.log2(160_000) - math.log2(20_000)) / (math.log2(200_000) - math.log2(20_000))
    expect = 24.0 + 4.0 * t
    at16, at64 = rep['curves']['tome']
    assert at16['bytes'] == 160_000 and at16['value'] == pytest.approx(expect)
    assert at16['retained'] == pytest.approx((expect - 20.0) / 10.0)
    # 1/64 = 40,000 B between 20,000 and 200,000
    t = (math.log2(40_000) - math.log2(20_000)) / (math.log2(200_000) - math.log2(20_000))
    assert at64['value'] == pytest.approx(24.0 + 4.0 * t)
    assert rep['reference'] == 'ego' and rep['reference_value'] == 20.0 and rep['ego_value'] is None
    by = {r['name']: r for r in rep['rows']}
    assert by['ego']['log2_bytes'] is None and by['ego']['gain_retained'] == 0
    assert by['tome_2k']['log2_bytes'] == pytest.approx(math.log2(2000))
    assert by['tome_200k']['gain_retained'] == pytest.approx(0.8)
    assert [r['bytes'] for r in rep['rows']] == sorted(r['bytes'] for r in ROWS)
    text = format_report(rep)
    assert '1/16 of full' in text and '1/64 of full' in text


def test_seeds_pool_and_the_dropped_message_row_is_the_reference(tmp_path):
    seed0 = [dict(ROWS[1]), dict(ROWS[2]), dict(name='drop', strategy='dropped', bytes=40_000, miou=19.0)]
    seed1 = [dict(ROWS[1], miou=32.0), dict(ROWS[2], miou=26.0), dict(name='drop', strategy='dropped',
                                                                     bytes=40_000, miou=21.0)]
    rows = _rows(seed0, tmp_path, 's0.json') + _rows(seed1, tmp_path, 's1.json') + _rows([ROWS[0]], tmp_path)
    rep = budget_report(rows)
    by = {r['name']: r for r in rep['rows']}
    assert by['tome_20k']['value'] == 25.0 and by['tome_20k']['std'] == pytest.approx(math.sqrt(2)) \
        and by['tome_20k']['n'] == 2
    # the dropped-message row (same weights, nothing arrives) is the reference, even though it
    # sent bytes; the separately trained ego-only model is reported beside it
    assert rep['reference'] == 'dropped' and rep['reference_value'] == 20.0 and rep['ego_value'] == 20.0
    assert by['full']['gain_retained'] == pytest.approx(1.0)
    assert by['tome_20k']['gain_retained'] == pytest.approx(5.0 / 11.0)
    assert 'ego-only model trained alone: 20.00' in format_report(rep)
    lossy = _rows([dict(name='lossy', strategy='full+loss0.3', bytes=2_560_000, miou=25.0)], tmp_path, 'l.json')
    rep = budget_report(rows + lossy)
    assert list(rep['curves']) == ['tome'] and rep['full_value'] == 31.0       # a robustness row, not a curve


def test_report_says_when_target_is_not_measured(tmp_path, capsys):
    rep = budget_report(_rows([r for r in ROWS if r['name'] in ('ego', 'full', 'tome_2k')] +
                              [dict(name='tome_1M', strategy='tome', bytes=1_000_000, miou=29.0)], tmp_path))
    assert rep['curves']['tome'][0]['retained'] is not None          # 2k .. 1M brackets 160k
    rep = budget_report(_rows([r for r in ROWS if r['name'] in ('ego', 'full')] +
                              [dict(name='x', strategy='topk', bytes=500_000, miou=29)], tmp_path))
    assert rep['curves']['topk'][0]['retained'] is None and 'outside' in rep['curves']['topk'][0]['note']
    with pytest.raises(ValueError, match='reference'):
        budget_report(_rows([dict(name='a', strategy='tome', bytes=5, miou=1.0)], tmp_path))
    csv_path = tmp_path / 'sweep.csv'
    csv_path.write_text('config,strategy,bytes_sent,mIoU\n' + '\n'.join(
        f"{r['name']},{r['strategy']},{r['bytes']},{r['miou']}" for r in ROWS))
    assert len(load_rows(str(csv_path))) == 5
    assert main([str(csv_path)]) == 0 and 'tome_20k' in capsys.readouterr().out
    # tools/ablate.py's ablation.json: metrics nested, failed runs skipped.
    abl = tmp_path / 'ablation.json'
    abl.write_text(json.dumps([{'name': r['name'], 'strategy': r['strategy'], 'status': 'ok', 'miou': r['miou'],
                                'metrics': {'miou': r['miou'], 'bytes_sent': r['bytes']}} for r in ROWS] +
                              [{'name': 'broken', 'status': 'failed', 'miou': None}]))
    rows = load_rows(str(abl))
    assert [r['name'] for r in rows] == [r['name'] for r in ROWS]
    bad = tmp_path / 'bad.csv'
    bad.write_text('config,miou\nego,1\n')
    with pytest.raises(ValueError, match='bad.csv.*bytes'):
        load_rows(str(bad))
    nostrat = tmp_path / 'nostrat.csv'
    nostrat.write_text('name,bytes,miou\ntome_2k,2000,1\n')
    with pytest.raises(ValueError, match='nostrat.csv.*no strategy'):
        load_rows(str(nostrat))


def _cfg(name):
    return Config.fromfile(os.path.join(ROOT, 'configs', 'ablations', name))


# The bandwidth sweep of docs/COLLAB.md: one grid over collab_common.py.
SWEEP_GRID = ['model.collab.strategy=tome,topk,random',
              'model.collab.budget_bytes=2000,6400,20000,64000,200000']


def test_sweep_grid_spans_100x_and_builds():
    from occ.analysis.ablate import expand_runs, parse_value
    from occ.analysis.sweep import strategy_from_config
    doc = open(os.path.join(ROOT, 'docs', 'COLLAB.md')).read()
    assert '--grid ' + ' '.join(SWEEP_GRID) in doc
    common = os.path.join(ROOT, 'configs/ablations/collab_common.py')
    runs = expand_runs([common], SWEEP_GRID)
    budgets = {}
    for run in runs:
        cfg = _cfg('collab_common.py')
        cfg.merge_from_dict({k: parse_value(v) for k, v in run['options'].items()})
        col = cfg.model.collab
        assert strategy_from_config(common, run['options']) == col.strategy      # read from the config
        budgets.setdefault(col.strategy, []).append(col.budget_bytes)
        m = CollabFusion(**{k: v for k, v in col.items() if k != 'type'})
        assert (m.strategy, m.budget_bytes) == (col.strategy, col.budget_bytes)
    for strat in ('tome', 'topk', 'random'):
        assert len(budgets[strat]) == 5 and max(budgets[strat]) / min(budgets[strat]) >= 100
    # Every sweep budget fits at least one fp16 token of the 64-channel CPU model.
    assert max_tokens_for_budget(min(budgets['tome']), 64, 'fp16', True) >= 1
    ego, full = _cfg('collab_budget_ego.py'), _cfg('collab_budget_full.py')
    assert ego.model.collab.strategy == 'none' and ego.train_dataloader.dataset.load_neighbors is False
    path = lambda name: os.path.join(ROOT, 'configs', 'ablations', name)  # noqa: E731
    assert strategy_from_config(path('collab_budget_full.py')) == 'full'
    assert strategy_from_config(path('collab_budget_ego.py')) == 'ego'
    assert strategy_from_config(path('collab_control_dropped.py')) == 'dropped'
    assert strategy_from_config(path('collab_robust_int8.py')) == 'tome+int8'
    assert strategy_from_config(common, {'model.collab.link.drop_prob': '1.0'}) == 'dropped'
    assert strategy_from_config(common, {'model.collab.link.drop_prob': '0.3',
                                         'model.collab.strategy': 'full'}) == 'full+loss0.3'
    assert strategy_from_config(path('collab_robust_latency.py')) == 'tome+latency1'
    cfg = _cfg('collab_robust_latency.py')
    assert cfg.model.collab.link.latency == 1 and cfg.model.collab.budget_bytes == 20000
    assert cfg.train_dataloader.dataset.load_neighbors is True
    m = CollabFusion(**{k: v for k, v in cfg.model.collab.items() if k != 'type'})
    assert m.strategy == 'tome' and m.link.latency == 1
    assert cfg.model.collab.embed_dims == cfg.model.view_transform.out_channels
    assert list(cfg.model.collab.pc_range) == list(cfg.model.view_transform.pc_range)


def test_report_curve_filter_and_plot(tmp_path, capsys):
    from occ.analysis.sweep import plot_sweep
    rows = [dict(name='ego', strategy='ego', bytes=0, miou=20.0),
            dict(name='full', strategy='full', bytes=2_560_000, miou=30.0),
            dict(name='a', strategy='tome', bytes=20_000, miou=24.0),
            dict(name='b', strategy='tome', bytes=200_000, miou=28.0),
            dict(name='c', strategy='random', bytes=20_000, miou=21.0),
            dict(name='d', strategy='random', bytes=200_000, miou=22.0)]
    loaded = _rows(rows, tmp_path)
    tome = budget_report(loaded, curve='tome')
    assert list(tome['curves']) == ['tome'] and tome['full_value'] == 30.0
    both = budget_report(loaded)
    assert both['curves']['tome'] == tome['curves']['tome']
    assert both['curves']['random'][0]['value'] < tome['curves']['tome'][0]['value']
    with pytest.raises(ValueError, match="no 'topk' rows"):
        budget_report(loaded, curve='topk')
    plot_sweep(both, str(tmp_path / 's.png'), title='t')
    assert open(tmp_path / 's.png', 'rb').read(4) == b'\x89PNG'
    path = tmp_path / 'rows.json'
    path.write_text(json.dumps(rows))
    assert main([str(path), '--curve', 'tome', '--plot', str(tmp_path / 'm.png'), '--fractions', '1/16', '1/64']) == 0
    assert (tmp_path / 'm.png').exists()
    single = capsys.readouterr().out.split('plot:')[0]
    # Rows of several tables are pooled: the ego run and the budget runs come from two ablations.
    (tmp_path / 'ego.json').write_text(json.dumps(rows[:1]))
    (tmp_path / 'rest.json').write_text(json.dumps(rows[1:]))
    assert main([str(tmp_path / 'ego.json'), str(tmp_path / 'rest.json'), '--curve', 'tome',
                 '--fractions', '1/16', '1/64']) == 0
    assert capsys.readouterr().out == single


def test_paired_intervals_against_the_dropped_reference_and_at_equal_bytes(tmp_path):
    """Two seeds: each seed's sweep tests one checkpoint; rows pair with the reference of the same seed."""
    import numpy as np

    from occ.analysis.sweep import format_paired, paired_against
    from occ.constants import FREE
    from occ.evaluation import OccEvaluator, save_frame_table
    rng = np.random.default_rng(0)
    rnge = (-1.6, -1.6, -1.0, 1.6, 1.6, 0.6)
    ev = OccEvaluator(ray_iou=False, pc_range=rnge, parts=['VoxelIoU', 'CoopRegions'])
    gts = [rng.integers(0, FREE + 1, (4, 4, 2)).astype(np.uint8) for _ in range(12)]
    mask = np.ones((4, 4, 2), np.uint8)

    def run(name, strategy, nbytes, seed, correct):
        """A run whose prediction equals GT on a `correct` share of the voxels (noise elsewhere)."""
        r = np.random.default_rng([seed, int(100 * correct)])
        results = []
        for gt in gts:
            pred = np.where(r.random(gt.shape) < correct, gt, r.integers(0, FREE + 1, gt.shape)).astype(np.uint8)
            results.append(ev.frame_result(pred=pred, gt=gt, mask_camera=mask, mask_lidar=mask,
                                           mask_camera_coop=mask))
        path = str(tmp_path / f'{name}_{seed}.npz')
        save_frame_table(path, [f't{i}' for i in range(len(gts))], ev.frame_table(results), ev.parts)
        full = ev.empty_copy()
        for res in results:
            full.add_result(res)
        m = full.flat_metrics()
        return {'name': name, 'strategy': strategy, 'status': 'ok', 'miou': m['miou'], 'frame_stats': path,
                'metrics': dict(m, bytes_sent=nbytes)}

    tables = []
    for seed in (0, 1):
        rows = [run('drop', 'dropped', 4000, seed, 0.3), run('t4k', 'tome', 4000, seed, 0.8),
                run('k4k', 'topk', 4000, seed, 0.6), run('full', 'full', 100_000, seed, 0.9)]
        p = tmp_path / f'seed{seed}.json'
        p.write_text(json.dumps(rows))
        tables.append(rows)
    rows = [r for s in (0, 1) for r in load_rows(str(tmp_path / f'seed{s}.json'))]
    vs_drop = {r['name']: r for r in paired_against(rows, 'dropped', ['miou'], n_boot=200)}
    expect = np.mean([tables[s][1]['miou'] - tables[s][0]['miou'] for s in (0, 1)])
    tome = vs_drop['t4k']['vs_baseline']['miou']
    assert tome['diff'] == pytest.approx(expect) and tome['lo'] <= tome['diff'] <= tome['hi']
    assert tome['verdict'] == 'better' and vs_drop['t4k']['seeds'] == 2
    vs_topk = {r['name']: r for r in paired_against(rows, 'topk', ['miou'], n_boot=200, group_by_bytes=True)}
    assert vs_topk['t4k']['baseline'] == 'k4k' and vs_topk['t4k']['vs_baseline']['miou']['verdict'] == 'better'
    assert 'better' in format_paired(list(vs_topk.values()), ['miou'])
    with pytest.raises(ValueError, match="no 'random' rows"):
        paired_against(rows, 'random', ['miou'])
