"""Full nuScenes-size lift-splat model (ResNet-50, 256x704, 200x200x16, D=59): one CPU training step."""
import os
import sys
import time
import warnings

import pytest
import torch
from mmengine.config import Config

import occ.models  # noqa: F401
from occ.registry import MODELS
from occ.utils.benchmark import peak_rss_mb, random_batch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))


@pytest.mark.slow
def test_r50_nuscenes_forward_backward_batch1_on_cpu(capsys):
    cfg = Config.fromfile(os.path.join(ROOT, 'configs/_base_/models/lss_dense_r50_nusc.py'))
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model = MODELS.build(cfg.model).train()
    assert model.view_transform.grid.shape == (200, 200, 16) and model.view_transform.num_bins == 59
    batch = random_batch(1, 6, (256, 704), grid_shape=(200, 200, 16), with_depth=True)
    rss0 = peak_rss_mb()
    t = time.perf_counter()
    losses = model(model.data_preprocessor(batch, True)['inputs'], mode='loss')
    sum(losses.values()).backward()
    dt = time.perf_counter() - t
    assert set(losses) == {'loss_weighted_ce', 'loss_depth'}
    assert all(torch.isfinite(v) for v in losses.values())
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    with capsys.disabled():
        print(f'\n[r50 nuScenes 256x704, 200x200x16, D=59] fwd+bwd batch 1 on CPU: {dt:.1f} s, '
              f'peak RSS {peak_rss_mb():.0f} MiB (before the step {rss0:.0f} MiB; '
              f'{torch.get_num_threads()} threads)', file=sys.stderr)
    # one training step at full nuScenes size fits a 16 GB laptop (measured ~3.6 GiB peak RSS)
    assert peak_rss_mb() < 12 * 1024
