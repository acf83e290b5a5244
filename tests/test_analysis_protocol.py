"""Ablation protocol: mean ± std over seeds and the paired frame x seed bootstrap against loop references."""
from __future__ import annotations

import math

import numpy as np
import pytest

from occ.analysis.protocol import (BETTER, NOISE, WORSE, align, bootstrap_draws, markdown, mean_std,
                                   paired_bootstrap, plot, table_metrics, verdict)
from occ.constants import FREE
from occ.evaluation import FrameTable, confusion_matrices

SHAPE = (6, 5, 4)


def _frames(rng, n, flip):
    """Per-frame [3, 18, 18] confusion counts of random labels, ``flip`` = share of wrong predictions."""
    out = []
    for _ in range(n):
        gt = np.where(rng.random(SHAPE) < 0.5, FREE, rng.integers(0, 6, SHAPE)).astype(np.uint8)
        pred = gt.copy()
        wrong = rng.random(SHAPE) < flip
        pred[wrong] = rng.integers(0, 18, int(wrong.sum()))
        out.append(confusion_matrices(pred, gt, (rng.random(SHAPE) < 0.7).astype(np.uint8)))
    return np.stack(out)


def _table(hists):
    return {'hist': hists, 'hist.present': np.ones(len(hists), bool)}


def _ref_miou(h):
    """Occ3D mIoU (percent) of one 18x18 histogram, written out: classes 0..16 with a non-empty union."""
    ious = []
    for c in range(17):
        tp = h[c][c]
        union = sum(h[c][p] for p in range(18)) + sum(h[g][c] for g in range(18)) - tp
        if union:
            ious.append(tp / union)
    return 100.0 * sum(ious) / len(ious)


def _ref_percentile(values, q):
    """Linear-interpolation percentile, by hand."""
    v = sorted(values)
    pos = q / 100.0 * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (pos - lo) * (v[hi] - v[lo])


def test_mean_std_on_known_numbers():
    assert mean_std([10.0, 14.0]) == (12.0, pytest.approx(math.sqrt(8.0)), 2)
    m, s, n = mean_std([20.0, 22.0, 27.0])
    assert m == pytest.approx(23.0) and s == pytest.approx(math.sqrt((9 + 1 + 16) / 2)) and n == 3
    assert mean_std([5.0]) == (5.0, None, 1)
    assert mean_std([None, float('nan')]) == (None, None, 0)
    assert verdict(0.1, 2.0) == BETTER and verdict(-2.0, -0.1) == WORSE and verdict(-1.0, 1.0) == NOISE
    assert verdict(None, None) is None


def test_paired_bootstrap_matches_a_loop_reference():
    rng = np.random.default_rng(0)
    seeds, frames = 2, 9
    cand = [_table(_frames(rng, frames, 0.2)) for _ in range(seeds)]
    base = [_table(_frames(rng, frames, 0.4)) for _ in range(seeds)]
    draws = bootstrap_draws(np.random.default_rng(7), 150, seeds, frames)
    got = paired_bootstrap(table_metrics(['VoxelIoU']), cand, base, ['miou'], draws=draws)['miou']

    # independent reference: sum the drawn frames' camera-mask histograms in loops, mIoU by hand
    def miou(tab, idx):
        h = [[0] * 18 for _ in range(18)]
        for f in idx:
            for g in range(18):
                for p in range(18):
                    h[g][p] += int(tab['hist'][f, 0, g, p])
        return _ref_miou(h)
    everything = range(frames)
    point = sum(miou(cand[s], everything) - miou(base[s], everything) for s in range(seeds)) / seeds
    reps = []
    for r in range(len(draws[0])):
        d = 0.0
        for j in range(seeds):
            s = int(draws[0][r, j])
            idx = [int(f) for f in draws[1][r, j]]
            d += (miou(cand[s], idx) - miou(base[s], idx)) / seeds
        reps.append(d)
    assert got['diff'] == pytest.approx(point)
    assert got['lo'] == pytest.approx(_ref_percentile(reps, 2.5))
    assert got['hi'] == pytest.approx(_ref_percentile(reps, 97.5))
    assert got['replicates'] == 150 and got['lo'] < got['diff'] < got['hi']
    # pooled mIoU, not a mean of per-frame mIoUs: the two differ on these frames
    per_frame = np.mean([miou(cand[0], [f]) for f in everything])
    assert abs(per_frame - miou(cand[0], everything)) > 0.1
    # the same draws from the same generator seed
    again = paired_bootstrap(table_metrics(['VoxelIoU']), cand, base, ['miou'], n_boot=150, seed=7)['miou']
    assert (again['lo'], again['hi']) == (got['lo'], got['hi'])


