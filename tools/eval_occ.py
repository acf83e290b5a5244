#!/usr/bin/env python
"""Evaluate Occ3D-format occupancy predictions: voxel mIoU / IoU and RayIoU side by side.

    python tools/eval_occ.py --gt GT_ROOT --pred PRED [--mask camera|lidar|none]
        [--info occ_infos_val.pkl] [--json FILE] [--csv FILE] [--confusion-png FILE]
        [--ray-iou/--no-ray-iou] [--allow-missing] [--workers N] [--history-frames T]

GT_ROOT holds gts/<scene>/<token>/labels.npz (or <token>/labels.npz). PRED is a
folder of <token>.npz or one submission file (.npz keyed by token, or a pickle
dict token -> semantics). With --info the evaluated tokens are those of the info
file, RayIoU uses SparseOcc's origins (LiDAR positions of up to 8 keyframes of
the scene) and predictions with ``semantics_future`` are scored per horizon
against the GT of the following keyframes (each in its own ego frame, as in
OccWorld). Without --info RayIoU casts from one origin, the nuScenes LiDAR
position, and is not comparable to published RayIoU. With --info and
``--history-frames T`` the "visible in history only" region (seen by the camera
in one of the T previous keyframes of the scene, warped by ego motion, and not
now; ``occ.data.history_mask``) is also scored, as the training-time metric of
a temporal config with ``history_mask_frames=T`` does.

Metric definitions: occ/evaluation/confusion.py (Occ3D), ray_iou.py (SparseOcc),
forecast.py (OccWorld). Values are percentages. Exit status 2 on bad input.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

import numpy as np  # noqa: E402

from occ.constants import CLASS_NAMES, FREE  # noqa: E402
from occ.data.history_mask import history_visibility_mask  # noqa: E402
from occ.data.infos import EVAL_KEYS, RAY_ORIGIN_KEYS, InfoFile  # noqa: E402
from occ.data.occ3d_io import OccFileError, load_occ3d_labels  # noqa: E402
from occ.evaluation.confusion import MASKS  # noqa: E402
from occ.evaluation.evaluator import OccEvaluator, SEMANTIC_NAMES  # noqa: E402
from occ.evaluation.origins import origins_from_infos  # noqa: E402
from occ.evaluation.parts import grid_for_shape  # noqa: E402
from occ.evaluation.sources import PredictionSource, discover_gt, scene_history, scene_sequences  # noqa: E402
from occ.geometry import OCC3D_RANGE, OccGrid  # noqa: E402
from occ.utils.io import atomic_write_bytes  # noqa: E402

MAX_LISTED = 10


class EvalInputError(Exception):
    """Bad or incomplete inputs; the message says which files and how many."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--gt', help='GT root (gts/<scene>/<token>/labels.npz); default: the info dataroot')
    p.add_argument('--pred', required=True, help='folder of <token>.npz, or a submission .npz/.pkl')
    p.add_argument('--info', help='occ_infos_<split>.pkl: tokens, scenes, poses (RayIoU origins)')
    p.add_argument('--mask', choices=MASKS, default='camera', help='visibility mask of mIoU/IoU')
    p.add_argument('--ray-iou', action=argparse.BooleanOptionalAction, default=True,
                   help='compute RayIoU (default on)')
    p.add_argument('--ray-device', default=None, help='torch device for ray casting (default: cuda when available, else cpu)')
    p.add_argument('--json', help='write results (percent) to this JSON file')
    p.add_argument('--csv', help='write flat key,value results to this CSV file')
    p.add_argument('--confusion-png', help='plot the row-normalised confusion matrix here')
    p.add_argument('--allow-missing', action='store_true',
                   help='evaluate the tokens that have predictions and report how many were missing')
    p.add_argument('--workers', type=int, default=min(4, os.cpu_count() or 1),
                   help='loader threads (default min(4, CPUs))')
    p.add_argument('--history-frames', type=int, default=0, metavar='T',
                   help='with --info: also score voxels seen in one of the T previous keyframes of '
                        'the scene (warped by ego motion) but not now (miou_history_only)')
    p.add_argument('--pc-range', type=float, nargs=6, default=None,
                   help='grid range (default: info metadata, else Occ3D [-40,-40,-1,40,40,5.4])')
    return p.parse_args(argv)


