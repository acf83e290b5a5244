"""TemporalFusion inside OccNet: training with history, streaming == recomputed history."""
import math
import os

import pytest
import torch
from mmengine.config import Config

from occ.registry import MODELS
from occ.geometry import planar_pose

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
H, W, N_CAM = 64, 176, 6


def _pose(x, y, yaw):
    return planar_pose(x, y, yaw)


def _rig():
    """Six outward-looking pinhole cameras (camera z forward, x right, y down)."""
    intr = torch.tensor([[80.0, 0, W / 2], [0, 80.0, H / 2], [0, 0, 1]])
    cams = []
    for yaw in (55, 0, -55, 110, 180, -110):
        a = math.radians(yaw)
        fwd = torch.tensor([math.cos(a), math.sin(a), 0.0])
        right = torch.tensor([math.sin(a), -math.cos(a), 0.0])
        down = torch.tensor([0.0, 0.0, -1.0])
        m = torch.eye(4)
        m[:3, :3] = torch.stack([right, down, fwd], 1)
        m[:3, 3] = torch.tensor([1.0, 0.0, 1.6])
        cams.append(m)
    return intr.expand(N_CAM, 3, 3), torch.stack(cams)


def _frames(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    intr, cam2ego = _rig()
    frames = []
    for k in range(n):
        frames.append(dict(imgs=torch.randn(N_CAM, 3, H, W, generator=g), intrinsics=intr.clone(),
                           cam2ego=cam2ego.clone(), img_aug=torch.eye(4).expand(N_CAM, 4, 4).clone(),
                           ego2global=_pose(300.0 + 3.0 * k, 100.0 + 0.5 * k, 0.1 * k),
                           bev_aug=_pose(0.0, 0.0, 0.2) @ torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0]))))
    return frames


def _batch(frames, k, t):
    keys = ('imgs', 'intrinsics', 'cam2ego', 'img_aug', 'ego2global', 'bev_aug')
    b = {key: frames[k][key][None] for key in keys}
    idx = [k - t + i for i in range(t)]
    b['history'] = {key: torch.stack([frames[max(i, 0)][key] for i in idx])[None] for key in keys}
    b['history']['valid'] = torch.tensor([[i >= 0 for i in idx]])
    b['scene_token'] = ['scene-a']
    b['frame_idx'] = torch.tensor([k])
    b['sample_token'] = [f'tok{k}']
    return b


def _model(fusion, t):
    cfg = Config.fromfile(os.path.join(REPO, 'configs/_base_/models/lss_dense.py'))
    model_cfg = cfg.model.to_dict()
    model_cfg['temporal'] = dict(type='TemporalFusion', fusion=dict(type=fusion, channels=64), num_history=t,
                                 pc_range=[-40.0, -40.0, -1.0, 40.0, 40.0, 5.4])
    model_cfg['depth_loss_weight'] = 0.0
    torch.manual_seed(0)
    return MODELS.build(model_cfg)


@pytest.mark.slow
# One fusion through the real encoder is enough here: every fusion's streaming
# equivalence is covered on random maps in test_temporal_fusion.py.
@pytest.mark.parametrize('fusion', ['ConcatConvFusion'])
def test_occnet_streaming_equals_recomputed_history(fusion):
    torch.set_num_threads(1)
    t = 2
    frames = _frames(3)
    model = _model(fusion, t)
    # one training step with history: the temporal parameters receive gradients
    model.train()
    b = _batch(frames, 2, t)
    b['voxel_semantics'] = torch.randint(0, 18, (1, 100, 100, 8), dtype=torch.uint8)
    b['mask_camera'] = torch.ones(1, 100, 100, 8, dtype=torch.uint8)
    losses = model(b, mode='loss')
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    grads = [p.grad for p in model.temporal.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0

    model.eval()
    streamed = []
    with torch.no_grad():
        model.reset_temporal_state()
        for k in range(3):
            sb = _batch(frames, k, t)
            del sb['history']                 # streaming never reads it
            streamed.append(model(sb, mode='tensor')['logits'])
        model.temporal.streaming = False
        for k in range(3):
            recomputed = model(_batch(frames, k, t), mode='tensor')['logits']
            assert torch.allclose(streamed[k], recomputed, atol=1e-4), k
    assert not torch.allclose(streamed[2], streamed[1])