def test_known_intervals_and_verdicts():
    rng = np.random.default_rng(1)
    frames = _frames(rng, 6, 0.3)
    same = paired_bootstrap(table_metrics(['VoxelIoU']), [_table(frames)] * 2, [_table(frames)] * 2,
                            ['miou', 'iou'], n_boot=50)
    for k in ('miou', 'iou'):
        assert (same[k]['diff'], same[k]['lo'], same[k]['hi'], same[k]['verdict']) == (0.0, 0.0, 0.0, NOISE)
    # perfect predictions against all-wrong ones: +100 in every replicate (classes 0..5 present, free mixed in)
    perfect = np.zeros_like(frames)
    wrong = np.zeros_like(frames)
    for f in range(len(frames)):
        rows = frames[f].sum(-1)                       # GT counts per mask and class
        for m in range(3):
            perfect[f, m] = np.diag(rows[m])
            wrong[f, m, :, FREE] = rows[m]             # every class predicted free ...
            wrong[f, m, FREE, FREE] = 0
            wrong[f, m, FREE, 0] = rows[m, FREE]       # ... and free predicted as "others"
    res = paired_bootstrap(table_metrics(['VoxelIoU']), [_table(perfect)], [_table(wrong)], ['miou'], n_boot=50)
    assert (res['miou']['diff'], res['miou']['lo'], res['miou']['hi']) == (100.0, 100.0, 100.0)
    assert res['miou']['verdict'] == BETTER
    back = paired_bootstrap(table_metrics(['VoxelIoU']), [_table(wrong)], [_table(perfect)], ['miou'], n_boot=50)
    assert back['miou']['verdict'] == WORSE


def test_align_pairs_frames_by_token():
    rng = np.random.default_rng(2)
    h = _frames(rng, 4, 0.3)
    a = FrameTable(['a', 'b', 'c', 'd'], _table(h), ['VoxelIoU'])
    b = FrameTable(['d', 'c', 'b', 'a'], _table(h[::-1].copy()), ['VoxelIoU'])
    (ca,), (cb,) = align([a], [b])
    np.testing.assert_array_equal(ca['hist'], cb['hist'])
    with pytest.raises(ValueError, match='other frames'):
        align([a], [FrameTable(['a', 'b', 'c', 'x'], _table(h), [])])
    with pytest.raises(ValueError, match='seed run'):
        align([a, a], [b])


def test_markdown_and_error_bar_plot(tmp_path):
    rows = [{'name': 'base', 'seeds': 2, 'miou': 12.0, 'miou_std': 2.0, 'miou_values': [10.0, 14.0],
             'baseline': 'base', 'status': 'ok', 'train_time_s': 3.0},
            {'name': 'new', 'seeds': 2, 'miou': 15.0, 'miou_std': 1.0, 'miou_values': [14.0, 16.0],
             'baseline': 'base', 'status': 'ok', 'train_time_s': 3.5,
             'vs_baseline': {'miou': {'diff': 3.0, 'lo': 0.5, 'hi': 5.25, 'verdict': BETTER}}}]
    md = markdown(rows, ['miou'])
    assert '| base | 2 | 12.00 ± 2.00 | (baseline) |' in md
    assert '| new | 2 | 15.00 ± 1.00 | +3.00 [+0.50, +5.25] | better | 3.5 | ok |' in md
    plot(rows, 'miou', str(tmp_path / 'p.png'))
    assert (tmp_path / 'p.png').read_bytes()[:4] == b'\x89PNG'


# ------------------------------------------------------------------ tools/ablate.py --seeds 2, end to end
# A toy occupancy model on a 4 x 4 x 2 grid, scored by the real OccMetric: fast enough to
# train 2 configs x 2 seeds in subprocesses, and its frame statistics are the real ones.
import torch  # noqa: E402
from mmengine.model import BaseModel  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from occ.registry import DATASETS, MODELS  # noqa: E402

TOY_GRID = (4, 4, 2)
TOY_CLASSES = np.array([4, 11, 15, FREE])


@DATASETS.register_module(force=True)
class SeedToyOccDataset(Dataset):
    """Features x [8] -> per-voxel class of argmax(x @ W) among car / road / manmade / free."""

    def __init__(self, num=16, offset=0, data_root='toy'):
        # another "root" is another set of samples (a held-out town for --test-root)
        offset += 0 if data_root == 'toy' else 500
        g = np.random.default_rng(99)
        w = g.normal(size=(8, int(np.prod(TOY_GRID)), 4)).astype(np.float32)
        self.x = np.random.default_rng(100 + offset).normal(size=(num, 8)).astype(np.float32)
        self.y = TOY_CLASSES[np.einsum('nf,fvc->nvc', self.x, w).argmax(-1)].reshape(num, *TOY_GRID)
        self.offset = offset

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {'x': torch.from_numpy(self.x[i]), 'voxel_semantics': torch.from_numpy(self.y[i].astype(np.uint8)),
                'mask_camera': torch.ones(TOY_GRID, dtype=torch.uint8), 'sample_token': f'toy{self.offset + i:03d}'}


