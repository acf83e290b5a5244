"""Training engine on a toy model/dataset: loss goes down, exact resume, atomic and
checked checkpoints, non-finite loss guard, prediction writer, schedule sync."""
from __future__ import annotations

import glob
import json
import os
import os.path as osp
import sys
import textwrap

import numpy as np
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from torch.utils.data import Dataset

import occ.registry  # noqa: F401
from occ.engine import CheckpointError, NonFiniteLossError, verify_checkpoint
from occ.engine.config import enable_amp, load_config, set_data_root, set_max_iters
from occ.registry import DATASETS, METRICS, MODELS

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))


def load_tool(name: str):
    """Import tools/<name>.py under a private module name (putting tools/ on sys.path
    would let tools/test.py shadow the standard library's ``test`` package)."""
    import importlib.util
    key = f'occ_engine_tools_{name}'
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, osp.join(ROOT, 'tools', f'{name}.py'))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
    return sys.modules[key]


train_tool = load_tool('train')
test_tool = load_tool('test')

GRID = (4, 4, 2)


@DATASETS.register_module(force=True)
class ToyOccDataset(Dataset):
    """Linearly separable 'voxels': x [8] -> class of argmax(W x) per voxel.

    Augmentation noise is a pure function of (seed, epoch, index), the
    contract EpochSyncSampler relies on for exact resume.
    """

    def __init__(self, num=24, seed=0, noise=0.05):
        g = np.random.default_rng(1234)
        self.x = g.normal(size=(num, 8)).astype(np.float32)
        w = g.normal(size=(8, 3)).astype(np.float32)
        self.y = (self.x @ w).argmax(1)
        self.seed, self.noise, self.epoch = seed, noise, 0
        self.epochs_seen = []

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.epochs_seen.append(epoch)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        g = np.random.default_rng([self.seed, self.epoch, i])
        x = self.x[i] + self.noise * g.normal(size=8).astype(np.float32)
        return {'inputs': {'x': torch.from_numpy(x), 'y': torch.tensor(int(self.y[i])),
                           'sample_token': f'tok{i:03d}'}}


@MODELS.register_module(force=True)
class ToyOccModel(BaseModel):
    """x [B, 8] -> logits [B, 3] broadcast to a tiny grid in predict mode.

    ``nan_at`` makes the forward return a NaN ``loss_bad`` at that (1-based) call.
    """

    def __init__(self, nan_at=None):
        super().__init__()
        self.fc = torch.nn.Linear(8, 3)
        self.nan_at, self.calls = nan_at, 0

    def forward(self, inputs, data_samples=None, mode='tensor'):
        logits = self.fc(inputs['x'])
        if mode == 'tensor':
            return {'logits': logits}
        if mode == 'loss':
            self.calls += 1
            out = {'loss_ce': torch.nn.functional.cross_entropy(logits, inputs['y'])}
            if self.nan_at is not None:
                bad = torch.tensor(float('nan')) if self.calls == self.nan_at else torch.tensor(0.)
                out['loss_bad'] = bad + 0 * logits.sum()
            return out
        pred = logits.argmax(1)
        return [{'sample_token': t, 'semantics': np.full(GRID, int(p), np.uint8),
                 'target': int(y)} for t, p, y in zip(inputs['sample_token'], pred, inputs['y'])]


@METRICS.register_module(force=True)
class ToyAccuracy(BaseMetric):
    def process(self, data_batch, data_samples):
        self.results += [float(s['semantics'][0, 0, 0] == s['target']) for s in data_samples]

    def compute_metrics(self, results):
        return {'acc': float(np.mean(results))}


