"""Voxel pooling of lifted camera features into BEV cells (lift-splat's "splat").

Every pixel ``p`` of every camera carries context features ``f_p`` [C] and a
depth distribution ``w_p`` [D]; the point ``(p, d)`` sits at the ego position
``geom[p, d]``. The pooled BEV feature of cell ``r`` is

    out[r] = sum_{(p, d) : cell(geom[p, d]) = r}  w_p[d] * f_p.

The geometry depends only on intrinsics, extrinsics and augmentation, so,
like BEVDet's ``bev_pool_v2``, the point-to-cell assignment is computed ONCE
per calibration (:func:`build_bev_pool_plan`, memoised by
:class:`BEVPoolPlanCache`) and re-used. Summing the depth weights of a pixel
that fall into the same cell turns the sum into a sparse-dense product

    out = M @ F,   M [cells, pixels] sparse (CSR), M[r, p] = sum_d w_p[d] [cell(p, d) = r],

so the [N, D, h, w, C] outer product is never materialised: the forward is
one CSR matmul, the backward one CSR matmul (for F) plus one sampled dense
product (SDDMM, for the non-zeros of M). Both are plain torch sparse ops that
run on CPU (MKL) and CUDA (cuSPARSE) alike. ``method='index_add'`` is a
simpler gather / ``index_add_`` path that does materialise the per-point
products; it is kept as a second, independent implementation and for
backends without sparse CSR support.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import torch


__all__ = ['BEVPoolPlan', 'build_bev_pool_plan', 'bev_pool', 'BEVPoolPlanCache']


@dataclass
class BEVPoolPlan:
    """Pre-computed point -> cell assignment for one geometry.

    ``P`` = points inside the grid, ``nnz`` = distinct (cell, pixel) pairs.

    Attributes:
        ranks_depth: long [P], flat index of each point into ``depth`` [B*N*D*h*w].
        slot: long [P], index of the (cell, pixel) non-zero each point adds to.
        crow, col: CSR structure of ``M`` [num_rows, num_pixels] (``col`` [nnz] = pixel;
            int32 when the sizes allow, as sparse kernels want).
        row: long [nnz], row (cell) of each non-zero.
        crow_t, col_t, perm_t: CSR structure of ``M^T`` and the permutation
            taking non-zeros of ``M`` (row-major) to those of ``M^T``.
        out_shape: (B, Zo, X, Y); Zo = 1 when z is collapsed.
        depth_shape: (B, N, D, h, w) the plan was built for.
    """
    ranks_depth: torch.Tensor
    slot: torch.Tensor
    crow: torch.Tensor
    col: torch.Tensor
    row: torch.Tensor
    crow_t: torch.Tensor
    col_t: torch.Tensor
    perm_t: torch.Tensor
    out_shape: tuple
    depth_shape: tuple
    collapse_z: bool

    @property
    def num_rows(self) -> int:
        b, zo, x, y = self.out_shape
        return b * zo * x * y

    @property
    def num_pixels(self) -> int:
        b, n, _, h, w = self.depth_shape
        return b * n * h * w

    @property
    def nnz(self) -> int:
        return int(self.col.numel())


def _csr(crow, col, values, shape):
    # torch warns that CSR support is "beta"; it is used here only through
    # mm / sampled_addmm, which are stable on CPU and CUDA.
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Sparse CSR tensor support is in beta')
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _csr_matmul(m: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    # addmm into a fresh buffer is several times faster on CPU than
    # torch.sparse.mm, which adds layout copies around the same kernel.
    # Autocast would cast addmm to half; the sums run over thousands of points, keep fp32.
    with torch.autocast(device_type=dense.device.type, enabled=False):
        out = dense.new_zeros(m.shape[0], dense.shape[1])
        return torch.addmm(out, m, dense, beta=0)


def _crow_from_sorted_rows(rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    """CSR row pointer [num_rows + 1] from sorted row indices."""
    crow = torch.zeros(num_rows + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=num_rows).cumsum(0)
    return crow


@torch.no_grad()
def build_bev_pool_plan(geom: torch.Tensor, pc_range: Sequence[float], grid_shape: Sequence[int],
                        collapse_z: bool = True) -> BEVPoolPlan:
    """Assign every lifted point to its grid cell, once per geometry.

    Args:
        geom: float [B, N, D, h, w, 3], ego-frame (x, y, z) of each frustum point, metres.
        pc_range: (x_min, y_min, z_min, x_max, y_max, z_max) of the grid.
        grid_shape: (X, Y, Z) cells; cell (i, j, k) covers [lo + i*v, lo + (i+1)*v).
        collapse_z: sum over height (output [B, C, X, Y]) instead of keeping Z.

    Points outside the grid are dropped.
    """
    if geom.dim() != 6 or geom.shape[-1] != 3:
        raise ValueError(f'geom must be [B, N, D, h, w, 3], got {tuple(geom.shape)}')
    B, N, D, h, w, _ = geom.shape
    X, Y, Z = (int(s) for s in grid_shape)
    lo = torch.tensor(pc_range[:3], dtype=torch.float64, device=geom.device)
    hi = torch.tensor(pc_range[3:], dtype=torch.float64, device=geom.device)
    size = (hi - lo) / torch.tensor([X, Y, Z], dtype=torch.float64, device=geom.device)
    idx = torch.floor((geom.double() - lo) / size).long()          # [B, N, D, h, w, 3]
    inside = ((idx >= 0) & (idx < torch.tensor([X, Y, Z], device=geom.device))).all(-1)

    # flat index of every point into depth [B, N, D, h, w] and into pixels [B, N, h, w]
    ranks_depth = torch.nonzero(inside.reshape(-1), as_tuple=False).squeeze(1)
    b = torch.arange(B, device=geom.device).view(B, 1, 1, 1, 1).expand(B, N, D, h, w)
    pix = torch.arange(B * N * h * w, device=geom.device).view(B, N, 1, h, w).expand(B, N, D, h, w)
    idx = idx.reshape(-1, 3)[ranks_depth]
    b = b.reshape(-1)[ranks_depth]
    pixel = pix.reshape(-1)[ranks_depth]
    zo = 1 if collapse_z else Z
    z = torch.zeros_like(idx[:, 2]) if collapse_z else idx[:, 2]
    row = ((b * zo + z) * X + idx[:, 0]) * Y + idx[:, 1]

    num_rows, num_pixels = B * zo * X * Y, B * N * h * w
    # points of the same pixel in the same cell share one non-zero; unique()
    # sorts by (row, pixel), which is exactly CSR order.
    keys, slot = torch.unique(row * num_pixels + pixel, return_inverse=True)
    nz_row, nz_col = keys // num_pixels, keys % num_pixels
    crow = _crow_from_sorted_rows(nz_row, num_rows)
    # transpose: order the non-zeros by (pixel, row)
    perm_t = torch.argsort(nz_col * num_rows + nz_row)
    crow_t = _crow_from_sorted_rows(nz_col[perm_t], num_pixels)
    col_t = nz_row[perm_t]
    # sparse kernels (MKL, cuSPARSE) take 32-bit indices; giving them int64 costs conversions per call
    if max(num_rows, num_pixels, nz_col.numel()) < 2 ** 31 - 1:
        crow, nz_col, crow_t, col_t = crow.int(), nz_col.int(), crow_t.int(), col_t.int()
    return BEVPoolPlan(ranks_depth=ranks_depth, slot=slot, crow=crow, col=nz_col, row=nz_row,
                       crow_t=crow_t, col_t=col_t, perm_t=perm_t,
                       out_shape=(B, zo, X, Y), depth_shape=(B, N, D, h, w), collapse_z=collapse_z)


class _CSRMatmul(torch.autograd.Function):
    """out = M @ F with M given by a fixed CSR structure and differentiable values."""

    @staticmethod
    def forward(ctx, values, feats, plan):
        ctx.plan = plan
        ctx.save_for_backward(values, feats)
        m = _csr(plan.crow, plan.col, values, (plan.num_rows, plan.num_pixels))
        return _csr_matmul(m, feats)

    @staticmethod
    def backward(ctx, grad_out):
        values, feats = ctx.saved_tensors
        plan = ctx.plan
        grad_out = grad_out.contiguous()
        grad_values = grad_feats = None
        if ctx.needs_input_grad[0]:
            # dL/dM[r, p] = <grad_out[r], F[p]> on the non-zeros only (SDDMM)
            pattern = _csr(plan.crow, plan.col, torch.zeros_like(values), (plan.num_rows, plan.num_pixels))
            with torch.autocast(device_type=feats.device.type, enabled=False):
                grad_values = torch.sparse.sampled_addmm(pattern, grad_out.to(feats.dtype),
                                                         feats.t().contiguous()).values()
        if ctx.needs_input_grad[1]:
            mt = _csr(plan.crow_t, plan.col_t, values[plan.perm_t], (plan.num_pixels, plan.num_rows))
            grad_feats = _csr_matmul(mt, grad_out.to(values.dtype))
        return grad_values, grad_feats, None


def bev_pool(depth: torch.Tensor, feats: torch.Tensor, plan: BEVPoolPlan,
             method: str = 'spmm') -> torch.Tensor:
    """Pool ``depth ⊗ feats`` into BEV cells with a pre-built plan.

    Args:
        depth: float [B, N, D, h, w], depth weights (e.g. softmax probabilities).
        feats: float [B, N, h, w, C], context features per pixel.
        plan: from :func:`build_bev_pool_plan` for the same (B, N, D, h, w).
        method: 'spmm' (CSR matmul, default) or 'index_add' (gather + index_add_).

    Returns:
        float [B, C, X, Y] if the plan collapses z, else [B, C, Z, X, Y], in
        channels-last memory format (the pooled rows are cell-major; convs take
        channels-last directly, so no transpose copy is made).
    """
    if tuple(depth.shape) != tuple(plan.depth_shape):
        raise ValueError(f'depth shape {tuple(depth.shape)} does not match the plan {plan.depth_shape}')
    B, N, D, h, w = plan.depth_shape
    if feats.shape[:4] != (B, N, h, w):
        raise ValueError(f'feats must be [B, N, h, w, C] = [{B}, {N}, {h}, {w}, C], got {tuple(feats.shape)}')
    C = feats.shape[-1]
    flat_feats = feats.reshape(B * N * h * w, C)
    flat_depth = depth.reshape(-1)
    if method == 'spmm':
        if plan.nnz == 0:
            out = flat_feats.new_zeros(plan.num_rows, C) + 0.0 * (flat_feats.sum() + flat_depth.sum())
        else:
            values = flat_depth.new_zeros(plan.nnz).index_add(0, plan.slot, flat_depth[plan.ranks_depth])
            out = _CSRMatmul.apply(values, flat_feats.contiguous(), plan)
    elif method == 'index_add':
        point_w = flat_depth[plan.ranks_depth]                         # [P]
        point_f = flat_feats[plan.col.long()[plan.slot]] * point_w[:, None]   # [P, C]
        out = flat_feats.new_zeros(plan.num_rows, C).index_add(0, plan.row[plan.slot], point_f)
    else:
        raise ValueError(f"unknown bev_pool method {method!r}; use 'spmm' or 'index_add'")
    _, zo, X, Y = plan.out_shape
    if plan.collapse_z:
        return out.view(B, X, Y, C).permute(0, 3, 1, 2)
    return out.view(B, zo, X, Y, C).permute(0, 4, 1, 2, 3)


class BEVPoolPlanCache:
    """Small LRU memo of :class:`BEVPoolPlan` keyed by the calibration tensors.

    The key is the exact bytes (plus shape and dtype) of the tensors that
    determine the geometry (intrinsics, cam2ego, img_aug, bev_aug, ...) and of
    any extra hashable values (grid, feature size), so a plan is re-used only
    for bit-identical geometry and rebuilt as soon as any of it changes.
    Hashing these few hundred numbers is negligible next to rebuilding the plan.
    """

    def __init__(self, maxsize: int = 8):
        self.maxsize = int(maxsize)
        self._plans: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def make_key(tensors: Sequence[torch.Tensor], extra: tuple = ()) -> tuple:
        parts = [tuple(extra)]
        for t in tensors:
            t = t.detach()
            parts.append((str(t.device), str(t.dtype), tuple(t.shape), t.cpu().contiguous().numpy().tobytes()))
        return tuple(parts)

    def get(self, tensors: Sequence[torch.Tensor], extra: tuple, build: Callable[[], BEVPoolPlan]) -> BEVPoolPlan:
        key = self.make_key(tensors, extra)
        plan = self._plans.get(key)
        if plan is not None:
            self.hits += 1
            self._plans.move_to_end(key)
            return plan
        self.misses += 1
        plan = build()
        self._plans[key] = plan
        while len(self._plans) > self.maxsize:
            self._plans.popitem(last=False)
        return plan

    def clear(self) -> None:
        self._plans.clear()

    def __len__(self) -> int:
        return len(self._plans)
