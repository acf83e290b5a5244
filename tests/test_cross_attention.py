"""Cross-attention view transform: deformable sampling, projection geometry, zero-hit queries."""
import math

import pytest
import torch

from occ.models.view_transforms.cross_attention import (CrossAttentionBEV, SpatialCrossAttention, pillar_points,
                                                        project_pillars)
from occ.ops.deform_sampling import multi_scale_deform_sample
from occ.registry import MODELS


def _bilinear(img, x, y):
    """Slow reference: img [D, h, w] at normalised (x, y) in [0, 1]; pixel centres at (i + 0.5) / size,
    zero outside."""
    d, h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(d, dtype=img.dtype)
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= xx < w and 0 <= yy < h:
                out = out + wx * wy * img[:, yy, xx]
    return out


def test_deform_sampling_matches_bilinear_loop():
    g = torch.Generator().manual_seed(0)
    values = [torch.randn(3, 2, 5, 7, generator=g, dtype=torch.float64),
              torch.randn(3, 2, 3, 4, generator=g, dtype=torch.float64)]
    loc = torch.rand(3, 4, 2, 3, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2   # some outside the map
    w = torch.rand(3, 4, 2, 3, generator=g, dtype=torch.float64)
    out = multi_scale_deform_sample(values, loc, w)
    assert out.shape == (3, 4, 2)
    for gi in range(3):
        for qi in range(4):
            ref = sum(w[gi, qi, l, p] * _bilinear(values[l][gi], float(loc[gi, qi, l, p, 0]), float(loc[gi, qi, l, p, 1]))
                      for l in range(2) for p in range(3))
            torch.testing.assert_close(out[gi, qi], ref, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------ geometry
K = torch.tensor([[150., 0, 176], [0, 150, 64], [0, 0, 1]])


def _cam2ego(yaw_deg, pos=(1.0, 0.0, 1.5)):
    """Camera (x right, y down, z forward) looking along ego yaw (x forward, y left, z up)."""
    base = torch.tensor([[0., 0, 1], [-1, 0, 0], [0, -1, 0]])      # cam z -> ego x, cam x -> -y, cam y -> -z
    a = math.radians(yaw_deg)
    rz = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    T = torch.eye(4)
    T[:3, :3] = rz @ base
    T[:3, 3] = torch.tensor(pos)
    return T


def test_projection_lands_at_the_right_pixel_with_img_and_bev_aug():
    # ego (11, -2, 0.5) is (x=2, y=1, z=10) in the camera: u = 150*0.2 + 176 = 206, v = 150*0.1 + 64 = 79
    pts = torch.tensor([[[11.0, -2.0, 0.5]], [[-9.0, -2.0, 0.5]], [[11.0, -30.0, 0.5]]])   # [Q=3, Z=1, 3]
    batch = dict(intrinsics=K[None, None], cam2ego=_cam2ego(0)[None, None], img_aug=torch.eye(4)[None, None])
    loc, valid = project_pillars(pts, batch, (128, 352))
    torch.testing.assert_close(loc[0, 0, 0, 0], torch.tensor([206.5 / 352, 79.5 / 128]))
    assert valid[0, 0, :, 0].tolist() == [True, False, False]     # in view, behind, outside the image
    # resize by 0.5 then crop 10 px left / 5 px top; labels flipped left-right (y -> -y)
    aug = torch.eye(4)
    aug[0, 0] = aug[1, 1] = 0.5
    aug[0, 2], aug[1, 2] = -10.0, -5.0
    flip = torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0]))
    batch = dict(intrinsics=K[None, None], cam2ego=_cam2ego(0)[None, None], img_aug=aug[None, None], bev_aug=flip[None])
    loc, valid = project_pillars(torch.tensor([[[11.0, 2.0, 0.5]]]), batch, (64, 176))
    u, v = 0.5 * 206 - 10, 0.5 * 79 - 5
    torch.testing.assert_close(loc[0, 0, 0, 0], torch.tensor([(u + 0.5) / 176, (v + 0.5) / 64]))
    assert bool(valid.all())


def test_projection_inverts_the_lift_splat_frustum():
    # points lifted by lift-splat's frustum land back on their pixel centres
    from occ.models.view_transforms.frustum import create_frustum, frustum_to_ego
    aug = torch.eye(4)
    aug[:2, :2] = torch.tensor([[0.9, -0.1], [0.1, 0.9]])
    aug[0, 2], aug[1, 2] = 3.0, -2.0
    intr, cam, img_aug = K[None, None], _cam2ego(40, (0.5, 0.3, 1.6))[None, None], aug[None, None]
    frustum = create_frustum((32, 64), 8, (2.0, 10.0, 4.0))                  # [D, h, w, 3] (u, v, d)
    ego = frustum_to_ego(frustum, intr, cam, img_aug)[0, 0]                 # [D, h, w, 3]
    loc, valid = project_pillars(ego.reshape(-1, 1, 3), dict(intrinsics=intr, cam2ego=cam, img_aug=img_aug), (32, 64))
    uv = frustum[..., :2].reshape(-1, 2)
    expected = torch.stack([(uv[:, 0] + 0.5) / 64, (uv[:, 1] + 0.5) / 32], -1)
    torch.testing.assert_close(loc[0, 0, :, 0], expected, rtol=1e-4, atol=1e-5)
    assert bool(valid.all())