def write_config(tmp_path, max_iters=20, ckpt_interval=5, extra='', name='toy_cfg.py'):
    lines = [
        f"_base_ = ['{ROOT}/configs/_base_/default_runtime.py',",
        f"          '{ROOT}/configs/_base_/schedules/cpu_demo.py']",
        "model = dict(type='ToyOccModel')",
        "train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,",
        "    sampler=dict(type='EpochSyncSampler', shuffle=True, seed=0),",
        "    collate_fn=dict(type='default_collate'), dataset=dict(type='ToyOccDataset', num=24))",
        "test_dataloader = dict(batch_size=4, num_workers=0,",
        "    sampler=dict(type='DefaultSampler', shuffle=False),",
        "    collate_fn=dict(type='default_collate'),",
        "    dataset=dict(type='ToyOccDataset', num=8, noise=0.0))",
        "test_evaluator = dict(type='ToyAccuracy')",
        "val_dataloader = test_dataloader",
        "val_evaluator = test_evaluator",
        f"train_cfg = dict(max_iters={max_iters}, val_interval=1000)",
        # the schedule written for this length, as every config does (warm-up a quarter of the run)
        "param_scheduler = [",
        f"    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end={max(1, max_iters // 4)}),",
        f"    dict(type='CosineAnnealingLR', by_epoch=False, begin={max(1, max_iters // 4)}, end={max_iters},",
        "         eta_min_ratio=0.01)]",
        "optim_wrapper = dict(optimizer=dict(lr=0.05))",
        "default_hooks = dict(logger=dict(interval=1),",
        f"    checkpoint=dict(interval={ckpt_interval}, max_keep_ckpts=2))",
        "vis_backends = [dict(type='LocalVisBackend')]",
        "visualizer = dict(vis_backends=vis_backends)",
    ]
    text = '\n'.join(lines) + '\n' + textwrap.dedent(extra)
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def scalars(work_dir):
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    rows = []
    for f in files:
        with open(f) as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    return rows


def state_of(ckpt):
    from occ.engine.checkpoint import load_state_dict
    return load_state_dict(ckpt)


def test_training_decreases_loss_and_writes_checkpoints(tmp_path):
    cfg = write_config(tmp_path, max_iters=30, ckpt_interval=10)
    wd = str(tmp_path / 'wd')
    assert train_tool.main([cfg, '--work-dir', wd]) == 0
    rows = [r for r in scalars(wd) if 'loss' in r]
    assert len(rows) == 30
    first = np.mean([r['loss'] for r in rows[:5]])
    last = np.mean([r['loss'] for r in rows[-5:]])
    assert last < 0.7 * first, (first, last)
    # lr: warm-up rises, cosine falls towards the end
    lrs = [r['lr'] for r in rows]
    assert lrs[0] < lrs[5] and lrs[-1] < 0.1 * max(lrs)
    # atomic hook: pointer names an existing, complete file; max_keep_ckpts=2; no temp files
    with open(osp.join(wd, 'last_checkpoint')) as f:
        last = f.read().strip()
    assert last == 'iter_30.pth'                 # relative to the work dir (a copy resumes from itself)
    verify_checkpoint(osp.join(wd, last))
    assert sorted(os.path.basename(p) for p in glob.glob(osp.join(wd, '*.pth'))) == \
        ['iter_20.pth', 'iter_30.pth']
    assert not [p for p in os.listdir(wd) if p.endswith('.tmp')]
    stats = json.load(open(osp.join(wd, 'train_stats.json')))
    assert stats['iters'] == 30 and stats['peak_rss_mb'] > 10 and stats['train_time_s'] > 0


class _Interrupt(Exception):
    pass