def _listing(items) -> str:
    items = list(items)
    more = f' ... and {len(items) - MAX_LISTED} more' if len(items) > MAX_LISTED else ''
    return '\n  ' + '\n  '.join(str(i) for i in items[:MAX_LISTED]) + more


def collect_inputs(args):
    """Resolve the GT of every evaluated token, the prediction source and the infos."""
    infos, pc_range = None, args.pc_range
    gt_paths = {}
    if args.info:
        try:
            info_file = InfoFile.read(args.info, EVAL_KEYS + (RAY_ORIGIN_KEYS if args.ray_iou else ()))
        except (OSError, ValueError) as e:
            raise EvalInputError(str(e)) from e
        infos, meta = info_file.infos, info_file.metadata
        if pc_range is None and isinstance(meta.get('grid'), dict):
            pc_range = meta['grid'].get('pc_range')
        if args.gt is None:
            root = meta.get('dataroot') or os.path.dirname(os.path.abspath(args.info))
            gt_paths = {i['token']: os.path.join(root, i['occ_path']) for i in infos}
    if args.gt is not None:
        try:
            found = discover_gt(args.gt)
        except OccFileError as e:
            raise EvalInputError(str(e)) from e
        if infos is not None:
            absent = [i['token'] for i in infos if i['token'] not in found]
            if absent:
                raise EvalInputError(f'{len(absent)} token(s) of {args.info} have no labels.npz '
                                     f'under {args.gt}:{_listing(absent)}')
            gt_paths = {i['token']: found[i['token']][0] for i in infos}
        else:
            gt_paths = {t: p for t, (p, _) in found.items()}
    if not gt_paths:
        raise EvalInputError('no ground truth: pass --gt GT_ROOT and/or --info INFO_FILE')
    try:
        preds = PredictionSource(args.pred)
    except OccFileError as e:
        raise EvalInputError(str(e)) from e
    return infos, gt_paths, preds, tuple(pc_range or OCC3D_RANGE)


def _unwritable(path: str) -> str | None:
    """Why ``path`` cannot be written atomically (None when it can); missing folders are created."""
    if os.path.isdir(path):
        return 'is a directory'
    d = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(d):
        d = os.path.dirname(d)
    if not os.path.isdir(d):
        return f'{d} is not a directory'
    if not os.access(d, os.W_OK | os.X_OK):
        return f'folder {d} is not writable'
    return None


def check_outputs(args) -> None:
    """Fail before any work if an output (--json, --csv, --confusion-png) cannot be written."""
    problems, seen = [], {}
    for flag in ('json', 'csv', 'confusion_png'):
        path = getattr(args, flag)
        if not path:
            continue
        name = '--' + flag.replace('_', '-')
        why = _unwritable(path)
        if why:
            problems.append(f'{name} {path}: {why}')
        key = os.path.abspath(path)
        if key in seen:
            problems.append(f'{name} and {seen[key]} both name {path}')
        seen[key] = name
    if problems:
        raise EvalInputError(f'cannot write the outputs (nothing was written):{_listing(problems)}')


