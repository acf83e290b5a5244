"""Object templates: nuScenes categories with plausible sizes, built from a few primitives.

An object is defined in its own frame (x forward, y left, z up, origin at the
centre of the box bottom). Its annotation box is (l, w, h) around that
origin, and every part lies inside the box, so boxes contain their voxels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .primitives import PrimitiveBuilder, Primitives

# nuScenes category -> Occ3D class (the mapping Occ3D-nuScenes uses).
CATEGORY_TO_CLASS = {
    'movable_object.pushable_pullable': 0,
    'movable_object.barrier': 1,
    'vehicle.bicycle': 2,
    'vehicle.bus.rigid': 3,
    'vehicle.car': 4,
    'vehicle.construction': 5,
    'vehicle.motorcycle': 6,
    'human.pedestrian.adult': 7,
    'human.pedestrian.child': 7,
    'movable_object.trafficcone': 8,
    'vehicle.trailer': 9,
    'vehicle.truck': 10,
}

# Texture ids (appearance.py draws them).
TEX_PLAIN, TEX_FACADE, TEX_PAINT, TEX_GLASS, TEX_FOLIAGE, TEX_STRIPES, TEX_CONE, TEX_BARK, \
    TEX_CONCRETE, TEX_DARK, TEX_CLOTH = range(11)

_CAR_COLOURS = np.array([[0.85, 0.85, 0.86], [0.1, 0.1, 0.12], [0.55, 0.56, 0.6], [0.6, 0.08, 0.08],
                         [0.12, 0.2, 0.5], [0.75, 0.72, 0.65], [0.25, 0.35, 0.3], [0.35, 0.35, 0.38]])
_CLOTH = np.array([[0.15, 0.2, 0.45], [0.6, 0.1, 0.1], [0.85, 0.8, 0.7], [0.1, 0.1, 0.1],
                   [0.3, 0.45, 0.25], [0.85, 0.55, 0.15], [0.5, 0.5, 0.55]])
_DARK = (0.05, 0.05, 0.06)


@dataclass
class ObjectTemplate:
    """One annotated object: category, box size (l, w, h) and its parts in the object frame."""

    category: str
    size: tuple
    parts: Primitives

    @property
    def cls(self) -> int:
        return CATEGORY_TO_CLASS[self.category]


def _jit(rng, colour, amount=0.06):
    return tuple(np.clip(np.asarray(colour) + rng.uniform(-amount, amount, 3), 0, 1))


def make_object(category: str, rng: np.random.Generator, rider: bool = False) -> ObjectTemplate:
    """Sample an object of ``category`` with random size and colours (``rider`` for cycles)."""
    cls = CATEGORY_TO_CLASS[category]
    b = PrimitiveBuilder()
    kw = dict(cls=cls)
    u = rng.uniform
    if category == 'vehicle.car':
        l, w, h = u(3.9, 4.9), u(1.7, 1.95), u(1.45, 1.8)
        paint = _jit(rng, _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))], 0.04)
        b.box(0, 0, 0.3, l, w, 0.6 * h - 0.3, albedo=paint, tex=TEX_PAINT, **kw)
        b.box(-0.06 * l, 0, 0.6 * h, 0.55 * l, 0.9 * w, 0.4 * h, albedo=paint, tex=TEX_GLASS, **kw)
        for x in (0.32 * l, -0.3 * l):
            b.box(x, 0, 0, 0.62, w * 0.96, 0.62, albedo=_DARK, tex=TEX_DARK, **kw)
    elif category == 'vehicle.truck':
        l, w, h = u(6.0, 9.5), u(2.3, 2.55), u(2.8, 3.6)
        cab = _jit(rng, _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))], 0.05)
        cargo = _jit(rng, (0.8, 0.8, 0.78) if rng.random() < 0.6 else (0.2, 0.3, 0.55), 0.05)
        b.box(l / 2 - 1.1, 0, 0.5, 2.2, w, 0.85 * h - 0.5, albedo=cab, tex=TEX_GLASS, **kw)
        b.box(-1.15, 0, 0.7, l - 2.3, w, h - 0.7, albedo=cargo, tex=TEX_PAINT, **kw)
        for x in (l / 2 - 1.3, -l / 2 + 1.3):
            b.box(x, 0, 0, 1.0, w * 0.95, 0.9, albedo=_DARK, tex=TEX_DARK, **kw)
    elif category == 'vehicle.bus.rigid':
        l, w, h = u(10.0, 12.5), u(2.5, 2.6), u(3.0, 3.4)
        col = _jit(rng, [(0.8, 0.65, 0.1), (0.7, 0.1, 0.1), (0.15, 0.35, 0.65)][rng.integers(3)], 0.04)
        b.box(0, 0, 0.35, l, w, h - 0.35, albedo=col, tex=TEX_GLASS, **kw)
        for x in (l / 2 - 2.2, -l / 2 + 2.5):
            b.box(x, 0, 0, 1.0, w * 0.95, 0.9, albedo=_DARK, tex=TEX_DARK, **kw)
    elif category == 'vehicle.trailer':
        l, w, h = u(6.0, 12.0), u(2.4, 2.55), u(3.3, 4.0)
        col = _jit(rng, (0.85, 0.85, 0.85) if rng.random() < 0.5 else (0.6, 0.3, 0.15), 0.05)
        b.box(0, 0, 1.0, l, w, h - 1.0, albedo=col, tex=TEX_CONCRETE, **kw)
        b.box(-l / 2 + 1.4, 0, 0, 2.2, w * 0.95, 1.0, albedo=_DARK, tex=TEX_DARK, **kw)
        b.box(l / 2 - 1.5, 0, 0, 0.4, w * 0.5, 1.0, albedo=(0.3, 0.3, 0.3), tex=TEX_DARK, **kw)
    elif category == 'vehicle.construction':
        l, w, h = u(5.0, 7.0), u(2.5, 3.0), u(3.0, 3.6)
        col = _jit(rng, (0.9, 0.7, 0.05), 0.04)
        b.box(0, 0, 0, l * 0.75, w, 0.8, albedo=(0.12, 0.12, 0.12), tex=TEX_DARK, **kw)
        b.box(-0.1 * l, 0, 0.8, 0.5 * l, w * 0.95, 1.2, albedo=col, tex=TEX_STRIPES, **kw)
        b.box(-0.1 * l, 0.2 * w, 2.0, 0.3 * l, 0.45 * w, h - 2.0, albedo=col, tex=TEX_GLASS, **kw)
        b.box(0.3 * l, -0.2 * w, 1.6, 0.4 * l, 0.25, 0.35, albedo=col, tex=TEX_PAINT, **kw)
        b.box(0.45 * l, -0.2 * w, 0.1, 0.1 * l, 0.9, 1.5, albedo=(0.4, 0.4, 0.4), tex=TEX_PAINT, **kw)
    elif category in ('vehicle.motorcycle', 'vehicle.bicycle'):
        moto = category == 'vehicle.motorcycle'
        l, w = (u(1.9, 2.2), u(0.7, 0.85)) if moto else (u(1.6, 1.8), u(0.5, 0.65))
        h = (u(1.5, 1.7) if rider else u(1.1, 1.3)) if moto else (u(1.6, 1.8) if rider else u(0.95, 1.1))
        frame = _jit(rng, (0.55, 0.1, 0.1) if moto else (0.2, 0.4, 0.6), 0.1)
        b.box(0, 0, 0, l, 0.12 if not moto else 0.3, 0.7, albedo=_DARK, tex=TEX_DARK, **kw)
        b.box(0, 0, 0.35, 0.6 * l, 0.3 if not moto else w * 0.8,
              (0.6 if moto else 0.45), albedo=frame, tex=TEX_PAINT, **kw)
        if rider:
            cloth = _jit(rng, _CLOTH[rng.integers(len(_CLOTH))])
            b.cylinder(-0.1 * l, 0, 0.8, 0.22, h - 1.05, albedo=cloth, tex=TEX_CLOTH, **kw)
            b.ellipsoid(-0.05 * l, 0, h - 0.13, 0.13, 0.13, 0.13, albedo=(0.2, 0.2, 0.22), tex=TEX_PLAIN, **kw)
    elif category.startswith('human.pedestrian'):
        child = category.endswith('child')
        h = u(1.1, 1.35) if child else u(1.55, 1.95)
        l, w = u(0.5, 0.8), u(0.55, 0.75)
        cloth = _jit(rng, _CLOTH[rng.integers(len(_CLOTH))])
        pants = _jit(rng, _CLOTH[rng.integers(len(_CLOTH))] * 0.5)
        skin = _jit(rng, [(0.85, 0.65, 0.5), (0.55, 0.38, 0.25), (0.3, 0.2, 0.14)][rng.integers(3)], 0.04)
        b.cylinder(0, 0, 0, 0.18, 0.47 * h, albedo=pants, tex=TEX_CLOTH, **kw)
        b.cylinder(0, 0, 0.47 * h, 0.23, 0.38 * h, albedo=cloth, tex=TEX_CLOTH, **kw)
        b.ellipsoid(0, 0, 0.925 * h, 0.1, 0.1, 0.075 * h, albedo=skin, tex=TEX_PLAIN, **kw)
    elif category == 'movable_object.barrier':
        l, w, h = u(1.8, 2.6), u(0.45, 0.6), u(0.85, 1.1)
        col = (0.85, 0.3, 0.05) if rng.random() < 0.5 else (0.8, 0.1, 0.1)
        b.box(0, 0, 0, l, w, h, albedo=col, tex=TEX_STRIPES, **kw)
    elif category == 'movable_object.trafficcone':
        h = u(0.7, 1.0)
        l = w = 0.42
        b.box(0, 0, 0, l, w, 0.06, albedo=(0.9, 0.35, 0.05), tex=TEX_PLAIN, **kw)
        b.cylinder(0, 0, 0.06, 0.15, h - 0.06, albedo=(0.95, 0.4, 0.05), tex=TEX_CONE, **kw)
    elif category == 'movable_object.pushable_pullable':
        l, w, h = u(0.6, 0.8), u(0.55, 0.7), u(1.0, 1.2)
        col = _jit(rng, [(0.15, 0.35, 0.15), (0.3, 0.3, 0.32), (0.1, 0.2, 0.5)][rng.integers(3)])
        b.box(0, 0, 0, l, w, h, albedo=col, tex=TEX_PAINT, **kw)
    else:
        raise ValueError(f'unknown object category {category!r}')
    return ObjectTemplate(category, (float(l), float(w), float(h)), b.build())
