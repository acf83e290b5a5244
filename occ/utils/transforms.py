"""Small rigid-transform helpers (4x4 homogeneous, ``a2b`` convention of ARCHITECTURE.md)."""
import math

import torch


def planar_pose(x: float, y: float, yaw: float) -> torch.Tensor:
    """Ground-plane pose as a float32 [4, 4]: rotation ``yaw`` (radians, about z) then translation (x, y, 0)."""
    c, s = math.cos(yaw), math.sin(yaw)
    m = torch.eye(4)
    m[:2, :2] = torch.tensor([[c, -s], [s, c]])
    m[0, 3], m[1, 3] = x, y
    return m