def evaluate(args, out=None) -> dict:
    """Run the evaluation described by ``args``; returns the JSON-able summary.

    Every output path is checked first, and every output is rendered before the
    first one is written, so a bad path never leaves a half-updated set of files.
    """
    check_outputs(args)
    infos, gt_paths, preds, pc_range = collect_inputs(args)
    tokens = sorted(gt_paths)
    missing = [t for t in tokens if t not in preds.tokens]
    if missing and not args.allow_missing:
        raise EvalInputError(f'{len(missing)} of {len(tokens)} token(s) have no prediction in '
                             f'{args.pred} (use --allow-missing to evaluate the rest):{_listing(missing)}')
    todo = [t for t in tokens if t in preds.tokens]
    if not todo:
        raise EvalInputError(f'none of the {len(tokens)} GT tokens has a prediction in {args.pred}')
    extra = len(preds.tokens - set(tokens))

    origins = origins_from_infos(infos, OccGrid(pc_range)) if (infos and args.ray_iou) else {}
    following = scene_sequences(infos) if infos else {}
    if args.history_frames < 0:
        raise EvalInputError(f'--history-frames must be >= 0, got {args.history_frames}')
    if args.history_frames and not infos:
        raise EvalInputError('--history-frames needs --info (the scene order and ego poses)')
    history = {t: p[:args.history_frames] for t, p in scene_history(infos).items()} if args.history_frames else {}
    ego2global = {i['token']: np.asarray(i['ego2global'], np.float64) for i in infos} if history else {}
    evaluator = OccEvaluator(ray_iou=args.ray_iou, ray_device=args.ray_device, pc_range=pc_range)

    def one(token):
        gt_path = gt_paths[token]
        gt = load_occ3d_labels(gt_path)
        pred = preds.load(token)
        sem = pred['semantics']
        if sem.shape != gt['semantics'].shape:
            raise OccFileError(f'{preds.where(token)}: prediction grid {sem.shape} does not match '
                               f'GT {gt_path} grid {gt["semantics"].shape}')
        if sem.size and int(sem.max()) > FREE:
            raise OccFileError(f'{preds.where(token)}: prediction has label {int(sem.max())} '
                               f'outside 0..{FREE}')
        gt_future = None
        if 'semantics_future' in pred and not infos:
            unscored_future.append(token)
        if 'semantics_future' in pred and following.get(token):
            nxt = following[token][:len(pred['semantics_future'])]
            gt_future = np.stack([load_occ3d_labels(gt_paths.get(t) or _path_for(t, 'future'), sem.shape)['semantics']
                                  for t in nxt])
        extra = {}
        if history:
            past = history.get(token, [])
            past_masks = [load_occ3d_labels(gt_paths.get(t) or _path_for(t, 'past'), sem.shape)['mask_camera']
                          for t in past]
            cur_inv = np.linalg.inv(ego2global[token])
            extra['mask_camera_history'] = history_visibility_mask(
                gt['mask_camera'], past_masks, [cur_inv @ ego2global[t] for t in past],
                grid_for_shape(sem.shape, pc_range))
        return evaluator.frame_result(
            sem, gt['semantics'], gt['mask_camera'], gt['mask_lidar'],
            origins=origins.get(token), pred_future=pred.get('semantics_future') if gt_future is not None else None,
            gt_future=gt_future, bytes_sent=pred.get('bytes_sent'), **extra)

    def _path_for(t, when):
        raise OccFileError(f'GT of {when} keyframe {t} is not among the evaluated tokens')

    def safe(token):
        try:
            return token, one(token), None
        except OccFileError as e:
            return token, None, str(e)

    from tqdm import tqdm
    errors, unscored_future = [], []
    workers = max(1, int(args.workers))
    with ThreadPoolExecutor(workers) as pool:
        for token, res, err in tqdm(pool.map(safe, todo), total=len(todo), desc='eval_occ',
                                    unit='frame', disable=None, file=sys.stderr):
            if err is not None:
                errors.append(err)
            else:
                evaluator.add_result(res)
    if errors:
        raise EvalInputError(f'{len(errors)} of {len(todo)} frame(s) could not be evaluated '
                             f'(corrupt file, wrong shape or dtype):{_listing(errors)}')

    summary = evaluator.summary(args.mask)
    summary.update({'gt': args.gt or args.info, 'pred': args.pred, 'num_missing': len(missing),
                    'missing_tokens': missing[:100], 'num_extra_predictions': extra,
                    'ray_origins': ('info file (SparseOcc: up to 8 keyframe LiDAR positions)'
                                    if origins else 'default (one nuScenes LiDAR position)')
                    if args.ray_iou else None})
    flat = evaluator.flat_metrics(args.mask)
    print_report(summary, out)
    if unscored_future:
        print(f'note: {len(unscored_future)} prediction(s) carry semantics_future; pass --info to '
              f'score forecasting (the future GT is found through the scene order)', file=out or sys.stdout)
    outputs = []
    if args.json:
        outputs.append((args.json, json.dumps(summary, indent=2).encode()))
    if args.csv:
        outputs.append((args.csv, csv_bytes(flat, summary)))
    if args.confusion_png:
        outputs.append((args.confusion_png, confusion_png(
            evaluator.conf.hist[MASKS.index(args.mask)],
            f'Occ3D confusion ({args.mask} mask, {summary["num_frames"]} frames)')))
    for path, data in outputs:
        atomic_write_bytes(path, data)
    return summary


