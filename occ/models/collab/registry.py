"""Registries of the collaboration stages, chosen in a config (docs/COLLAB.md, "Stages").

``CollabFusion`` builds one part of each:

- ``COMPRESSORS`` (sender): a neighbour's BEV tokens -> what fits the byte budget. Registered
  under the short name a config's ``strategy`` uses: 'none', 'full', 'random', 'topk', 'tome'.
- ``CODECS``: the wire format (bytes on the link; their length is the bandwidth).
- ``LINKS``: the simulated radio link (range, localisation error, latency, loss); not learned.
- ``FUSIONS`` (receiver): received tokens -> the ego BEV (``fusion=dict(type=...)``).

A new compressor or fusion is one class registered here (from any package, imported by the
config's ``custom_imports``) plus a config; nothing in occ/models/collab changes. Like
``METRIC_PARTS`` these are not mmengine root registries: only ``CollabFusion`` builds from them.
"""
from mmengine.registry import Registry

COMPRESSORS = Registry('collab compressor', scope='occ', locations=['occ.models.collab'])
CODECS = Registry('collab codec', scope='occ', locations=['occ.models.collab'])
LINKS = Registry('collab link', scope='occ', locations=['occ.models.collab'])
FUSIONS = Registry('collab fusion', scope='occ', locations=['occ.models.collab'])
