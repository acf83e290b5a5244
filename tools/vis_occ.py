"""Pictures of inputs, labels and (optionally) predictions, one PNG per sample.

    python tools/vis_occ.py --root data/demo --out work_dirs/demo/vis --num 4
    python tools/vis_occ.py --root data/demo --tokens TOKEN1 TOKEN2 --pred work_dirs/demo/pred

Each picture: the 6 cameras in rig layout (front row on top), the labels from
above in the Occ3D colour map (top-most non-free voxel per column), and the
LiDAR sweep from above. With ``--pred DIR`` (``DIR/<token>.npz`` files) a second
picture per sample compares prediction and ground truth
(occ.vis.compare.draw_prediction_vs_gt).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

import numpy as np  # noqa: E402

from occ.constants import CAMERA_NAMES  # noqa: E402
from occ.data.dataset import load_image, reduce_to_grid  # noqa: E402
from occ.data.depth import load_points, transform_points  # noqa: E402
from occ.data.infos import InfoFile  # noqa: E402
from occ.data.occ3d_io import OccFileError, load_occ3d_labels, load_prediction  # noqa: E402
from occ.vis.sample import draw_sample  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--root', required=True, help='data root (nuScenes layout + gts/)')
    p.add_argument('--info', default=None,
                   help='info file (default: <root>/occ_infos_val.pkl, else occ_infos_train.pkl)')
    p.add_argument('--out', default=None, help='output folder (default: <root>/vis)')
    p.add_argument('--num', type=int, default=4, help='number of samples (evenly spread over the file)')
    p.add_argument('--tokens', nargs='*', default=None, help='sample tokens to draw instead of --num')
    p.add_argument('--pred', default=None, help='folder of <token>.npz predictions to compare against')
    p.add_argument('--mask', action='store_true', help='draw only camera-visible voxels')
    return p.parse_args(argv)


def pick(infos: list, num: int, tokens) -> list:
    if tokens:
        by_token = {i['token']: i for i in infos}
        missing = [t for t in tokens if t not in by_token]
        if missing:
            raise KeyError(f'sample token(s) not in the info file: {missing}')
        return [by_token[t] for t in tokens]
    if num >= len(infos):
        return list(infos)
    return [infos[int(i)] for i in np.linspace(0, len(infos) - 1, num).round()]


def draw_one(root: str, info: dict, out_dir: str, pred_dir: str | None, only_visible: bool) -> list[str]:
    images = {c: load_image(os.path.join(root, info['cams'][c]['data_path'])) for c in CAMERA_NAMES
              if c in info['cams']}
    lab = load_occ3d_labels(os.path.join(root, info['occ_path']))
    pts = transform_points(load_points(os.path.join(root, info['lidar_path'])), info['lidar2ego'])
    title = f'{info["scene_name"]}  frame {info["frame_idx"]}  {info["token"]}'
    out = os.path.join(out_dir, f'{info["scene_name"]}_{info["frame_idx"]:03d}_{info["token"]}.png')
    draw_sample(images, lab['semantics'], out, mask=lab['mask_camera'] if only_visible else None,
                points_ego=pts, title=title, cameras=[c for c in CAMERA_NAMES if c in images])
    written = [out]
    if pred_dir is not None:
        from occ.vis.compare import draw_prediction_vs_gt
        pred = load_prediction(os.path.join(pred_dir, info['token'] + '.npz'))['semantics']
        if pred.shape != lab['semantics'].shape:
            # Predictions on a coarser model grid: compare against GT coarsened the same way.
            lab = reduce_to_grid(lab, pred.shape, os.path.join(root, info['occ_path']))
        out_pred = out[:-4] + '_pred.png'
        draw_prediction_vs_gt(lab, pred, out_pred, title=title)
        written.append(out_pred)
    return written


def main(argv=None) -> int:
    args = parse_args(argv)
    out_dir = args.out or os.path.join(args.root, 'vis')
    try:
        if args.info is not None:
            infos = InfoFile.read(args.info).infos
        else:
            # val first (what a model is judged on), train when there is no or an empty val split.
            paths = [os.path.join(args.root, f'occ_infos_{s}.pkl') for s in ('val', 'train')]
            found = [InfoFile.read(p).infos for p in paths if os.path.isfile(p)]
            if not found:
                raise FileNotFoundError(f'{args.root}: no occ_infos_val.pkl / occ_infos_train.pkl '
                                        '(run tools/create_data.py --root first)')
            infos = next((f for f in found if f), found[0])
        chosen = pick(infos, args.num, args.tokens)
        for info in chosen:
            for path in draw_one(args.root, info, out_dir, args.pred, args.mask):
                print(f'vis_occ: wrote {path}')
    except (OccFileError, FileNotFoundError, KeyError) as e:
        print(f'vis_occ: error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
