"""Data pipeline speed: composed image warp vs an op-by-op chain, vectorised vs per-block label coarsening.

    python benchmarks/bench_data.py [--repeats 5]

Both comparisons run in this process on the same inputs; the printed ratios
are what docs/PERFORMANCE.md ("Data pipeline") reports.
  1. Image: a 900x1600 camera image to 256x704 with scale, crop, flip and
     rotation. Baseline = four OpenCV passes (resize, crop, flip, rotate);
     ours = one area pre-resize + one warpAffine of the composed matrix.
  2. Labels: 200x200x16 Occ3D grid (the real frame in tests/fixtures) to
     100x100x8. Baseline = per-block loop with a Counter; ours = reshape + counts.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

from occ.constants import FREE  # noqa: E402
from occ.data.occ3d_io import load_occ3d_labels  # noqa: E402
from occ.data.transforms import (base_image_transform, hflip3, rotation3, warp_image)  # noqa: E402

REAL = os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures', 'occ3d-sample',
                    '29796060110c4163b07f06eff4af0753', 'labels.npz')


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def chain(img, dst_hw, scale, crop_frac, rot):
    """Baseline: resize, crop, flip and rotate as separate image passes (BEVDet's PIL-style order)."""
    h0, w0 = img.shape[:2]
    h, w = dst_hw
    r = max(h / h0, w / w0) * scale
    rw, rh = int(round(w0 * r)), int(round(h0 * r))
    out = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_AREA)
    x0, y0 = int((rw - w) * crop_frac[0]), int((rh - h) * crop_frac[1])
    out = out[y0:y0 + h, x0:x0 + w]
    out = out[:, ::-1]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), rot, 1.0)
    return cv2.warpAffine(np.ascontiguousarray(out), m, (w, h), flags=cv2.INTER_LINEAR)


def composed(img, dst_hw, scale, crop_frac, rot):
    h, w = dst_hw
    full = base_image_transform(img.shape[:2], dst_hw, scale, crop_frac)
    full = rotation3(rot, ((w - 1) / 2, (h - 1) / 2)) @ hflip3(w) @ full
    return warp_image(img, full, dst_hw)


def slow_downsample(sem, f):
    x, y, z = (s // f for s in sem.shape)
    out = np.empty((x, y, z), np.uint8)
    for i in range(x):
        for j in range(y):
            for k in range(z):
                occ = collections.Counter(c for c in sem[i * f:(i + 1) * f, j * f:(j + 1) * f,
                                                         k * f:(k + 1) * f].ravel().tolist() if c != FREE)
                out[i, j, k] = min(c for c, n in occ.items() if n == max(occ.values())) if occ else FREE
    return out


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument('--repeats', type=int, default=5)
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (900, 1600, 3), dtype=np.uint8), (0, 0), 3)
    params = ((256, 704), 1.05, (0.4, 0.9), 4.0)
    a = chain(img, *params).astype(np.float32)
    b = composed(img, *params).astype(np.float32)
    inner = (slice(20, -20), slice(20, -20))
    print(f'image: mean |chain - composed| inside the border = {np.abs(a - b)[inner].mean():.2f} grey levels')
    t_chain = best_of(lambda: chain(img, *params), args.repeats)
    t_comp = best_of(lambda: composed(img, *params), args.repeats)
    print(f'image 900x1600 -> 256x704 (scale+crop+flip+rot): chain {t_chain * 1e3:.2f} ms, '
          f'composed {t_comp * 1e3:.2f} ms, speed-up x{t_chain / t_comp:.2f}')

    from occ.data.transforms import downsample_labels
    sem = load_occ3d_labels(REAL)['semantics']
    t_slow = best_of(lambda: slow_downsample(sem, 2), 1)
    t_fast = best_of(lambda: downsample_labels(sem, {}, 2), args.repeats)
    assert np.array_equal(slow_downsample(sem, 2), downsample_labels(sem, {}, 2)[0])
    print(f'labels 200x200x16 -> 100x100x8: per-block loop {t_slow * 1e3:.0f} ms, vectorised '
          f'{t_fast * 1e3:.1f} ms, speed-up x{t_slow / t_fast:.0f}')


if __name__ == '__main__':
    main()
