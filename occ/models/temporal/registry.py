"""The registry of temporal fusion ops, chosen in a config (``temporal=dict(fusion=dict(type=...))``).

``TemporalFusion`` builds its fusion from here, filling in ``num_frames`` and
``pc_range``. A fusion is an ``nn.Module`` with a ``recurrent`` flag and either
``forward(bev, frames) -> bev`` (frames: T dicts ``feat``, ``cur2past``,
``valid``) or, when recurrent, ``step(bev, prev) -> state`` and
``output(bev, state) -> bev`` (docs/TEMPORAL.md). A new one is one class
registered with ``@TEMPORAL_FUSIONS.register_module()`` (from any package,
imported by the config's ``custom_imports``) plus a config; nothing in
occ/models/temporal changes. Like the collaboration stages' registries this is
not an mmengine root registry: only ``TemporalFusion`` builds from it.
"""
from mmengine.registry import Registry

TEMPORAL_FUSIONS = Registry('temporal fusion', scope='occ', locations=['occ.models.temporal'])
