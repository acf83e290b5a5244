"""spconv on CPU through occ.ops.spconv_shim, checked against dense conv3d."""
import pytest
import torch
import torch.nn.functional as F

from occ.ops import spconv_shim

spconv = pytest.importorskip('spconv.pytorch')


def _random_active(shape, n, batch, gen):
    """n distinct active voxels per batch item -> int32 indices [M, 4] (b, x, y, z)."""
    rows = []
    total = shape[0] * shape[1] * shape[2]
    for b in range(batch):
        flat = torch.randperm(total, generator=gen)[:n]
        x = flat // (shape[1] * shape[2])
        y = (flat // shape[2]) % shape[1]
        z = flat % shape[2]
        rows.append(torch.stack([torch.full_like(x, b), x, y, z], 1))
    return torch.cat(rows).int()


def _densify(feats, idx, batch, shape):
    """[M, C] features at idx -> dense [B, C, X, Y, Z] (zeros elsewhere)."""
    dense = feats.new_zeros(batch, *shape, feats.shape[1])
    i = idx.long()
    dense = dense.index_put((i[:, 0], i[:, 1], i[:, 2], i[:, 3]), feats)
    return dense.permute(0, 4, 1, 2, 3)


def _gather(dense, idx):
    i = idx.long()
    return dense.permute(0, 2, 3, 4, 1)[i[:, 0], i[:, 1], i[:, 2], i[:, 3]]


def _dense_weight(conv):
    # spconv 2.x stores weights as [out, kx, ky, kz, in]; F.conv3d wants [out, in, kx, ky, kz].
    return conv.weight.permute(0, 4, 1, 2, 3)


def test_shim_patches_every_bound_name():
    import sys
    assert spconv_shim.apply_spconv_shim()
    from spconv.pytorch import cppcore
    for name, mod in sys.modules.items():
        if name.startswith('spconv.') and hasattr(mod, 'get_current_stream'):
            assert mod.get_current_stream is cppcore.get_current_stream, name
    if not torch.cuda.is_available():
        assert cppcore.get_current_stream() == 0


@pytest.fixture(params=[1, 2], ids=['1thread', '2threads'])
def torch_threads(request):
    # spconv's CPU kernels race with several torch threads; the shim serialises them.
    prev = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(prev)


@pytest.mark.parametrize('kind', ['subm', 'sparse_stride2'])
def test_spconv_matches_dense_conv3d_forward_backward(kind, torch_threads):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    shape, batch, cin, cout = (6, 5, 4), 2, 3, 4
    idx = _random_active(shape, 25, batch, gen)
    feats = torch.randn(idx.shape[0], cin, generator=gen, dtype=torch.float64)
    if kind == 'subm':
        conv = spconv.SubMConv3d(cin, cout, 3, padding=1, bias=True, indice_key='t')
        stride = 1
    else:
        conv = spconv.SparseConv3d(cin, cout, 3, stride=2, padding=1, bias=True)
        stride = 2
    conv = conv.double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen, dtype=torch.float64))
        conv.bias.copy_(torch.randn(cout, generator=gen, dtype=torch.float64))

    f_sp = feats.clone().requires_grad_(True)
    out = conv(spconv.SparseConvTensor(f_sp, idx, list(shape), batch))

    f_dn = feats.clone().requires_grad_(True)
    w_dn = _dense_weight(conv).detach().clone().requires_grad_(True)
    dense_in = _densify(f_dn, idx, batch, shape)
    dense_out = F.conv3d(dense_in, w_dn, None, stride=stride, padding=1)
    ref = _gather(dense_out, out.indices) + conv.bias

    if kind == 'subm':
        assert torch.equal(out.indices, idx)
    else:
        # the output active set is exactly where the dense result can be non-zero
        support = F.conv3d(_densify(torch.ones(idx.shape[0], 1, dtype=torch.float64), idx, batch, shape),
                           torch.ones(1, 1, 3, 3, 3, dtype=torch.float64), stride=2, padding=1) > 0
        assert int(support.sum()) == out.indices.shape[0]
        assert bool(_gather(support.double(), out.indices).all())
    torch.testing.assert_close(out.features, ref, rtol=1e-9, atol=1e-9)

    g = torch.randn(out.features.shape, generator=gen, dtype=torch.float64)
    (out.features * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(f_sp.grad, f_dn.grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(conv.weight.grad.permute(0, 4, 1, 2, 3), w_dn.grad, rtol=1e-9, atol=1e-9)