def _fmt(v) -> str:
    return '    -' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{v:6.2f}'


def print_report(s: dict, out=None) -> None:
    out = out or sys.stdout
    ray = 'ray_iou' in s
    print(f'\nOcc3D evaluation of {s["num_frames"]} frame(s), mask={s["mask"]}'
          + (f', {s["num_missing"]} missing' if s.get('num_missing') else ''), file=out)
    print(f'{"class":<22}{"IoU":>8}' + (f'{"RayIoU":>9}' if ray else ''), file=out)
    for name in SEMANTIC_NAMES:
        row = f'{name:<22}{_fmt(s["per_class"][name]):>8}'
        if ray:
            row += f'{_fmt(s["ray_per_class"][name]):>9}'
        print(row, file=out)
    print('-' * (39 if ray else 30), file=out)
    line = f'{"mIoU / RayIoU":<22}{_fmt(s["miou"]):>8}'
    if ray:
        line += f'{_fmt(s["ray_iou"]):>9}   (RayIoU@1/2/4: {_fmt(s["ray_iou@1"]).strip()} / ' \
                f'{_fmt(s["ray_iou@2"]).strip()} / {_fmt(s["ray_iou@4"]).strip()})'
    print(line, file=out)
    print(f'{"IoU (geometry)":<22}{_fmt(s["iou"]):>8}', file=out)
    print('by mask (mIoU / IoU): ' + ', '.join(
        f'{k} {_fmt(v["miou"]).strip()} / {_fmt(v["iou"]).strip()}' for k, v in s['by_mask'].items()),
        file=out)
    if ray and s.get('ray_origins'):
        print(f'RayIoU origins: {s["ray_origins"]}', file=out)
    if 'forecast' in s:
        print('forecast (no mask):  ' + ', '.join(
            f'{k} mIoU {_fmt(v["miou"]).strip()} IoU {_fmt(v["iou"]).strip()}'
            for k, v in s['forecast'].items()), file=out)
    if 'bytes_sent' in s:
        print(f'bytes sent per agent per frame: {s["bytes_sent"]:.1f}', file=out)
    if 'history_only' in s:
        h = s['history_only']
        print(f'visible in history only ({h["voxels"]} voxels, {h["num_frames"]} frames): mIoU '
              f'{_fmt(h["miou"]).strip()} / IoU {_fmt(h["iou"]).strip()}', file=out)


def csv_bytes(flat: dict, summary: dict) -> bytes:
    """The flat ``key,value`` results table."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(['key', 'value'])
    for k in ('num_frames', 'num_missing'):
        w.writerow([k, summary.get(k, 0)])
    for k, v in flat.items():
        w.writerow([k, '' if math.isnan(v) else f'{v:.6g}'])
    return buf.getvalue().encode()


def confusion_png(hist: np.ndarray, title: str) -> bytes:
    """PNG of the row-normalised 18x18 confusion matrix (GT rows, prediction columns), log colour scale."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    rows = hist.sum(1, keepdims=True)
    norm = np.divide(hist, rows, out=np.zeros(hist.shape), where=rows > 0)
    fig, ax = plt.subplots(figsize=(9, 8))
    im = ax.imshow(np.where(norm > 0, norm, np.nan), norm=LogNorm(1e-4, 1), cmap='viridis')
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=90, fontsize=7)
    ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES, fontsize=7)
    ax.set_xlabel('prediction')
    ax.set_ylabel('ground truth')
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label='fraction of GT row')
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=100)
    plt.close(fig)
    return buf.getvalue()


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        evaluate(args)
    except EvalInputError as e:
        print(f'eval_occ: error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
