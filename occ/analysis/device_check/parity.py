"""CUDA against CPU: bev_pool, the sparse head, RayIoU and the evaluator.

Each section first runs its CPU half (which also runs in ``--device cpu
--tiny``), then, when CUDA is usable, the same computation on CUDA, and
compares. Results carry ``cpu`` (what the CPU half measured) and
``cuda_vs_cpu`` (``status`` ok / failed / skipped with the reason, and the
largest differences). Tolerances are float32 round-off, relative to the
largest magnitude of the compared tensor (``REL_TOL``); integer outputs
(plans, ray labels, confusion counts) must be equal.
"""
from __future__ import annotations

import numpy as np

from occ.analysis.device_check.runner import SkipSection
from occ.geometry.grid import OCC3D_RANGE, OccGrid

REL_TOL = 1e-4          # float32, sums over up to thousands of terms, relative to max |reference|
DEPTH_TOL_M = 1e-6      # RayIoU hit depths are float64


def _no_cuda(ctx) -> dict | None:
    if ctx.cuda and ctx.device == 'cuda':
        return None
    why = 'no CUDA' if not ctx.cuda else '--device cpu'
    return {'status': 'skipped', 'reason': why}


def rel_err(a, b) -> float:
    """max |a - b| / max |b| (both moved to CPU float64); 0 for two empty tensors."""
    import torch
    a = a.detach().to('cpu', torch.float64)
    b = b.detach().to('cpu', torch.float64)
    if a.shape != b.shape:
        return float('inf')
    if b.numel() == 0:
        return 0.0
    scale = float(b.abs().max())
    return float((a - b).abs().max()) / max(scale, 1e-30)


# ------------------------------------------------------------------ bev_pool
def _bev_inputs(tiny: bool):
    import torch
    B, N, D, h, w, C = (1, 6, 12, 2, 6, 16) if tiny else (2, 6, 59, 16, 44, 80)
    grid = (50, 50, 4) if tiny else (200, 200, 16)
    g = torch.Generator().manual_seed(0)
    span = torch.tensor([90.0, 90.0, 8.0], dtype=torch.float64)
    geom = torch.rand(B, N, D, h, w, 3, generator=g, dtype=torch.float64) * span - span / 2   # some outside
    geom[:, :, 1] = geom[:, :, 0] + 0.01        # points of one pixel sharing a cell (merged non-zeros)
    depth = torch.rand(B, N, D, h, w, generator=g, dtype=torch.float64).softmax(2)
    feats = torch.randn(B, N, h, w, C, generator=g, dtype=torch.float64)
    return dict(B=B, N=N, D=D, h=h, w=w, C=C, grid=grid), geom.float(), depth, feats


def _pool(depth, feats, geom, grid, collapse_z, method, gout=None, seed=1):
    """Pooled output and the gradients of <out, gout> w.r.t. depth and feats."""
    import torch

    from occ.ops.bev_pool import bev_pool, build_bev_pool_plan
    depth = depth.detach().clone().requires_grad_()
    feats = feats.detach().clone().requires_grad_()
    plan = build_bev_pool_plan(geom, OCC3D_RANGE, grid, collapse_z=collapse_z)
    out = bev_pool(depth, feats, plan, method=method)
    if gout is None:
        g = torch.Generator().manual_seed(seed)
        gout = torch.randn(out.shape, generator=g, dtype=torch.float64)
    gd, gf = torch.autograd.grad((out * gout.to(out.device, out.dtype)).sum(), (depth, feats))
    return out.detach(), gd, gf, plan, gout


def _plans_equal(a, b) -> bool:
    keys = ('ranks_depth', 'slot', 'crow', 'col', 'row', 'crow_t', 'col_t', 'perm_t')
    return all(getattr(a, k).cpu().equal(getattr(b, k).cpu()) for k in keys) and a.out_shape == b.out_shape


