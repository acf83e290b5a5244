"""CollabFusion inside a tiny real OccNet: neighbours encoded by the shared encoder, bytes logged."""
import math

import pytest
import torch

from occ.geometry import planar_pose
from occ.registry import MODELS

RNG = (-40.0, -40.0, -1.0, 40.0, 40.0, 5.4)
VOXEL = 8.0                    # 10 x 10 x 1 grid: tiny, the wiring is what is tested
C = 16


@pytest.fixture(scope='module')
def model():
    return _model('tome')    # built once: ResNet init is the slow part of these tests


def _model(strategy):
    import occ.models  # noqa: F401  (registers the parts)
    cfg = dict(
        type='OccNet',
        backbone=dict(type='ResNetBackbone', depth=18, out_indices=(2, 3)),
        neck=dict(type='FPNNeck', in_channels=[128, 256], out_channels=C, out_ids=(0,)),
        view_transform=dict(type='LiftSplat', in_channels=C, out_channels=C, depth_bins=(1.0, 41.0, 4.0),
                            downsample=8, pc_range=RNG, voxel_size=VOXEL),
        head=dict(type='DenseOccHead', in_channels=C, mid_channels=C, num_z=1,
                  losses=[dict(type='WeightedCELoss', class_weight=None)]),
        collab=dict(type='CollabFusion', embed_dims=C, pc_range=RNG, strategy=strategy,
                    budget_bytes=600, codec=dict(type='WireCodec', quant='int8'),
                    fusion=dict(type='LocalTokenAttention', radius=VOXEL, zero_init=False)),
        use_mask_camera=False,
    )
    torch.manual_seed(0)
    return MODELS.build(cfg)


def _pose(x, y, yaw_deg):
    return planar_pose(x, y, math.radians(yaw_deg))


def _batch(k=2):
    g = torch.Generator().manual_seed(0)
    n, h, w = 6, 32, 64
    intr = torch.tensor([[40.0, 0, w / 2], [0, 40.0, h / 2], [0, 0, 1]])
    cam2ego = torch.stack([_pose(0, 0, 0) for _ in range(n)])
    cam2ego[:, :3, :3] = torch.tensor([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])   # camera looks along +x
    frame = dict(imgs=torch.randn(1, n, 3, h, w, generator=g), intrinsics=intr.expand(1, n, 3, 3).clone(),
                 cam2ego=cam2ego[None], img_aug=torch.eye(4).expand(1, n, 4, 4).clone(),
                 ego2global=_pose(100, 200, 10)[None])
    nb = {key: torch.stack([v[0]] * k)[None].clone() for key, v in frame.items()}
    nb['imgs'] = torch.randn(1, k, n, 3, h, w, generator=g)
    nb['ego2global'] = torch.stack([_pose(110, 195, 40), _pose(90, 210, -20)][:k])[None]
    nb['valid'] = torch.tensor([[True, False]])[:, :k]
    nb['bev_aug'] = torch.eye(4).expand(1, k, 4, 4).clone()
    nb['agent_id'] = torch.tensor([[1, 2]])[:, :k]
    batch = dict(frame, bev_aug=torch.eye(4)[None], neighbors=nb, sample_token=['s0'],
                 voxel_semantics=torch.randint(0, 18, (1, 10, 10, 1), generator=g, dtype=torch.uint8))
    return batch


def test_occnet_with_collab_sends_bytes_and_trains(model):
    batch = _batch()
    model.train()
    losses = model(batch, mode='loss')
    assert 0 < float(losses['bytes_sent']) <= 600          # one valid neighbour, one message
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    total.backward()
    assert model.collab.fusion.q.weight.grad.abs().sum() > 0
    model.eval()
    pred = model(batch, mode='predict')
    assert pred[0]['semantics'].shape == (10, 10, 1) and 0 < pred[0]['bytes_sent'] <= 600


def test_occnet_ego_only_strategy_equals_no_collab_module(model):
    batch = _batch()
    model.eval()
    collab = model.collab
    try:
        collab.strategy = 'none'
        with torch.no_grad():
            a = model(batch, mode='tensor')
            model.collab = None
            b = model(batch, mode='tensor')
            model.collab = collab
            collab.strategy = 'tome'
            c = model(batch, mode='tensor')
    finally:
        model.collab, collab.strategy = collab, 'tome'
    assert torch.equal(a['logits'], b['logits']) and float(a['bytes_sent'].sum()) == 0
    assert not torch.equal(c['logits'], b['logits']) and float(c['bytes_sent'].sum()) > 0


def test_all_messages_dropped_equals_the_ego_only_forward_of_the_same_weights(model):
    """The control of every collaboration table: the same weights with every message lost."""
    from occ.models.collab import SimulatedLink
    batch = _batch()
    model.eval()
    collab, link = model.collab, model.collab.link
    try:
        with torch.no_grad():
            sent = model(batch, mode='tensor')
            collab.link = SimulatedLink(drop_prob=1.0)
            collab.reset_state()
            dropped = model(batch, mode='tensor')
            model.collab = None
            ego = model(batch, mode='tensor')
    finally:
        model.collab, collab.link = collab, link
        collab.reset_state()
    assert torch.equal(dropped['logits'], ego['logits']) and torch.equal(dropped['bev'], ego['bev'])
    assert float(dropped['bytes_sent'].sum()) == float(sent['bytes_sent'].sum()) > 0   # sent, then lost
    assert not torch.equal(sent['logits'], ego['logits'])      # the messages do change the output
