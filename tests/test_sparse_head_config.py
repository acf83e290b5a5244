"""configs/_base_/models/lss_sparse.py builds an OccNet that trains and predicts on CPU."""
import math

import numpy as np
import pytest
import torch


def _batch(b=1, h=64, w=176, grid=(100, 100, 8)):
    K = torch.tensor([[80., 0, w / 2], [0, 80, h / 2], [0, 0, 1]])
    cams = []
    for yaw in (55, 0, -55, 110, 180, -110):
        a = math.radians(yaw)
        base = torch.tensor([[0., 0, 1], [-1, 0, 0], [0, -1, 0]])
        rz = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
        T = torch.eye(4)
        T[:3, :3] = rz @ base
        T[:3, 3] = torch.tensor([1.0, 0.0, 1.6])
        cams.append(T)
    sem = torch.full((b, *grid), 17, dtype=torch.uint8)
    sem[..., 0] = 11
    sem[:, 60:64, 48:52, 1:3] = 4
    g = torch.Generator().manual_seed(0)
    return dict(imgs=torch.randn(b, 6, 3, h, w, generator=g), intrinsics=K.expand(b, 6, 3, 3).clone(),
                cam2ego=torch.stack(cams)[None].expand(b, 6, 4, 4).clone(),
                img_aug=torch.eye(4).expand(b, 6, 4, 4).clone(), bev_aug=torch.eye(4).expand(b, 4, 4).clone(),
                ego2global=torch.eye(4).expand(b, 4, 4).clone(), voxel_semantics=sem,
                mask_camera=torch.ones_like(sem), mask_lidar=torch.ones_like(sem),
                depth=torch.rand(b, 6, h, w, generator=g) * 40, sample_token=['s'] * b)


def check_config_trains_and_predicts(path, expected_keys):
    from mmengine.config import Config

    import occ.models  # noqa: F401
    from occ.registry import MODELS
    cfg = Config.fromfile(path)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    batch = _batch()
    losses = model(batch, mode='loss')
    assert expected_keys | set(model.head.loss_names) <= set(losses)
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    assert torch.isfinite(total)
    total.backward()
    head_grads = [p.grad for p in model.head.parameters()]
    assert all(g is not None for g in head_grads)
    assert any(float(p.grad.abs().sum()) > 0 for p in model.backbone.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad():
        pred = model(batch, mode='predict')
    sem = pred[0]['semantics']
    assert sem.shape == (100, 100, 8) and sem.dtype == np.uint8 and int(sem.max()) <= 17
    return model


@pytest.mark.slow
@pytest.mark.filterwarnings('ignore::UserWarning')
def test_lss_sparse_config():
    pytest.importorskip('spconv.pytorch')
    model = check_config_trains_and_predicts(
        'configs/_base_/models/lss_sparse.py',
        {'loss_occ_l0', 'loss_occ_l1', 'loss_weighted_ce', 'loss_lovasz_softmax'})
    assert type(model.head).__name__ == 'SparseOccHead'
