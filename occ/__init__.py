"""occ: camera-based 3D semantic occupancy (Occ3D-nuScenes), one codebase.

Importing ``occ`` registers nothing heavy; ``occ.registry`` holds the mmengine
registries and lazily imports the modules that fill them (``locations``).
"""
__version__ = "0.1.0"