def bev_pool_section(ctx) -> dict:
    sizes, geom, depth64, feats64 = _bev_inputs(ctx.opts.tiny)
    grid = sizes['grid']
    result = {'sizes': sizes, 'reference': 'float64 CPU spmm (tests/test_bev_pool.py checks it against '
                                            'a per-point loop)', 'rel_tol': REL_TOL}
    cpu_cases, cuda_cases, checks = [], [], {}
    refs = {}
    for collapse_z in (True, False):
        out, gd, gf, plan, gout = _pool(depth64, feats64, geom.double(), grid, collapse_z, 'spmm')
        refs[collapse_z] = (out, gd, gf, plan, gout)
    result['points_inside'] = int(refs[True][3].ranks_depth.numel())
    result['nnz'] = int(refs[True][3].nnz)

    def run(device):
        cases = []
        for collapse_z in (True, False):
            ref, rgd, rgf, rplan, gout = refs[collapse_z]
            for method in ('spmm', 'index_add'):
                out, gd, gf, plan, _ = _pool(depth64.float().to(device), feats64.float().to(device),
                                             geom.to(device), grid, collapse_z, method, gout)
                c = {'device': device, 'method': method, 'collapse_z': collapse_z,
                     'out_rel_err': rel_err(out, ref), 'grad_depth_rel_err': rel_err(gd, rgd),
                     'grad_feats_rel_err': rel_err(gf, rgf), 'plan_equal_to_cpu_float64_plan':
                     _plans_equal(plan, rplan)}
                c['pass'] = (max(c['out_rel_err'], c['grad_depth_rel_err'], c['grad_feats_rel_err']) <= REL_TOL
                             and c['plan_equal_to_cpu_float64_plan'])
                cases.append(c)
                if device == 'cuda':
                    import torch
                    torch.cuda.synchronize()
        return cases

    cpu_cases = run('cpu')
    checks['cpu_matches_reference'] = all(c['pass'] for c in cpu_cases)
    result['cpu'] = {'cases': cpu_cases}
    skip = _no_cuda(ctx)
    if skip:
        result['cuda_vs_cpu'] = skip
    else:
        cuda_cases = run('cuda')
        ok = all(c['pass'] for c in cuda_cases)
        checks['cuda_matches_reference'] = ok
        worst = max(max(c['out_rel_err'], c['grad_depth_rel_err'], c['grad_feats_rel_err']) for c in cuda_cases)
        result['cuda_vs_cpu'] = {'status': 'ok' if ok else 'failed', 'cases': cuda_cases,
                                 'worst_rel_err': worst}
    result['checks'] = checks
    ctx.log(f"cpu {'ok' if checks['cpu_matches_reference'] else 'FAILED'}; cuda: "
            f"{result['cuda_vs_cpu'].get('status')} {result['cuda_vs_cpu'].get('worst_rel_err', '')}")
    return result


