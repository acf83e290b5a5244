"""Forward and forward+backward time per frame and peak memory of each config's model.

    python tools/benchmark.py CONFIG [CONFIG ...] [--batch-size 1] [--repeat 3] [--img-size H W]
                              [--threads N] [--device cpu|cuda] [--json OUT.json]

Random batches follow the batch contract (occ.utils.benchmark.random_batch) at the
config's ``img_size`` (or --img-size) and the model's grid. Peak RSS is the
process maximum so far, so run one config per process when comparing memory.
"""
import argparse
import os
import sys
import warnings

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('configs', nargs='+')
    ap.add_argument('--batch-size', type=int, default=1)
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--img-size', type=int, nargs=2, default=None, metavar=('H', 'W'))
    ap.add_argument('--num-cams', type=int, default=6)
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--no-backward', action='store_true')
    ap.add_argument('--json', default=None, help='also write the results to this JSON file (atomically)')
    args = ap.parse_args()

    import torch
    from mmengine.config import Config

    import occ.models  # noqa: F401  (registers the parts)
    from occ.registry import MODELS
    from occ.utils.benchmark import benchmark_model, random_batch
    from occ.utils.io import atomic_save_json

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    print(f'torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, '
          f'batch {args.batch_size}, min of {args.repeat}')
    print('| config | input | grid | params (M) | forward (s/frame) | fwd+bwd (s/frame) | fwd+bwd CPU time (s/frame) '
          '| peak RSS (MiB) |')
    print('|---|---|---|---|---|---|---|---|')
    for path in args.configs:
        if not os.path.isfile(path):
            sys.exit(f'tools/benchmark.py: config {path!r} does not exist')
        cfg = Config.fromfile(path)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')     # random-init warnings
            model = MODELS.build(cfg.model).to(args.device)
        img_size = tuple(args.img_size or cfg.get('img_size', (64, 176)))
        grid = tuple(model.view_transform.grid.shape)
        batch = random_batch(args.batch_size, args.num_cams, img_size, grid_shape=grid,
                             with_depth=getattr(model, 'depth_loss_weight', 0) > 0, device=args.device)
        r = benchmark_model(model, batch, repeat=args.repeat, backward=not args.no_backward)
        r.update(config=path, img_size=list(img_size), grid=list(grid),
                 params_m=sum(p.numel() for p in model.parameters()) / 1e6)
        rows.append(r)
        fb = r.get('forward_backward_s_per_frame')
        fbc = r.get('forward_backward_cpu_s_per_frame')
        print(f"| {path} | {img_size[0]}x{img_size[1]} x{args.num_cams} | {'x'.join(map(str, grid))} | "
              f"{r['params_m']:.1f} | {r['forward_s_per_frame']:.3f} | {'-' if fb is None else f'{fb:.3f}'} | "
              f"{'-' if fbc is None else f'{fbc:.3f}'} | {r['peak_rss_mb']:.0f} |", flush=True)
        del model, batch
    if args.json:
        atomic_save_json(args.json, rows)


if __name__ == '__main__':
    main()