def test_pillar_points_are_cell_centres():
    pts = pillar_points((-40, -40, -1, 40, 40, 5.4), (4, 2), 2)
    assert pts.shape == (8, 2, 3)
    q = 1 * 2 + 1                       # ix = 1, iy = 1
    torch.testing.assert_close(pts[q, 1], torch.tensor([-40 + 1.5 * 20, -40 + 1.5 * 40, -1 + 1.5 * 3.2]))


# ------------------------------------------------------------------ attention
def _naive_sca(sca, query, feats, ref_loc, ref_valid):
    """Slow reference of SpatialCrossAttention: loops over samples, cameras, queries, heads, points."""
    b, q, c = query.shape
    n = ref_loc.shape[1]
    H, L, Z, P = sca.num_heads, sca.num_levels, sca.num_z, sca.num_points
    d = c // H
    offsets = sca.sampling_offsets(query).view(b, q, H, L, Z, P, 2)
    weights = sca.attention_weights(query).view(b, q, H, L * Z * P).softmax(-1).view(b, q, H, L, Z, P)
    values = [sca.value_proj(f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) for f in feats]   # [B*N, C, h, w]
    out = torch.zeros(b, q, c, dtype=query.dtype)
    for bi in range(b):
        for qi in range(q):
            cams = [ni for ni in range(n) if bool(ref_valid[bi, ni, qi].any())]
            if not cams:
                continue
            acc = torch.zeros(c, dtype=query.dtype)
            for ni in cams:
                for h in range(H):
                    for li in range(L):
                        img = values[li][bi * n + ni, h * d:(h + 1) * d]
                        hh, ww = img.shape[-2:]
                        for z in range(Z):
                            for p in range(P):
                                x = ref_loc[bi, ni, qi, z, 0] + offsets[bi, qi, h, li, z, p, 0] / ww
                                y = ref_loc[bi, ni, qi, z, 1] + offsets[bi, qi, h, li, z, p, 1] / hh
                                acc[h * d:(h + 1) * d] += weights[bi, qi, h, li, z, p] * _bilinear(img, float(x), float(y))
            out[bi, qi] = sca.output_proj(acc / len(cams))
    return out


def _sca_case(seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    sca = SpatialCrossAttention(8, num_heads=2, num_levels=2, num_z=2, num_points=2, value_dims=6).double()
    with torch.no_grad():
        for p in sca.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.3)
    b, n, q = 2, 3, 5
    query = torch.randn(b, q, 8, generator=g, dtype=torch.float64)
    feats = [torch.randn(b * n, 6, 4, 6, generator=g, dtype=torch.float64),
             torch.randn(b * n, 6, 2, 3, generator=g, dtype=torch.float64)]
    ref_loc = torch.rand(b, n, q, 2, 2, generator=g, dtype=torch.float64)
    ref_valid = torch.rand(b, n, q, 2, generator=g) < 0.4
    ref_valid[0, :, 3] = False           # a query that hits no camera
    ref_valid[1, :, 0] = True            # one that hits all of them
    return sca, query, feats, ref_loc, ref_valid


def test_spatial_cross_attention_matches_naive_loop():
    sca, query, feats, ref_loc, ref_valid = _sca_case()
    with torch.no_grad():
        out = sca(query, feats, ref_loc, ref_valid)
        ref = _naive_sca(sca, query, feats, ref_loc, ref_valid)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    assert float(out[0, 3].abs().max()) == 0.0
    # gradients reach every parameter and the image features
    feats = [f.clone().requires_grad_(True) for f in feats]
    sca(query, feats, ref_loc, ref_valid).sum().backward()
    assert all(p.grad is not None for p in sca.parameters()) and all(f.grad is not None for f in feats)


def test_hit_count_normalisation():
    # the same image seen by two cameras at the same spot equals seeing it once
    sca, query, feats, ref_loc, ref_valid = _sca_case(seed=1)
    one = [f[:1] for f in feats]
    loc1, val1 = ref_loc[:1, :1], torch.ones_like(ref_valid[:1, :1])
    two = [torch.cat([f, f]) for f in one]
    loc2, val2 = torch.cat([loc1, loc1], 1), torch.cat([val1, val1], 1)
    with torch.no_grad():
        torch.testing.assert_close(sca(query[:1], two, loc2, val2), sca(query[:1], one, loc1, val1))