# ------------------------------------------------------------------ sparse head
def _sparse_case(tiny: bool, kind: str):
    import torch
    grid = (16, 16, 8) if tiny else (100, 100, 8)
    B, C = 2, 8 if tiny else 32
    g = torch.Generator().manual_seed(2)
    bev = torch.randn(B, C, grid[0] // 2, grid[1] // 2, generator=g)
    sem = torch.full((B, *grid), 17, dtype=torch.uint8)
    sem[:, :, :, 0] = 11                                   # ground
    for _ in range(6 if tiny else 40):                     # boxes of random classes
        b = int(torch.randint(0, B, (1,), generator=g))
        x, y = (int(v) for v in torch.randint(0, grid[0] - 4, (2,), generator=g))
        z = int(torch.randint(1, grid[2] - 2, (1,), generator=g))
        sem[b, x:x + 3, y:y + 2, z:z + 2] = int(torch.randint(0, 17, (1,), generator=g))
    mask = torch.rand(sem.shape, generator=g) < 0.8
    kw = dict(keep_threshold=0.0, keep_gt_in_training=False) if kind == 'all_kept' else \
        dict(keep_threshold=1.0, keep_gt_in_training=True)    # GT-occupied + top-1 per sample
    return grid, C, bev, sem, mask, kw


def _sparse_run(head, bev, sem, mask, device):
    import torch
    head = head.to(device).train()
    head.zero_grad(set_to_none=True)
    bev = bev.to(device).requires_grad_()
    sem_d, mask_d = sem.to(device), mask.to(device)
    out = head(bev, voxel_semantics=sem_d, mask=mask_d)
    losses = head.loss(out, sem_d, mask_d)
    total = sum(losses.values())
    total.backward()
    idx = out['sparse'][0].long().cpu()
    order = np.lexsort(idx.numpy().T[::-1])             # compare sparse rows in (b, x, y, z) order
    return {'logits': out['logits'].detach().cpu(), 'indices': idx[order],
            'sparse_logits': out['sparse'][1].detach().cpu()[order],
            'losses': {k: float(v) for k, v in losses.items()},
            'grads': {n: p.grad.detach().cpu() for n, p in head.named_parameters() if p.grad is not None},
            'grad_bev': bev.grad.detach().cpu(), 'active': int(idx.shape[0]),
            'finite': bool(torch.isfinite(total).item())}


def sparse_head_section(ctx) -> dict:
    import torch
    from occ.ops.spconv_shim import require_spconv
    try:
        require_spconv('the sparse-head check')
    except ImportError as e:
        from occ.analysis.device_check.environment import not_carried
        why = [n['reason'] for n in not_carried() if n['package'].startswith('spconv')]
        raise SkipSection(f'spconv cannot load ({e})' + (f'; not carried: {why[0]}' if why else ''))
    from occ.models.heads.sparse_occ_head import SparseOccHead
    result = {'rel_tol': REL_TOL, 'cases': {}}
    checks = {}
    skip = _no_cuda(ctx)
    cuda_cases = {}
    for kind in ('all_kept', 'pruned'):
        grid, C, bev, sem, mask, kw = _sparse_case(ctx.opts.tiny, kind)
        def make_head():
            torch.manual_seed(0)            # the same initial weights on both devices
            return SparseOccHead(C, grid, channels=(32, 16, 16), num_convs=1, **kw)

        cpu = _sparse_run(make_head(), bev, sem, mask, 'cpu')
        case = {'grid': list(grid), 'active_voxels_cpu': cpu['active'], 'losses_cpu': cpu['losses'],
                'finite_cpu': cpu['finite']}
        checks[f'{kind}_cpu_finite'] = cpu['finite']
        if not skip:
            cu = _sparse_run(make_head(), bev, sem, mask, 'cuda')
            same_set = cu['indices'].shape == cpu['indices'].shape and bool(cu['indices'].equal(cpu['indices']))
            c = {'active_voxels_cuda': cu['active'], 'same_active_set': same_set}
            if same_set:
                c['logits_rel_err'] = rel_err(cu['sparse_logits'], cpu['sparse_logits'])
                c['loss_rel_err'] = max(abs(cu['losses'][k] - v) / max(abs(v), 1e-12)
                                        for k, v in cpu['losses'].items())
                c['grad_bev_rel_err'] = rel_err(cu['grad_bev'], cpu['grad_bev'])
                c['grad_params_worst_rel_err'] = max(rel_err(cu['grads'][n], g) for n, g in cpu['grads'].items())
                c['pass'] = max(c['logits_rel_err'], c['loss_rel_err'], c['grad_bev_rel_err'],
                                c['grad_params_worst_rel_err']) <= 10 * REL_TOL
            else:
                c['pass'] = False
            cuda_cases[kind] = c
            checks[f'{kind}_cuda_matches_cpu'] = c['pass']
        result['cases'][kind] = case
    result['cuda_vs_cpu'] = skip or {'status': 'ok' if all(c['pass'] for c in cuda_cases.values()) else 'failed',
                                     'cases': cuda_cases}
    result['checks'] = checks
    return result


# ------------------------------------------------------------------ RayIoU
def _eval_frames(ctx, max_frames: int) -> list:
    """(info, labels) of the first ``max_frames`` evaluation samples of the world."""
    import os.path as osp

    from occ.data.infos import InfoFile
    from occ.data.occ3d_io import load_occ3d_labels
    infos = InfoFile.read(ctx.world['eval_info'], require=('token', 'occ_path')).infos[:max_frames]
    return [(i, load_occ3d_labels(osp.join(ctx.world['root'], i['occ_path']))) for i in infos]


def _label_grid(ctx, shape) -> OccGrid:
    grid = OccGrid.from_voxel(ctx.world['voxel'], OCC3D_RANGE)
    if tuple(grid.shape) != tuple(shape):
        raise ValueError(f"labels of shape {tuple(shape)} are not the world's {ctx.world['voxel']} m grid {grid.shape}")
    return grid


def _noisy_prediction(gt: np.ndarray, seed: int) -> np.ndarray:
    """GT shifted by 1-2 voxels with 2 % label noise: realistic errors, realistic free space."""
    rng = np.random.default_rng(seed)
    pred = np.roll(gt, (int(rng.integers(1, 3)), int(rng.integers(-2, 3))), axis=(0, 1)).copy()
    noise = rng.random(gt.shape) < 0.02
    pred[noise] = rng.integers(0, 18, int(noise.sum()))
    return pred


def ray_iou_section(ctx) -> dict:
    import torch

    from occ.evaluation.origins import origins_from_infos
    from occ.evaluation.ray_iou import RayCaster, RayIoUAccumulator, lidar_ray_directions
    frames = _eval_frames(ctx, 1 if ctx.opts.tiny else 4)
    max_origins = 2 if ctx.opts.tiny else 8
    shape = frames[0][1]['semantics'].shape
    grid = _label_grid(ctx, shape)
    origins = origins_from_infos([f[0] for f in frames], grid, max_origins)
    dirs = lidar_ray_directions()
    skip = _no_cuda(ctx)
    cpu_acc, cuda_acc = RayIoUAccumulator(), RayIoUAccumulator()
    per_frame, checks = [], {}
    for k, (info, labels) in enumerate(frames):
        gt = labels['semantics']
        pred = _noisy_prediction(gt, k)
        o = origins[info['token']]
        (gl, gd), (pl, pd) = RayCaster(o, dirs, grid, 'cpu').cast(gt, pred)
        cpu_acc.add_counts(RayIoUAccumulator.frame_counts(pred, gt, RayCaster(o, dirs, grid, 'cpu')))
        f = {'token': info['token'], 'origins': int(len(o)), 'rays': int(gl.numel()),
             'gt_hits_cpu': int((gl != 17).sum())}
        if not skip:
            (cgl, cgd), (cpl, cpd) = RayCaster(o, dirs, grid, 'cuda').cast(
                torch.as_tensor(gt, device='cuda'), torch.as_tensor(pred, device='cuda'))
            cgl, cgd, cpl, cpd = (t.cpu() for t in (cgl, cgd, cpl, cpd))
            f['label_mismatches'] = int((cgl != gl).sum() + (cpl != pl).sum())
            hit = (gl != 17) & (cgl == gl)
            phit = (pl != 17) & (cpl == pl)
            f['max_depth_diff_m'] = float(max((cgd[hit] - gd[hit]).abs().max() if hit.any() else 0.0,
                                              (cpd[phit] - pd[phit]).abs().max() if phit.any() else 0.0))
            cuda_acc.add_counts(RayIoUAccumulator.frame_counts(
                torch.as_tensor(pred, device='cuda'), torch.as_tensor(gt, device='cuda'),
                RayCaster(o, dirs, grid, 'cuda')))
        per_frame.append(f)
    m = cpu_acc.metrics()
    result = {'frames': per_frame, 'grid': list(shape),
              'cpu': {'ray_iou': m['ray_iou'], **{k: v for k, v in m.items() if k.startswith('ray_iou@')}}}
    checks['cpu_ray_iou_defined'] = bool(np.isfinite(m['ray_iou']))
    if skip:
        result['cuda_vs_cpu'] = skip
    else:
        mc = cuda_acc.metrics()
        counts_equal = (np.array_equal(cpu_acc.gt_cnt, cuda_acc.gt_cnt)
                        and np.array_equal(cpu_acc.pred_cnt, cuda_acc.pred_cnt)
                        and np.array_equal(cpu_acc.tp, cuda_acc.tp))
        mism = sum(f['label_mismatches'] for f in per_frame)
        depth = max(f['max_depth_diff_m'] for f in per_frame)
        ok = counts_equal and mism == 0 and depth <= DEPTH_TOL_M
        checks['cuda_matches_cpu'] = ok
        result['cuda_vs_cpu'] = {'status': 'ok' if ok else 'failed', 'counts_equal': counts_equal,
                                 'label_mismatches': mism, 'max_depth_diff_m': depth,
                                 'ray_iou_cuda': mc['ray_iou'], 'ray_iou_cpu': m['ray_iou']}
    result['checks'] = checks
    ctx.log(f"RayIoU cpu {m['ray_iou']:.4f}; cuda: {result['cuda_vs_cpu']}")
    return result


# ------------------------------------------------------------------ evaluator
def _close(a, b, tol=1e-9) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, (int, float, np.floating, np.integer)) and isinstance(b, (int, float, np.floating, np.integer)):
        if np.isnan(a) and np.isnan(b):
            return True
        return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(a)))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=tol, atol=tol, equal_nan=True)
    return a == b


