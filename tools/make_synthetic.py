#!/usr/bin/env python
"""Write a synthetic nuScenes-format world with Occ3D labels.

    python tools/make_synthetic.py --out data/demo --seed 0            # the demo world
    python tools/make_synthetic.py --out data/tiny --scenes 1 --frames 4 --image-size 72 128
    python tools/make_synthetic.py --out data/coop --agents 3           # connected vehicles
    python tools/make_synthetic.py --preview docs/images/synthetic_world.png

The result loads with ``nuscenes.nuscenes.NuScenes(version='v1.0-trainval', dataroot=OUT)``;
see data/README.md for the layout.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', help='output root (a nuScenes dataroot)')
    p.add_argument('--scenes', type=int, default=6, help='number of worlds (towns), each one scene per agent')
    p.add_argument('--frames', type=int, default=40, help='keyframes per scene (2 Hz; 40 = 20 s)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--agents', type=int, default=1, help='connected vehicles per world (1 = ego only)')
    p.add_argument('--voxel', type=float, default=0.8, choices=(0.4, 0.8), help='label voxel size in metres')
    p.add_argument('--image-size', type=int, nargs=2, default=(144, 256), metavar=('H', 'W'))
    p.add_argument('--workers', type=int, default=2, help='worker processes')
    p.add_argument('--version', default='v1.0-trainval', help='nuScenes version folder name')
    p.add_argument('--val-fraction', type=float, default=0.2, help='share of worlds held out for val, in [0, 1)')
    p.add_argument('--lidar-sweeps', type=int, default=9,
                   help='LiDAR sweeps between keyframes (default 9 = 20 Hz as in nuScenes; 0 = keyframes only)')
    p.add_argument('--camera-sweeps', type=int, nargs='?', const=5, default=0, metavar='N',
                   help='also render camera sweeps between keyframes (N, default 5 = 12 Hz as in nuScenes)')
    p.add_argument('--no-radar', action='store_true', help='leave out the 5 radars')
    p.add_argument('--kerb-height', type=float, default=0.2, metavar='M',
                   help='sidewalks stand M metres above the road (default 0.2; 0: one ground plane; data/README.md)')
    p.add_argument('--upward-endpoint-only', action=argparse.BooleanOptionalAction, default=True,
                   help="labels: LiDAR beams above the horizontal observe only their end voxel, no free space "
                        "(default; brings mask_camera to the real Occ3D frame's fraction; data/README.md)")
    p.add_argument('--force', action='store_true',
                   help='write into a non-empty --out folder that make_synthetic did not create')
    p.add_argument('--preview', metavar='PNG', help='also (or only, without --out) write a preview picture')
    p.add_argument('--stats', type=int, metavar='WORLDS',
                   help='print label statistics of WORLDS default worlds at 0.4 m (3 keyframes each)')
    p.add_argument('--real', metavar='NPZ', help='with --stats: a real Occ3D labels.npz to compare against')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    a = p.parse_args(argv)
    if not a.out and not a.preview and not a.stats:
        p.error('give --out DIR, --preview PNG and/or --stats WORLDS')
    if not 0 <= a.val_fraction < 1:
        p.error(f'--val-fraction must be in [0, 1) (the share of towns held out for val), got {a.val_fraction}')
    if a.lidar_sweeps < 0 or a.camera_sweeps < 0:
        p.error('--lidar-sweeps and --camera-sweeps must be >= 0')
    if not 0 <= a.kerb_height < 1:
        p.error(f'--kerb-height must be in [0, 1) metres, got {a.kerb_height}')
    from occ.data.synthetic import generate, render_preview
    if a.out:
        from occ.data.synthetic import MARKER
        out = os.path.abspath(a.out)
        if os.path.isdir(out) and os.listdir(out) and not os.path.isfile(os.path.join(out, MARKER)) and not a.force:
            p.error(f'{out} is not empty and was not created by make_synthetic (no {MARKER} marker); '
                    f'choose a new or empty folder, or pass --force to write into it')
        s = generate(a.out, scenes=a.scenes, frames=a.frames, seed=a.seed, agents=a.agents, voxel=a.voxel,
                     image_size=tuple(a.image_size), workers=a.workers, progress=not a.quiet,
                     version=a.version, val_fraction=a.val_fraction, lidar_sweeps=a.lidar_sweeps,
                     camera_sweeps=a.camera_sweeps, radar=not a.no_radar, force=a.force,
                     kerb_height=a.kerb_height, upward_endpoint_only=a.upward_endpoint_only)
        print(json.dumps({k: s[k] for k in ('out_dir', 'version', 'keyframes', 'tables', 'seconds')}, indent=1))
    if a.preview:
        render_preview(a.preview, seed=a.seed)
        print(f'wrote {a.preview}')
    if a.stats:
        from occ.data.occ3d_io import load_occ3d_labels
        from occ.data.synthetic.stats import camera_mask_fit, comparison_table, label_statistics, world_statistics
        real_labels = load_occ3d_labels(a.real, (200, 200, 16)) if a.real else None
        real = label_statistics([real_labels]) if a.real else None
        print(comparison_table(world_statistics(a.seed, a.stats, kerb_height=a.kerb_height,
                                                       upward_endpoint_only=a.upward_endpoint_only), real))
        if a.real:
            fit = camera_mask_fit(real_labels)
            print('\ncamera-mask rule on the real frame (occupied voxels held behind at most N others; '
                  'agreement with its own mask_camera, held share vs real):')
            print(', '.join(f"N={r['max_occluders']}: {r['agreement']:.3f} ({r['held']:.2f} vs {r['real_held']:.2f})"
                            for r in fit))


def run(argv=None) -> int:
    """``main`` with its ValueErrors (impossible option combinations) as a one-line message and
    exit status 2, like argparse's usage errors, instead of a traceback."""
    try:
        main(argv)
    except ValueError as e:
        print(f'make_synthetic: error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(run())