def test_resume_reproduces_uninterrupted_run(tmp_path):
    cfg = write_config(tmp_path, max_iters=12, ckpt_interval=3)
    straight = str(tmp_path / 'straight')
    assert train_tool.main([cfg, '--work-dir', straight]) == 0

    # Same config, killed right after the iteration-7 checkpoint... which does not
    # exist: the last complete checkpoint is iter_6, so the resumed run must redo 7.
    from mmengine.hooks import Hook

    from occ.registry import HOOKS

    @HOOKS.register_module(force=True)
    class KillAfter(Hook):
        priority = 'LOWEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 == 7:
                raise _Interrupt

    cfg_kill = write_config(tmp_path, max_iters=12, ckpt_interval=3,
                            extra="custom_hooks = [dict(type='NonFiniteLossHook'), "
                                  "dict(type='RunStatsHook'), dict(type='KillAfter')]\n", name='kill_cfg.py')
    broken = str(tmp_path / 'broken')
    with pytest.raises(_Interrupt):
        train_tool.main([cfg_kill, '--work-dir', broken])
    assert open(osp.join(broken, 'last_checkpoint')).read().strip().endswith('iter_6.pth')
    assert train_tool.main([cfg, '--work-dir', broken, '--resume']) == 0

    a = state_of(osp.join(straight, 'iter_12.pth'))
    b = state_of(osp.join(broken, 'iter_12.pth'))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the two runs also logged the same losses for iterations 7..12
    la = [r['loss'] for r in scalars(straight) if 'loss' in r][6:]
    lb = [r['loss'] for r in scalars(broken) if 'loss' in r][-6:]
    assert len(la) == 6 and la == lb


def test_corrupted_checkpoint_is_reported_by_name(tmp_path, capsys):
    cfg = write_config(tmp_path, max_iters=4, ckpt_interval=2)
    wd = str(tmp_path / 'wd')
    assert train_tool.main([cfg, '--work-dir', wd]) == 0
    ckpt = osp.join(wd, 'iter_4.pth')
    data = open(ckpt, 'rb').read()
    with open(ckpt, 'wb') as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match='iter_4.pth.*truncated'):
        verify_checkpoint(ckpt)
    # an explicit --resume CKPT and test.py name the file; auto-resume falls back to iter_2
    assert train_tool.main([cfg, '--work-dir', wd, '--resume', ckpt]) == 1
    err = capsys.readouterr().err
    assert ckpt in err and 'truncated' in err
    from occ.engine.checkpoint import resolve_last_checkpoint
    assert resolve_last_checkpoint(wd) == osp.join(wd, 'iter_2.pth')
    assert test_tool.main([cfg, ckpt, '--work-dir', wd]) == 1
    assert ckpt in capsys.readouterr().err
    # a flipped byte inside a member fails the CRC check
    good = osp.join(wd, 'iter_2.pth')
    raw = bytearray(open(good, 'rb').read())
    mid = raw.find(b'data.pkl') + 200
    raw[mid] ^= 0xFF
    open(good, 'wb').write(bytes(raw))
    with pytest.raises(CheckpointError, match='iter_2.pth'):
        verify_checkpoint(good)
    with pytest.raises(CheckpointError, match='not found'):
        verify_checkpoint(osp.join(wd, 'missing.pth'))


def test_dangling_last_checkpoint_pointer(tmp_path, capsys):
    cfg = write_config(tmp_path, max_iters=2, ckpt_interval=2)
    wd = tmp_path / 'wd'
    wd.mkdir()
    (wd / 'last_checkpoint').write_text(str(wd / 'iter_99.pth'))
    assert train_tool.main([cfg, '--work-dir', str(wd), '--resume']) == 1
    assert 'iter_99.pth, which does not exist' in capsys.readouterr().err


def test_non_finite_loss_names_iteration_and_term(tmp_path, capsys):
    cfg = write_config(tmp_path, max_iters=8, extra="model = dict(type='ToyOccModel', nan_at=5)\n")
    wd = str(tmp_path / 'wd')
    assert train_tool.main([cfg, '--work-dir', wd]) == 1
    err = capsys.readouterr().err
    assert 'iteration 5' in err and 'loss_bad=nan' in err and 'loss_ce' not in err
    with pytest.raises(NonFiniteLossError, match='iteration 3: loss_bad'):
        from occ.engine import OccRunner
        c = load_config(cfg, {'model.nan_at': 3}, str(tmp_path / 'wd2'))
        OccRunner.from_cfg(c).train()


