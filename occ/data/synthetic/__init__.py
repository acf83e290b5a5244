"""A procedural synthetic driving world that writes a real nuScenes-format database + Occ3D labels.

Typical use::

    from occ.data.synthetic import generate
    summary = generate('data/demo', scenes=6, frames=40, seed=0)

To query a generated scene again (tests do): rebuild its world from the seed
and render any keyframe; ``frames`` and ``agents`` must be those of the
generation (traffic depends on the scene length)::

    world = build_world(seed, index, frames, agents)
    frame = render_frame(world, f, agent, image_size, OccGrid.from_voxel(0.8))
    frame['cams'][k]['rgb'], frame['lidar']['points'], frame['labels']['semantics'], frame['boxes']

See data/README.md for the file layout and conventions.
"""
from .frame import annotations, make_labels, render_frame
from .generate import (DEFAULT_IMAGE_SIZE, MARKER, cooperative_index, depth_path, generate, prepare_output_root,
                       semantics2d_path, timestamp)
from .nuscenes_db import scene_names
from .preview import render_preview
from .sensors import SKY, camera_rig, lidar2ego, lidar_scan, render_camera
from .world import World, build_world

__all__ = ['generate', 'build_world', 'World', 'render_frame', 'make_labels', 'annotations', 'render_camera',
           'lidar_scan', 'camera_rig', 'lidar2ego', 'depth_path', 'semantics2d_path', 'scene_names', 'timestamp',
           'cooperative_index', 'render_preview', 'prepare_output_root', 'MARKER', 'SKY', 'DEFAULT_IMAGE_SIZE']
