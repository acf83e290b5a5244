"""Inference speed of each check config at batch 1, fp32 and fp16, model only.

As SparseOcc's ``timing.py``: the model in eval mode under no-grad, cuDNN
benchmark mode on, ``warmup`` untimed calls, then ``repeats`` calls each
bracketed by ``torch.cuda.synchronize()`` and timed with ``perf_counter``;
FPS = timed calls / their summed time. What is timed here is the model only:
``model(inputs, mode='tensor')`` (backbone, view transform, BEV encoder, head
to logits [1, 18, X, Y, Z]) plus the argmax to the uint8 occupancy grid on the
device. Not timed: reading and decoding the images, the host-to-device copy
(inputs are on the device before timing) and copying the grid back. The
inputs cycle through up to 4 evaluation samples with the same camera rig, so
the BEV-pool plan is cached after the first call, as in deployment.

fp16 is ``torch.autocast(dtype=float16)`` over fp32 weights (mixed precision,
the PyTorch path), not a TensorRT engine; bf16 is not timed.
"""
from __future__ import annotations

import contextlib
import statistics
import time

from occ.analysis.device_check import check_configs
from occ.analysis.device_check.training import build_model, preload_batches

PRECISIONS = ('fp32', 'fp16')


def time_model(model, inputs: list, device: str, precision: str, warmup: int, repeats: int,
               deadline: float) -> tuple:
    """Time ``repeats`` model-only calls after ``warmup``.

    Returns (result dict: FPS and latencies, logits of ``inputs[0]`` for comparing precisions).
    """
    import torch
    cuda = device == 'cuda'
    if precision == 'fp16' and cuda:
        amp = torch.autocast('cuda', dtype=torch.float16)
    elif precision == 'fp16':
        amp = torch.autocast('cpu', dtype=torch.bfloat16)     # CPU has no fast fp16: dtype path only
    else:
        amp = contextlib.nullcontext()

    def call(x):
        out = model(x, mode='tensor')
        return out['logits'], out['logits'].argmax(1).to(torch.uint8)

    times = []
    with torch.inference_mode(), amp:
        for i in range(warmup):
            call(inputs[i % len(inputs)])
        if cuda:
            torch.cuda.synchronize()
        for i in range(repeats):
            if time.time() > deadline:
                break
            x = inputs[i % len(inputs)]
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            call(x)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        logits, _ = call(inputs[0])         # untimed: the output compared across precisions
    r = {'precision': precision if cuda or precision == 'fp32' else 'bf16 (CPU stand-in for fp16)',
         'warmup': warmup, 'repeats_asked': repeats, 'repeats_done': len(times)}
    if times:
        r.update(fps=len(times) / sum(times), latency_ms_median=1e3 * statistics.median(times),
                 latency_ms_min=1e3 * min(times), latency_ms_max=1e3 * max(times))
    return r, logits


def section(ctx) -> dict:
    import torch
    device = ctx.device
    result = {'what_is_timed': ('model(inputs, mode="tensor") + argmax to uint8 on the device, batch 1, '
                                'inputs already on the device; data loading and copies excluded'),
              'warmup': ctx.opts.fps_warmup, 'repeats': ctx.opts.fps_repeats,
              'cudnn_benchmark': True, 'runs': []}
    checks = {}
    prev_bench = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        for name in check_configs.CONFIGS:
            cfg = check_configs.load(ctx, name)
            cfg.test_dataloader.dataset.info_file = ctx.world['eval_info']
            batches = preload_batches(cfg, 1, 4, split='test')
            model = build_model(cfg, device).eval()
            inputs = [model.data_preprocessor(b, False)['inputs'] for b in batches]
            ref = None
            for prec in PRECISIONS:
                if ctx.remaining() < 3:
                    result['runs'].append({'config': name, 'precision': prec, 'skipped': 'section time cap'})
                    continue
                if device == 'cuda':
                    torch.cuda.reset_peak_memory_stats()
                try:
                    r, logits = time_model(model, inputs, device, prec, ctx.opts.fps_warmup,
                                           ctx.opts.fps_repeats, ctx.deadline)
                except Exception as e:   # noqa: BLE001
                    r, logits = {'precision': prec, 'error': f'{type(e).__name__}: {e}'}, None
                r.update(config=name, device=device, batch_size=1,
                         img_size=list(cfg.test_dataloader.dataset.img_size),
                         grid=list(model.view_transform.grid.shape))
                if device == 'cuda':
                    r['peak_allocated_mib'] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
                if logits is not None:
                    lf = logits.float()
                    r['logits_finite'] = bool(torch.isfinite(lf).all())
                    if ref is None:
                        ref = lf
                    else:   # same input (the first sample): compare with fp32
                        r['max_abs_diff_vs_fp32'] = float((lf - ref).abs().max())
                        r['argmax_agreement_vs_fp32'] = float((lf.argmax(1) == ref.argmax(1)).float().mean())
                checks[f'{name}_{prec}_finite'] = bool(r.get('logits_finite'))
                result['runs'].append(r)
                ctx.log(f"{name} {prec}: {r.get('fps')} FPS, median {r.get('latency_ms_median')} ms"
                        + (f", ERROR {r['error']}" if 'error' in r else ''))
                ctx.checkpoint(dict(result, checks=checks))
            del model, inputs
            if device == 'cuda':
                torch.cuda.empty_cache()
    finally:
        torch.backends.cudnn.benchmark = prev_bench
    result['checks'] = checks
    return result