def test_non_finite_loss_skip_keeps_weights(tmp_path):
    from mmengine.hooks import Hook

    from occ.engine import OccRunner
    from occ.registry import HOOKS

    seen = {}

    @HOOKS.register_module(force=True)
    class Snapshot(Hook):
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            seen[runner.iter + 1] = {k: v.clone() for k, v in runner.model.state_dict().items()}

    cfg = write_config(tmp_path, max_iters=6, extra=(
        "model = dict(type='ToyOccModel', nan_at=4)\n"
        "custom_hooks = [dict(type='NonFiniteLossHook', action='skip'), dict(type='Snapshot')]\n"))
    runner = OccRunner.from_cfg(load_config(cfg, None, str(tmp_path / 'wd')))
    runner.train()
    after = {k: v for k, v in runner.model.state_dict().items()}
    assert all(torch.isfinite(v).all() for v in after.values())
    # step 4 was skipped: weights before iteration 5 equal weights before iteration 4
    for k in seen[4]:
        assert torch.equal(seen[4][k], seen[5][k])
        assert not torch.equal(seen[3][k], seen[4][k])
    assert runner.iter == 6


def test_test_tool_writes_predictions_and_metrics(tmp_path, capsys):
    from occ.data.occ3d_io import load_prediction
    cfg = write_config(tmp_path, max_iters=30, ckpt_interval=30)
    wd = str(tmp_path / 'wd')
    assert train_tool.main([cfg, '--work-dir', wd]) == 0
    out, js = str(tmp_path / 'pred'), str(tmp_path / 'm.json')
    assert test_tool.main([cfg, osp.join(wd, 'iter_30.pth'), '--out', out, '--json', js,
                           '--work-dir', wd]) == 0
    files = sorted(os.listdir(out))
    assert files == [f'tok{i:03d}.npz' for i in range(8)]
    pred = load_prediction(osp.join(out, files[0]), GRID)
    assert pred['semantics'].dtype == np.uint8
    metrics = json.load(open(js))
    ds = ToyOccDataset(num=8, noise=0.0)
    from_files = np.mean([load_prediction(osp.join(out, f))['semantics'][0, 0, 0] == ds.y[i]
                          for i, f in enumerate(files)])
    assert metrics['acc'] == pytest.approx(from_files) and metrics['acc'] > 0.4
    assert 'acc' in capsys.readouterr().out


def test_cli_options_iters_amp_data_root(tmp_path):
    """--iters / --amp / --data-root (occ.engine.config) are explicit edits of a stock-loaded config."""
    from mmengine.config import Config
    path = write_config(tmp_path)
    stock = Config.fromfile(path)
    assert load_config(path).to_dict() == dict(stock.to_dict(), launcher='none', work_dir='work_dirs/toy_cfg')
    cfg = load_config(path, max_iters=40)         # warm-up min(warmup_iters = 50, 40 // 4)
    warm, cos = cfg.param_scheduler
    assert cfg.train_cfg.max_iters == 40 and (warm.end, cos.begin, cos.end) == (10, 10, 40)
    assert cfg.default_hooks.checkpoint.interval == 5
    set_max_iters(cfg, 3)
    assert cfg.default_hooks.checkpoint.interval == 3 and cfg.param_scheduler[1].end == 3
    # the stock override changes the length only; the schedule stays as written
    plain = load_config(path, {'train_cfg.max_iters': 40})
    assert plain.param_scheduler[1].end == stock.param_scheduler[1].end == 20
    with pytest.raises(ValueError, match='--iters must be positive'):
        set_max_iters(cfg, 0)
    assert stock.optim_wrapper.type == 'OptimWrapper'
    enable_amp(stock)
    assert stock.optim_wrapper.type == 'AmpOptimWrapper' and stock.optim_wrapper.loss_scale == 'dynamic'
    # --data-root: dataset roots and the files under them move; a path set elsewhere stays
    demo = Config.fromfile(osp.join(ROOT, 'configs', 'flashocc_r50_nusc.py'))
    demo.test_dataloader.dataset.info_file = '/elsewhere/infos.pkl'
    set_data_root(demo, 'data/other/')
    assert demo.data_root == 'data/other'
    assert demo.train_dataloader.dataset.data_root == 'data/other'
    assert demo.train_dataloader.dataset.info_file == 'data/other/occ_infos_train.pkl'
    assert demo.val_dataloader.dataset.info_file == 'data/other/occ_infos_val.pkl'
    assert demo.test_dataloader.dataset.info_file == '/elsewhere/infos.pkl'
    assert demo.val_evaluator.ann_file == 'data/other/occ_infos_val.pkl'
    with pytest.raises(ValueError, match='names a data_root'):
        set_data_root(Config.fromfile(path), 'data/other')
    # the CPU demo's class weights come from its training split's info file, which moves too
    cpu = Config.fromfile(osp.join(ROOT, 'configs', 'occ_cpu_demo.py'))
    ce = [loss for loss in cpu.model.head.losses if loss.type == 'WeightedCELoss'][0]
    assert ce.class_counts == cpu.train_dataloader.dataset.info_file
    set_data_root(cpu, 'data/other')
    ce = [loss for loss in cpu.model.head.losses if loss.type == 'WeightedCELoss'][0]
    assert ce.class_counts == 'data/other/occ_infos_train.pkl'


