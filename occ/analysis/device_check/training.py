"""Short training runs of a config under AMP: loss curve, iteration time, peak memory.

Each run builds the model afresh (random init, seed 0) and the optimiser from
the config's ``optim_wrapper`` with a constant learning rate (the config's
base lr; its warm-up would keep the first iterations near zero), then runs
``model.train_step`` -- exactly the Runner's inner loop: data preprocessor
(host-to-device copy), forward with the loss, backward, gradient clipping,
optimiser step -- on ``K`` batches read once from the training split and
cycled. Data loading (JPEG decode, augmentation) is outside the timed region.

Precisions: on CUDA ``AmpOptimWrapper`` with ``dtype`` bfloat16 or float16
(dynamic loss scale), the path ``amp=True`` configs take; on CPU fp32 and,
as a pre-flight of the autocast dtype paths, ``torch.autocast('cpu', bfloat16)``.

Iteration time: median over the iterations after the first ``warmup`` (cuDNN
autotuning, allocator growth, the BEV-pool plan build); the first iteration
is reported on its own. Peak memory: ``torch.cuda.max_memory_allocated`` /
``max_memory_reserved`` from model build to the end of the run (weights,
gradients, optimiser state, activations). The loss decreased when the mean
loss over the last cycle of the ``K`` batches is below the first cycle's.
"""
from __future__ import annotations

import contextlib
import copy
import math
import statistics
import time

from occ.analysis.device_check import check_configs
from occ.analysis.device_check.runner import SkipSection

WARMUP_ITERS = 5