@MODELS.register_module(force=True)
class SeedToyOccModel(BaseModel):
    def __init__(self):
        super().__init__(data_preprocessor=dict(type='OccDataPreprocessor'))
        self.fc = torch.nn.Linear(8, 18 * int(np.prod(TOY_GRID)))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        logits = self.fc(inputs['x']).view(-1, 18, *TOY_GRID)
        if mode == 'loss':
            return {'loss_ce': torch.nn.functional.cross_entropy(logits, inputs['voxel_semantics'].long())}
        if mode == 'predict':
            sem = logits.argmax(1).to(torch.uint8).numpy()
            return [{'semantics': s, 'sample_token': t} for s, t in zip(sem, inputs['sample_token'])]
        return {'logits': logits}


def _toy_config(path, lr):
    import os.path as osp
    root = osp.abspath(osp.join(osp.dirname(__file__), '..'))
    path.write_text('\n'.join([
        f"_base_ = ['{root}/configs/_base_/default_runtime.py', '{root}/configs/_base_/schedules/cpu_demo.py']",
        "custom_imports = dict(imports=['test_analysis_protocol'], allow_failed_imports=False)",
        "model = dict(type='SeedToyOccModel')",
        "train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,",
        "    sampler=dict(type='DefaultSampler', shuffle=True),",
        "    collate_fn=dict(type='occ.occ_collate'), dataset=dict(type='SeedToyOccDataset', num=16, data_root='toy'))",
        "test_dataloader = dict(batch_size=4, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),",
        "    collate_fn=dict(type='occ.occ_collate'), dataset=dict(type='SeedToyOccDataset', num=12, offset=50,",
        "    data_root='toy'))",
        "test_evaluator = dict(type='OccMetric', mask='camera', ray_iou=False)",
        "val_dataloader = test_dataloader",
        "val_evaluator = test_evaluator",
        "train_cfg = dict(max_iters=6, val_interval=1000)",
        "param_scheduler = []",
        f"optim_wrapper = dict(optimizer=dict(lr={lr}))",
        "default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1000))",
    ]) + '\n')
    return str(path)