def test_sampler_forwards_epoch_to_dataset():
    from occ.engine import EpochSyncSampler
    ds = ToyOccDataset(num=6)
    s = EpochSyncSampler(ds, shuffle=True, seed=3)
    s.set_epoch(2)
    assert ds.epochs_seen == [0, 2] and ds.epoch == 2
    assert sorted(s) == list(range(6))


@pytest.mark.slow
def test_ddp_two_processes_gloo(tmp_path):
    """torchrun --nproc_per_node 2 tools/train.py CONFIG --launcher pytorch (CPU, gloo):
    checkpoints and stats are written (by rank 0) and the loss guard's per-iteration
    all-reduce does not hang."""
    import subprocess
    cfg = write_config(tmp_path, max_iters=6, ckpt_interval=3, extra=(
        "custom_imports = dict(imports=['test_engine'], allow_failed_imports=False)\n"
        "env_cfg = dict(dist_cfg=dict(backend='gloo'))\n"
        "model = dict(type='ToyOccModel', nan_at=None)\n"))
    wd = str(tmp_path / 'ddp')
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([osp.dirname(osp.abspath(__file__)), ROOT]))
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', '29577',
           osp.join(ROOT, 'tools', 'train.py'), cfg, '--work-dir', wd, '--launcher', 'pytorch']
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert open(osp.join(wd, 'last_checkpoint')).read().strip().endswith('iter_6.pth')
    verify_checkpoint(osp.join(wd, 'iter_6.pth'))
    assert json.load(open(osp.join(wd, 'train_stats.json')))['iters'] == 6
    assert not [p for p in os.listdir(wd) if p.endswith('.tmp')]


def test_load_state_dict_strips_ddp_prefix_and_names_bad_files(tmp_path):
    import torch

    from occ.engine.checkpoint import CheckpointError, load_state_dict
    w = torch.arange(3.0)
    torch.save({'state_dict': {'module.a.weight': w}, 'message_hub': {'x': 1}}, tmp_path / 'mm.pth')
    torch.save({'b': w}, tmp_path / 'bare.pth')
    assert list(load_state_dict(str(tmp_path / 'mm.pth'))) == ['a.weight']
    assert torch.equal(load_state_dict(str(tmp_path / 'bare.pth'))['b'], w)
    (tmp_path / 'cut.pth').write_bytes((tmp_path / 'mm.pth').read_bytes()[:50])
    with pytest.raises(CheckpointError, match='cut.pth'):
        load_state_dict(str(tmp_path / 'cut.pth'))
    torch.save([w], tmp_path / 'list.pth')
    with pytest.raises(CheckpointError, match='list.pth.*no state dict'):
        load_state_dict(str(tmp_path / 'list.pth'))
