"""Write Occ3D info files (occ_infos_<split>.pkl) for a nuScenes root with nuscenes-devkit.

    python tools/create_data.py --root data/demo
    python tools/create_data.py --root data/nuscenes --version v1.0-mini --out data/nuscenes

Works the same for real nuScenes (official splits) and synthetic worlds
(``splits.json``). Samples without ``gts/<scene>/<token>/labels.npz`` are an
error naming the file, unless ``--skip-missing-occ``; camera images or LiDAR
files that the tables reference but the root lacks are an error saying how many
(``--skip-missing-files`` leaves those samples out). A table that is not valid
JSON, or a non-finite pose or calibration, is an error naming the file.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

from occ.data.infos import build_infos, save_infos  # noqa: E402
from occ.data.occ3d_io import OccFileError  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--root', required=True, help='nuScenes root (v1.0-*/ tables, samples/, gts/)')
    p.add_argument('--out', default=None, help='output folder (default: --root)')
    p.add_argument('--version', default=None, help='table folder, e.g. v1.0-mini (default: auto-detect)')
    p.add_argument('--skip-missing-occ', action='store_true', help='leave out samples without labels')
    p.add_argument('--skip-missing-files', action='store_true',
                   help='leave out samples whose camera images or LiDAR file are missing')
    p.add_argument('--no-progress', action='store_true')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = args.out or args.root
    try:
        result, messages = build_infos(args.root, args.version, args.skip_missing_occ,
                                       progress=not args.no_progress,
                                       skip_missing_files=args.skip_missing_files)
    except (OccFileError, FileNotFoundError, ValueError, KeyError) as e:
        print(f'create_data: error: {e}', file=sys.stderr)
        return 1
    for m in messages:
        print(f'create_data: {m}', file=sys.stderr)
    for split, data in result.items():
        path = os.path.join(out, f'occ_infos_{split}.pkl')
        save_infos(data, path)
        print(f'create_data: {len(data["infos"])} {split} samples '
              f'(splits from {data["metadata"]["splits_from"]}, grid {data["metadata"]["grid"]["voxel_size"]} m) '
              f'-> {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