def preload_batches(cfg, batch_size: int, num_batches: int, split: str = 'train') -> list:
    """``num_batches`` collated batches of ``batch_size`` from the config's dataset (CPU tensors)."""
    from mmengine.registry import DefaultScope

    from occ.data.collate import occ_collate
    from occ.registry import DATASETS
    loader = cfg.train_dataloader if split == 'train' else cfg.test_dataloader
    with DefaultScope.overwrite_default_scope('occ'):
        ds = DATASETS.build(copy.deepcopy(loader.dataset))
    n = min(num_batches, len(ds) // batch_size)
    if n < 1:
        raise SkipSection(f'the {split} split has {len(ds)} samples, fewer than batch size {batch_size}')
    return [occ_collate([ds[k * batch_size + i] for i in range(batch_size)]) for k in range(n)]


def build_model(cfg, device: str):
    import warnings

    import torch
    from mmengine.registry import DefaultScope

    from occ.registry import MODELS
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*no pretrained checkpoint.*')
        with DefaultScope.overwrite_default_scope('occ'):
            model = MODELS.build(copy.deepcopy(cfg.model))
    return model.to(device)


def optim_wrapper_cfg(cfg, device: str, precision: str) -> dict:
    """The config's optimiser, constant lr, in the wrapper that ``precision`` needs."""
    base = copy.deepcopy(cfg.optim_wrapper.to_dict() if hasattr(cfg.optim_wrapper, 'to_dict')
                         else dict(cfg.optim_wrapper))
    out = {'optimizer': base['optimizer']}
    if 'clip_grad' in base:
        out['clip_grad'] = base['clip_grad']
    if device == 'cuda' and precision in ('bf16', 'fp16'):
        out.update(type='AmpOptimWrapper', dtype='bfloat16' if precision == 'bf16' else 'float16',
                   loss_scale='dynamic')
    else:
        out['type'] = 'OptimWrapper'
    return out


def _item(v) -> float:
    return float(v.detach()) if hasattr(v, 'detach') else float(v)


def _sync(device: str) -> None:
    if device == 'cuda':
        import torch
        torch.cuda.synchronize()


def train_run(cfg, batches: list, device: str, precision: str, iters: int, deadline: float) -> dict:
    """One run; returns losses, timings, memory and the loss-decrease verdict."""
    import torch
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    from occ.utils.benchmark import peak_rss_mb
    bs = int(batches[0]['imgs'].shape[0])
    run = {'device': device, 'precision': precision, 'batch_size': bs, 'batches_cycled': len(batches),
           'iters_asked': iters}
    if device == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = build_model(cfg, device).train()
    ow_cfg = optim_wrapper_cfg(cfg, device, precision)
    with DefaultScope.overwrite_default_scope('occ'):
        optim = build_optim_wrapper(model, ow_cfg)
    run['optim_wrapper'] = ow_cfg['type'] + (f" ({ow_cfg['dtype']})" if 'dtype' in ow_cfg else '')
    run['lr'] = ow_cfg['optimizer'].get('lr')
    cpu_autocast = (torch.autocast('cpu', dtype=torch.bfloat16) if device == 'cpu' and precision == 'bf16'
                    else contextlib.nullcontext())
    losses, times, terms = [], [], {}
    truncated = False
    for i in range(iters):
        if time.time() > deadline:
            truncated = True
            break
        data = batches[i % len(batches)]
        _sync(device)
        t0 = time.perf_counter()
        with cpu_autocast:
            log_vars = model.train_step(data, optim)
        loss = _item(log_vars['loss'])          # a host sync, as the Runner's logger does
        _sync(device)
        times.append(time.perf_counter() - t0)
        losses.append(loss)
        for k, v in log_vars.items():
            if k != 'loss':
                terms.setdefault(k, []).append(_item(v))
    run.update(iters_done=len(losses), truncated=truncated, losses=losses,
               loss_terms_last={k: v[-1] for k, v in terms.items()})
    run['all_finite'] = bool(losses) and all(math.isfinite(v) for v in losses)
    k = len(batches)
    if len(losses) >= 2 * k:
        first, last = statistics.fmean(losses[:k]), statistics.fmean(losses[-k:])
        run.update(loss_first_cycle=first, loss_last_cycle=last, loss_decreased=last < first)
    else:
        run['loss_decreased'] = None            # fewer than two cycles: not judged
    if times:
        steady = times[WARMUP_ITERS:] if len(times) > WARMUP_ITERS + 2 else times[1:] or times
        run.update(first_iter_s=times[0], iter_s_median=statistics.median(steady),
                   iter_s_mean=statistics.fmean(steady), timed_iters=len(steady),
                   samples_per_s=bs / statistics.median(steady))
    if device == 'cuda':
        run['peak_allocated_mib'] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
        run['peak_reserved_mib'] = round(torch.cuda.max_memory_reserved() / 2 ** 20, 1)
        scaler = getattr(optim, 'loss_scaler', None)
        if scaler is not None:
            run['final_loss_scale'] = float(scaler.get_scale())
    else:
        run['peak_rss_mib_process'] = round(peak_rss_mb(), 1)
    del model, optim
    return run


def config_section(ctx, name: str) -> dict:
    """Every (precision, batch size) run of config ``name``; checks: finite losses, loss decreased."""
    cfg = check_configs.load(ctx, name)
    precisions = ('bf16', 'fp16') if ctx.device == 'cuda' else ('fp32', 'bf16')
    batch_sizes = (1, 2) if ctx.opts.tiny else (1, 4)
    num_batches = 1 if ctx.opts.tiny else 4
    result = {'config': check_configs.CONFIGS[name], 'tiny': ctx.opts.tiny,
              'img_size': list(cfg.train_dataloader.dataset.img_size),
              'grid_voxel': cfg.train_dataloader.dataset.grid_voxel,
              'what_is_timed': ('model.train_step on a preloaded batch: host-to-device copy, forward, loss, '
                                'backward, clipping, optimiser step; data loading excluded'),
              'warmup_iters_excluded': WARMUP_ITERS, 'runs': []}
    if ctx.device == 'cpu':
        result['note'] = ('CPU: fp32 OptimWrapper and bf16 torch.autocast (AmpOptimWrapper needs CUDA); '
                          'peak memory is the process RSS, cumulative over runs')
    checks = {}
    batches = {}
    for bs in batch_sizes:
        t0 = time.time()
        batches[bs] = preload_batches(cfg, bs, num_batches)
        ctx.log(f'{name}: {len(batches[bs])} batch(es) of {bs} read in {time.time() - t0:.1f} s')
    runs = [(bs, prec) for bs in batch_sizes for prec in precisions]
    if ctx.opts.tiny:                   # CPU bf16 is slow without native support: one run of it is enough
        runs = [(bs, prec) for bs, prec in runs if prec != 'bf16' or bs == 1]
    for bs, prec in runs:
        tag = f'{prec}_b{bs}'
        if ctx.remaining() < 5:
            result['runs'].append({'precision': prec, 'batch_size': bs, 'skipped': 'section time cap'})
            checks[f'{tag}_ran'] = False
            continue
        try:
            run = train_run(cfg, batches[bs], ctx.device, prec, ctx.opts.iters, ctx.deadline)
        except Exception as e:   # noqa: BLE001  (one run's failure is recorded; the rest still run)
            import traceback
            run = {'precision': prec, 'batch_size': bs, 'device': ctx.device,
                   'error': f'{type(e).__name__}: {e}', 'traceback': traceback.format_exc()[-3000:]}
            if ctx.device == 'cuda':
                import torch
                torch.cuda.empty_cache()
        result['runs'].append(run)
        checks[f'{tag}_finite'] = bool(run.get('all_finite'))
        if run.get('loss_decreased') is not None:
            checks[f'{tag}_loss_decreased'] = run['loss_decreased']
        mem = run.get('peak_reserved_mib', run.get('peak_rss_mib_process'))
        ctx.log(f"{name} {tag}: {run.get('iters_done', 0)} iters, loss "
                f"{run['losses'][0] if run.get('losses') else None} -> "
                f"{run['losses'][-1] if run.get('losses') else None}, "
                f"median {run.get('iter_s_median')} s/iter, peak {mem} MiB"
                + (f", ERROR {run['error']}" if 'error' in run else ''))
        ctx.checkpoint(dict(result, checks=checks))
    result['checks'] = checks
    return result


def flashocc_section(ctx) -> dict:
    return config_section(ctx, 'flashocc')


def bevformer_section(ctx) -> dict:
    return config_section(ctx, 'bevformer')
