"""Label statistics of synthetic worlds next to a real Occ3D-nuScenes frame (data/README.md table)."""
from __future__ import annotations

import numpy as np

from occ.constants import CLASS_NAMES, FREE
from occ.geometry import OccGrid

from .frame import camera_occluders, in_camera_view, make_labels
from .generate import DEFAULT_IMAGE_SIZE
from .sensors import camera_rig
from .world import KERB_HEIGHT, build_world

_SHARE_CLASSES = (16, 11, 15, 13, 4, 14, 3, 12, 0, 1, 7, 10)
_VISIBLE_CLASSES = (4, 3, 13, 14, 11, 15, 16)


def label_statistics(labels: list) -> dict:
    """Figures of the real-frame README for a list of label dicts (semantics, mask_camera, mask_lidar)."""
    sem = np.stack([x['semantics'] for x in labels])
    mc = np.stack([x['mask_camera'] for x in labels]).astype(bool)
    ml = np.stack([x['mask_lidar'] for x in labels]).astype(bool)
    occ = sem != FREE
    occ_cls = sem[occ]
    return {
        'free': float((~occ).mean()), 'mask_camera': float(mc.mean()), 'mask_lidar': float(ml.mean()),
        'occupied_per_frame': float(occ.sum() / len(labels)),
        'share': {c: float((occ_cls == c).mean()) for c in range(17)},
        'per_z': (occ.sum((0, 1, 2)) / len(labels)).tolist(),
        'ground_per_z': (((sem >= 11) & (sem <= 14)).sum((0, 1, 2)) / len(labels)).tolist(),
        'visible': {c: float((mc & (sem == c)).sum() / max(1, (sem == c).sum())) for c in range(17)},
    }


def world_statistics(seed: int = 0, worlds: int = 4, frames=(5, 20, 35), scene_frames: int = 40,
                     voxel: float = 0.4, kerb_height: float = KERB_HEIGHT, upward_endpoint_only: bool = True) -> dict:
    """label_statistics over keyframes ``frames`` of ``worlds`` default worlds."""
    grid = OccGrid.from_voxel(voxel)
    labels = []
    for w in range(worlds):
        world = build_world(seed, w, scene_frames, kerb_height=kerb_height, upward_endpoint_only=upward_endpoint_only)
        labels += [make_labels(world, f, 0, grid, DEFAULT_IMAGE_SIZE) for f in frames]
    return label_statistics(labels)


def camera_mask_fit(label: dict, occluders=range(13), voxel: float = 0.4) -> list:
    """How well the camera mask's rule for occupied voxels (``frame.camera_occluders``)
    reproduces a real Occ3D frame's own ``mask_camera`` on that frame's own occupancy.

    Args:
        label: one real frame's ``semantics`` and ``mask_camera`` (uint8 [200, 200, 16]).
        occluders: the ``max_occluders`` values to try.
    Returns:
        per value a dict: ``max_occluders``, ``agreement`` (share of the occupied voxels on which
        the rule and the real mask agree; voxels outside every image count as not held),
        ``held`` (share of occupied voxels held by the rule), ``real_held`` and ``visible``
        {class: (rule, real)} for the classes of the statistics table.
    """
    grid = OccGrid.from_voxel(voxel)
    sem = np.asarray(label['semantics'])
    real = np.asarray(label['mask_camera']).astype(bool).ravel()
    occ = sem != FREE
    idx = np.flatnonzero(occ)
    rig = camera_rig(DEFAULT_IMAGE_SIZE)
    in_view = in_camera_view(grid.centers().reshape(-1, 3)[idx], rig)
    cls, real = sem.ravel()[idx], real[idx]
    count = np.full(len(idx), np.iinfo(np.int64).max)                  # outside every image: never held
    count[in_view] = camera_occluders(occ, grid, rig, idx[in_view])
    out = []
    for k in occluders:
        held = count <= k
        out.append({'max_occluders': int(k), 'agreement': float((held == real).mean()),
                    'held': float(held.mean()), 'real_held': float(real.mean()),
                    'visible': {c: (float(held[cls == c].mean()), float(real[cls == c].mean()))
                                for c in _VISIBLE_CLASSES if (cls == c).any()}})
    return out


def comparison_table(ours: dict, real: dict | None) -> str:
    """Markdown table: figure | synthetic | real."""
    def fmt(d, key, sub=None, pct=True):
        if d is None:
            return 'n/a'
        v = d[key] if sub is None else d[key][sub]
        return f'{v:.3f}' if pct else f'{v:,.0f}'
    rows = ['| figure | synthetic | real Occ3D frame |', '|---|---|---|']
    rows.append(f'| free (17) fraction | {fmt(ours, "free")} | {fmt(real, "free")} |')
    rows.append(f'| `mask_camera` fraction | {fmt(ours, "mask_camera")} | {fmt(real, "mask_camera")} |')
    rows.append(f'| `mask_lidar` fraction | {fmt(ours, "mask_lidar")} | {fmt(real, "mask_lidar")} |')
    rows.append(f'| occupied voxels per frame | {fmt(ours, "occupied_per_frame", pct=False)} | '
                f'{fmt(real, "occupied_per_frame", pct=False)} |')
    for c in _SHARE_CLASSES:
        rows.append(f'| share of occupied: {CLASS_NAMES[c]} | {fmt(ours, "share", c)} | {fmt(real, "share", c)} |')
    for c in _VISIBLE_CLASSES:
        rows.append(f'| in mask_camera: {CLASS_NAMES[c]} | {fmt(ours, "visible", c)} | {fmt(real, "visible", c)} |')
    z = ', '.join(f'{v:,.0f}' for v in ours['per_z'])
    zr = ', '.join(f'{v:,.0f}' for v in real['per_z']) if real else 'n/a'
    rows.append(f'| occupied per z level (0 = lowest) | {z} | {zr} |')
    g = ', '.join(f'{v:,.0f}' for v in ours['ground_per_z'])
    gr = ', '.join(f'{v:,.0f}' for v in real['ground_per_z']) if real else 'n/a'
    rows.append(f'| ground classes (11-14) per z level | {g} | {gr} |')
    return '\n'.join(rows)