def _headline(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if isinstance(v, (int, float)) or v is None}


def evaluator_section(ctx) -> dict:
    import torch

    from occ.evaluation.evaluator import OccEvaluator
    from occ.evaluation.origins import origins_from_infos
    frames = _eval_frames(ctx, 2 if ctx.opts.tiny else 4)
    grid = _label_grid(ctx, frames[0][1]['semantics'].shape)
    origins = origins_from_infos([f[0] for f in frames], grid, 2 if ctx.opts.tiny else 8)
    skip = _no_cuda(ctx)
    cpu_ev = OccEvaluator(ray_iou=True, ray_device='cpu')
    cuda_ev = None if skip else OccEvaluator(ray_iou=True, ray_device='cuda')
    for k, (info, labels) in enumerate(frames):
        gt, pred = labels['semantics'], _noisy_prediction(labels['semantics'], 100 + k)
        o = origins[info['token']]
        cpu_ev.add_result(cpu_ev.frame_result(pred, gt, labels['mask_camera'], labels['mask_lidar'], origins=o))
        if cuda_ev is not None:   # inputs as CUDA tensors: the evaluator's tensor path too
            t = {n: torch.as_tensor(a, device='cuda') for n, a in
                 dict(pred=pred, gt=gt, mc=labels['mask_camera'], ml=labels['mask_lidar']).items()}
            cuda_ev.add_result(cuda_ev.frame_result(t['pred'], t['gt'], t['mc'], t['ml'], origins=o))
    s_cpu = cpu_ev.summary()
    result = {'frames': len(frames), 'cpu': _headline(s_cpu)}
    checks = {'cpu_summary_has_miou': any('miou' in k.lower() for k in s_cpu)}
    if skip:
        result['cuda_vs_cpu'] = skip
    else:
        s_cuda = cuda_ev.summary()
        same = _close(s_cpu, s_cuda)
        checks['cuda_matches_cpu'] = same
        result['cuda_vs_cpu'] = {'status': 'ok' if same else 'failed', 'summary_equal': same,
                                 'cuda': _headline(s_cuda)}
    result['checks'] = checks
    ctx.log(f"evaluator cpu {result['cpu']}; cuda: {result['cuda_vs_cpu'].get('status')}")
    return result
