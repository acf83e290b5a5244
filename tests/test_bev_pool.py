"""occ.ops.bev_pool against a naive per-point scatter-sum reference."""
import pytest
import torch

from occ.ops.bev_pool import BEVPoolPlanCache, bev_pool, build_bev_pool_plan

PC_RANGE = (-4.0, -4.0, -1.0, 4.0, 4.0, 3.0)
GRID = (8, 6, 4)   # cells of 1.0 x 1.333 x 1.0 m


def naive_pool(depth, feats, geom, pc_range, grid, collapse_z):
    """Loop over every lifted point; independent of the plan machinery."""
    B, N, D, h, w = depth.shape
    C = feats.shape[-1]
    X, Y, Z = grid
    size = [(pc_range[3 + a] - pc_range[a]) / grid[a] for a in range(3)]
    out = torch.zeros(B, C, Z, X, Y, dtype=feats.dtype)
    contrib = []
    for b in range(B):
        for n in range(N):
            for d in range(D):
                for i in range(h):
                    for j in range(w):
                        p = geom[b, n, d, i, j].tolist()
                        c = [int(torch.floor(torch.tensor((p[a] - pc_range[a]) / size[a])).item()) for a in range(3)]
                        if all(0 <= c[a] < grid[a] for a in range(3)):
                            contrib.append((b, c[2], c[0], c[1], depth[b, n, d, i, j] * feats[b, n, i, j]))
    for b, z, x, y, v in contrib:
        out[b, :, z, x, y] = out[b, :, z, x, y] + v
    return out.sum(2) if collapse_z else out


def random_case(seed, B=2, N=2, D=3, h=2, w=3, C=4, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    # spread beyond the grid on every axis so some points fall outside
    geom = torch.rand(B, N, D, h, w, 3, generator=g, dtype=dtype)
    geom = geom * torch.tensor([10.0, 10.0, 6.0], dtype=dtype) - torch.tensor([5.0, 5.0, 2.0], dtype=dtype)
    # make several points share a cell and pixel (merged non-zeros)
    geom[:, :, 1] = geom[:, :, 0] + 0.01
    depth = torch.rand(B, N, D, h, w, generator=g, dtype=dtype).requires_grad_()
    feats = torch.randn(B, N, h, w, C, generator=g, dtype=dtype).requires_grad_()
    return geom, depth, feats


@pytest.mark.parametrize('method', ['spmm', 'index_add'])
@pytest.mark.parametrize('collapse_z', [True, False])
def test_values_and_grads_match_naive(method, collapse_z):
    geom, depth, feats = random_case(0)
    plan = build_bev_pool_plan(geom, PC_RANGE, GRID, collapse_z=collapse_z)
    out = bev_pool(depth, feats, plan, method=method)
    ref = naive_pool(depth, feats, geom, PC_RANGE, GRID, collapse_z)
    assert out.shape == ref.shape == ((2, 4, 8, 6) if collapse_z else (2, 4, 4, 8, 6))
    torch.testing.assert_close(out, ref)
    # some points are outside, some cells empty: the test case covers both
    assert plan.ranks_depth.numel() < depth.numel()
    assert (ref.abs().sum(1) == 0).any()
    gout = torch.randn_like(out)
    gd, gf = torch.autograd.grad((out * gout).sum(), (depth, feats))
    rd, rf = torch.autograd.grad((ref * gout).sum(), (depth, feats))
    torch.testing.assert_close(gd, rd)
    torch.testing.assert_close(gf, rf)
    # depth bins of points outside the grid get exactly zero gradient
    outside = torch.ones(depth.numel(), dtype=torch.bool)
    outside[plan.ranks_depth] = False
    assert (gd.reshape(-1)[outside] == 0).all()


def test_float32_gradcheck_free_equality():
    geom, depth, feats = random_case(1, dtype=torch.float32)
    plan = build_bev_pool_plan(geom, PC_RANGE, GRID)
    torch.testing.assert_close(bev_pool(depth, feats, plan),
                               naive_pool(depth, feats, geom, PC_RANGE, GRID, True), rtol=1e-5, atol=1e-5)


def test_gradcheck_spmm():
    geom, depth, feats = random_case(2, B=1, N=1, D=3, h=2, w=2, C=2)
    plan = build_bev_pool_plan(geom, PC_RANGE, GRID)
    assert torch.autograd.gradcheck(lambda d, f: bev_pool(d, f, plan), (depth, feats))


def test_all_points_outside_gives_zeros_and_zero_grads():
    geom, depth, feats = random_case(3)
    geom = geom + 100.0
    plan = build_bev_pool_plan(geom, PC_RANGE, GRID)
    assert plan.nnz == 0
    out = bev_pool(depth, feats, plan)
    assert out.shape == (2, 4, 8, 6) and (out == 0).all()
    out.sum().backward()
    assert (depth.grad == 0).all() and (feats.grad == 0).all()


def test_shape_mismatch_is_a_clear_error():
    geom, depth, feats = random_case(4)
    plan = build_bev_pool_plan(geom, PC_RANGE, GRID)
    with pytest.raises(ValueError, match='does not match the plan'):
        bev_pool(depth[:, :1], feats[:, :1], plan)
    with pytest.raises(ValueError, match='geom must be'):
        build_bev_pool_plan(geom[..., :2], PC_RANGE, GRID)


def test_cache_reuse_and_invalidation():
    cache = BEVPoolPlanCache(maxsize=2)
    geom, depth, feats = random_case(5)
    calib = torch.eye(4).repeat(2, 1, 1)
    builds = []

    def build(g):
        def _b():
            builds.append(1)
            return build_bev_pool_plan(g, PC_RANGE, GRID)
        return _b

    p1 = cache.get([calib], ('grid', GRID), build(geom))
    p2 = cache.get([calib.clone()], ('grid', GRID), build(geom))
    assert p1 is p2 and len(builds) == 1 and cache.hits == 1
    # same calibration, another grid -> another plan
    cache.get([calib], ('grid', (4, 4, 4)), build(geom))
    assert len(builds) == 2
    # geometry changes: a tiny change of one calibration number invalidates
    calib2 = calib.clone()
    calib2[0, 0, 3] += 1e-6
    geom2 = geom.clone()
    geom2[..., 0] += 0.5
    p3 = cache.get([calib2], ('grid', GRID), build(geom2))
    assert p3 is not p1 and len(builds) == 3
    torch.testing.assert_close(bev_pool(depth, feats, p3), naive_pool(depth, feats, geom2, PC_RANGE, GRID, True))
    # LRU bound
    assert len(cache) == 2


def test_autocast_keeps_pooling_in_float32():
    geom, depth, feats = random_case(6, dtype=torch.float32)
    plan = build_bev_pool_plan(geom, PC_RANGE, GRID)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = bev_pool(depth, feats, plan)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, naive_pool(depth, feats, geom, PC_RANGE, GRID, True), rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert depth.grad.dtype == torch.float32 and torch.isfinite(feats.grad).all()