def _front_batch(b=1, img_hw=(32, 64)):
    """Six cameras all looking forward (narrow field of view): everything behind the ego is unseen."""
    intr = torch.tensor([[60., 0, img_hw[1] / 2], [0, 60, img_hw[0] / 2], [0, 0, 1]])
    cams = torch.stack([_cam2ego(0, (1.0, 0.2 * k, 1.5)) for k in range(6)])
    return dict(imgs=torch.zeros(b, 6, 3, *img_hw), intrinsics=intr.expand(b, 6, 3, 3),
                cam2ego=cams.expand(b, 6, 4, 4), img_aug=torch.eye(4).expand(b, 6, 4, 4))


def test_zero_hit_queries_follow_the_no_attention_path():
    torch.manual_seed(0)
    model = CrossAttentionBEV(in_channels=8, embed_dims=16, voxel_size=8.0, bev_downsample=1,
                              in_indices=(0, 1), num_layers=2, num_heads=2, num_z=2).eval()
    batch = _front_batch()
    feats = [torch.randn(6, 8, 4, 8), torch.randn(6, 8, 2, 4)]
    with torch.no_grad():
        q = model.encode(feats, batch)
        _, valid = project_pillars(model.ref_points, batch, (32, 64))
        hit = valid.any(-1).any(1)[0]                       # [Q]
        no_attn = model.bev_queries[None]
        for layer in model.layers:
            x = layer.norm1(no_attn)
            no_attn = layer.norm2(x + layer.ffn(x))
    assert bool(torch.isfinite(q).all())
    assert 0 < int(hit.sum()) < hit.numel()
    torch.testing.assert_close(q[0, ~hit], no_attn[0, ~hit])
    assert float((q[0, hit] - no_attn[0, hit]).abs().amax(-1).min()) > 1e-4


def test_forward_shapes_upsampling_registry_and_errors():
    torch.manual_seed(0)
    model = MODELS.build(dict(type='CrossAttentionBEV', in_channels=8, embed_dims=16, voxel_size=8.0,
                              bev_downsample=2, in_indices=(0,), num_layers=1, num_heads=2, num_z=2))
    batch = _front_batch(b=2)
    feats = [torch.randn(12, 8, 4, 8, requires_grad=True)]
    out = model(feats, batch)
    assert out['bev'].shape == (2, 16, 10, 10) and bool(torch.isfinite(out['bev']).all())
    out['bev'].square().mean().backward()
    assert feats[0].grad is not None and float(feats[0].grad.abs().sum()) > 0
    bad = dict(batch, imgs=torch.zeros(2, 5, 3, 32, 64))
    with pytest.raises(ValueError, match='cameras'):
        model(feats, bad)
    with pytest.raises(ValueError, match='divisible'):
        CrossAttentionBEV(in_channels=8, voxel_size=8.0, bev_downsample=3)


def test_a_query_reads_only_where_its_pillar_projects():
    # Gradient of one BEV query w.r.t. the image features is non-zero only in the
    # cameras its pillar hits, within the initial sampling radius (num_points
    # feature cells, plus the bilinear corners) of a projected pillar point.
    torch.manual_seed(0)
    model = CrossAttentionBEV(in_channels=8, embed_dims=16, voxel_size=8.0, bev_downsample=1,
                              in_indices=(0,), num_layers=1, num_heads=2, num_z=2, num_points=2)
    intr = torch.tensor([[40., 0, 32], [0, 40, 16], [0, 0, 1]])
    cams = torch.stack([_cam2ego(yaw) for yaw in (60, 0, -60, 120, 180, -120)])
    batch = dict(imgs=torch.zeros(1, 6, 3, 32, 64), intrinsics=intr.expand(1, 6, 3, 3),
                 cam2ego=cams[None], img_aug=torch.eye(4).expand(1, 6, 4, 4))
    feats = torch.randn(6, 8, 8, 16, requires_grad=True)           # stride 4
    loc, valid = project_pillars(model.ref_points, batch, (32, 64))
    hit = valid[0].any(-1)                                          # [N, Q]
    q = int(hit.sum(0).argmax())                                    # a query seen by the most cameras
    assert int(hit[:, q].sum()) >= 1
    model.encode([feats], batch)[0, q].sum().backward()
    g = feats.grad.abs().sum(1)                                     # [N, h, w]
    for n in range(6):
        if not bool(hit[n, q]):
            assert float(g[n].sum()) == 0.0
            continue
        assert float(g[n].sum()) > 0
        cells = (loc[0, n, q] * torch.tensor([16.0, 8.0]) - 0.5)     # pillar points in feature cells (x, y)
        ys, xs = torch.nonzero(g[n] > 0, as_tuple=True)
        d = torch.cdist(torch.stack([xs, ys], -1).float(), cells).min(-1).values
        assert float(d.max()) <= 2 + math.sqrt(2) + 1e-4       # offset radius + bilinear corners