@pytest.mark.slow
def test_ablate_seeds_mean_std_and_interval(tmp_path, monkeypatch):
    import json
    import os
    import os.path as osp

    from occ.analysis.ablate import main
    from occ.evaluation import load_frame_table
    here = osp.dirname(osp.abspath(__file__))
    monkeypatch.setenv('PYTHONPATH', here + os.pathsep + os.environ.get('PYTHONPATH', ''))
    base = _toy_config(tmp_path / 'toy_base.py', 0.0)        # untrained: its random init only
    trained = _toy_config(tmp_path / 'toy_trained.py', 0.5)
    root = str(tmp_path / 'abl')
    town = tmp_path / 'townB'
    town.mkdir()
    rc = main([base, trained, '--seeds', '2', '--baseline', 'toy_base', '--work-root', root,
               '--bootstrap', '200', '--metrics', 'miou,iou', '--test-root', str(town)])
    assert rc == 0
    runs = json.load(open(osp.join(root, 'ablation.json')))
    assert [r['name'] for r in runs] == ['toy_base__seed0', 'toy_base__seed1',
                                          'toy_trained__seed0', 'toy_trained__seed1']
    summary = {r['name']: r for r in json.load(open(osp.join(root, 'ablation_summary.json')))}
    by = {r['name']: r['metrics'] for r in runs}
    for name in ('toy_base', 'toy_trained'):
        vals = [by[f'{name}__seed{s}']['miou'] for s in range(2)]
        assert vals[0] != vals[1]                      # the seeds differ
        assert summary[name]['miou'] == pytest.approx((vals[0] + vals[1]) / 2)
        assert summary[name]['miou_std'] == pytest.approx(abs(vals[0] - vals[1]) / math.sqrt(2))
    # the interval, recomputed from the runs' per-frame statistics by loops on the same draws
    tabs = {r['name']: load_frame_table(osp.join(root, r['name'], 'frame_stats.npz')) for r in runs}
    tokens = tabs['toy_base__seed0'].tokens
    assert len(tokens) == 12 and all(t.tokens == tokens for t in tabs.values())
    seeds, frames = bootstrap_draws(np.random.default_rng(0), 200, 2, len(tokens))

    def miou(tab, idx):
        h = [[0] * 18 for _ in range(18)]
        for f in idx:
            for g in range(18):
                for p in range(18):
                    h[g][p] += int(tab.table['hist'][f, 0, g, p])
        return _ref_miou(h)
    reps = []
    for r in range(200):
        d = 0.0
        for j in range(2):
            s, idx = int(seeds[r, j]), [int(f) for f in frames[r, j]]
            d += (miou(tabs[f'toy_trained__seed{s}'], idx) - miou(tabs[f'toy_base__seed{s}'], idx)) / 2
        reps.append(d)
    got = summary['toy_trained']['vs_baseline']['miou']
    assert got['diff'] == pytest.approx(summary['toy_trained']['miou'] - summary['toy_base']['miou'])
    assert got['lo'] == pytest.approx(_ref_percentile(reps, 2.5))
    assert got['hi'] == pytest.approx(_ref_percentile(reps, 97.5))
    assert got['verdict'] == verdict(got['lo'], got['hi'])
    md = open(osp.join(root, 'ablation.md')).read()
    assert f"{summary['toy_trained']['miou']:.2f} ± {summary['toy_trained']['miou_std']:.2f}" in md
    assert f"[{got['lo']:+.2f}, {got['hi']:+.2f}] | {got['verdict']}" in md
    assert open(osp.join(root, 'ablation.png'), 'rb').read(4) == b'\x89PNG'
    # --test-root: each trained run's last checkpoint tested on the held-out root, its own table
    held = json.load(open(osp.join(root, 'ablation_townB.json')))
    assert [r['name'] for r in held] == [r['name'] for r in runs]
    held_sum = {r['name']: r for r in json.load(open(osp.join(root, 'ablation_townB_summary.json')))}
    for r in held:
        assert r['status'] == 'ok' and r['test_root'] == str(town)
        assert r['load_from'].startswith(osp.join(root, r['name']))
        tab = load_frame_table(osp.join(root, r['name'], 'test_townB', 'frame_stats.npz'))
        assert tab.tokens == [f'toy{550 + i:03d}' for i in range(12)]     # the other root's samples
    for name in ('toy_base', 'toy_trained'):
        vals = [r['metrics']['miou'] for r in held if r['group'] == name]
        assert held_sum[name]['miou'] == pytest.approx(sum(vals) / 2)
        assert vals != [by[f'{name}__seed{s}']['miou'] for s in range(2)]  # not the validation numbers
    assert held_sum['toy_trained']['vs_baseline']['miou']['verdict'] in (BETTER, NOISE, WORSE)
    assert '±' in open(osp.join(root, 'ablation_townB.md')).read()


def test_seed_overrides_reach_a_collaboration_models_own_seed():
    """--seeds redraws a collaboration model's link/selection streams (model.collab.seed), unless
    the grid point fixes that seed itself; a config without collaboration gets no such key."""
    import os.path as osp

    from occ.analysis.ablate import protocol_options
    cfgs = osp.join(osp.dirname(osp.abspath(__file__)), '..', 'configs')
    collab = osp.join(cfgs, 'ablations', 'collab_common.py')
    opts = protocol_options({'config': collab, 'seed': 2, 'options': {}}, '/tmp/run')
    assert opts['model.collab.seed'] == '2' and opts['randomness.seed'] == '2'
    fixed = protocol_options({'config': collab, 'seed': 2, 'options': {'model.collab.seed': '7'}}, '/tmp/run')
    assert 'model.collab.seed' not in fixed
    plain = protocol_options({'config': osp.join(cfgs, 'occ_cpu_demo.py'), 'seed': 2, 'options': {}}, '/tmp/run')
    assert 'model.collab.seed' not in plain and plain['randomness.seed'] == '2'


def test_test_root_errors_before_any_run(tmp_path, capsys):
    """--test-root: a missing folder, or combined with --load-from, fails before anything trains."""
    from occ.analysis.ablate import main
    cfg = _toy_config(tmp_path / 'toy_base.py', 0.0)
    root = str(tmp_path / 'abl')
    assert main([cfg, '--work-root', root, '--test-root', str(tmp_path / 'nope')]) == 2
    assert 'nope: no such directory' in capsys.readouterr().err
    ckpt = tmp_path / 'w.pth'
    ckpt.write_bytes(b'')
    assert main([cfg, '--work-root', root, '--test-root', str(tmp_path), '--load-from', str(ckpt)]) == 2
    assert '--test-root tests the checkpoints this ablation trains' in capsys.readouterr().err
    import os
    assert not os.path.exists(root) or not os.listdir(root)
