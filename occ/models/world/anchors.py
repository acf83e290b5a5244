"""Anchors of residual forecasting: earlier frames moved into a frame's ego frame by the known ego motion.

A conditional tokenizer (``ConditionalOccTokenizer``) encodes and decodes a
frame *given its anchor*; with a zero residual the decoded frame is the anchor
itself, i.e. the ego-warp baseline. ``EgoWarpAnchors`` is the one place that
builds anchors and everything done to them:

* **ego-warp** (``sequence``, ``current``, ``pair``): frame j's anchor is frame
  ``sources[j]`` warped into frame j (``occ.geometry.warp_labels``, nearest voxel;
  cells from outside the grid are 255, "unknown");
* **band** (``band``): at prediction time, a forecast frame's unknown anchor
  cells take the model's own forecast of the previous frame moved one step;
* **calibration** (``calibrate``): at prediction time, ``prior_boost`` extra
  weight on the one-hot of known anchor cells, so weak evidence does not flip them;
* **anchor dropout** (``drop_box``): tokenizer training blanks a random BEV box of
  an anchor, so the tokens, not the anchor, must carry the frame there;
* **forecaster input** (``bev``): class fractions per token cell and height.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from occ.constants import FREE, IGNORE_INDEX, NUM_CLASSES
from occ.geometry import OCC3D_RANGE, OccGrid, relative_pose, warp_labels
from occ.registry import MODELS


def anchor_sources(num_frames: int, num_context: int) -> list:
    """Index of the frame each frame's anchor comes from: [0, 0, 1, .., n_ctx - 2, n_ctx - 1, .., n_ctx - 1].

    A context frame s >= 1 is anchored on its predecessor s - 1; every future
    frame on the current frame (index ``num_context - 1``), so a forecast is
    never built on a warp of a warp (chained nearest-voxel warps drift:
    docs/WORLD.md); frame 0 on itself.
    """
    return [0] + [min(j - 1, num_context - 1) for j in range(1, num_frames)]


def anchor_prior(anchor: torch.Tensor) -> torch.Tensor:
    """One-hot of an anchor grid [B, X, Y, Z] -> [B, 18, X, Y, Z]; unknown (255) cells count as free.

    Free for unknown cells is what the ego-warp baseline predicts there, so a
    decoder whose residual is zero reproduces that baseline exactly.
    """
    lab = anchor.long()
    lab = torch.where(lab == IGNORE_INDEX, torch.full_like(lab, FREE), lab)
    return F.one_hot(lab, NUM_CLASSES).permute(0, 4, 1, 2, 3).float()


def anchor_bev(anchor: torch.Tensor, stride: int) -> torch.Tensor:
    """Class fractions of anchor grids per BEV cell and height: labels [B, X, Y, Z] -> [B, 19*Z, X/s, Y/s].

    Channel ``c * Z + z`` is the fraction of the s x s voxels at height z of a
    cell that have class c (c = 18: unknown, label 255). Built with a bincount,
    so no [B, 19, X, Y, Z] one-hot is materialised.
    """
    b, x, y, z = anchor.shape
    if x % stride or y % stride:
        raise ValueError(f'anchor_bev: grid {tuple(anchor.shape[1:])} not divisible by {stride}')
    lab = anchor.long()
    lab = torch.where(lab == IGNORE_INDEX, torch.full_like(lab, NUM_CLASSES), lab)
    xs, ys = x // stride, y // stride
    ix = torch.arange(x, device=lab.device).div(stride, rounding_mode='floor').view(1, x, 1, 1)
    iy = torch.arange(y, device=lab.device).div(stride, rounding_mode='floor').view(1, 1, y, 1)
    iz = torch.arange(z, device=lab.device).view(1, 1, 1, z)
    ib = torch.arange(b, device=lab.device).view(b, 1, 1, 1)
    ch = lab * z + iz                                                   # [B, X, Y, Z]
    flat = ((ib * (NUM_CLASSES + 1) * z + ch) * xs + ix) * ys + iy
    counts = torch.bincount(flat.reshape(-1), minlength=b * (NUM_CLASSES + 1) * z * xs * ys)
    return counts.view(b, (NUM_CLASSES + 1) * z, xs, ys).float() / (stride * stride)


@MODELS.register_module()
class EgoWarpAnchors:
    """Builds, augments and calibrates the anchors of residual forecasting (no parameters).

    Args:
        pc_range, voxel_size: the label grid.
        prior_boost: prediction-time calibration; ``calibrate`` adds this times the one-hot
            of *known* anchor cells to decoded logits (0 = off). Chosen on training scenes.
        band_from_previous: prediction only: a forecast frame's unknown anchor cells
            (outside frame t's grid) take the forecast of the previous frame moved one
            step (``band``); known cells stay the direct warp of frame t.
        dropout: training only (``drop_box``): probability that a random BEV box (20-60 %
            of each side) of an anchor is blanked to unknown.
    """

    def __init__(self, pc_range=OCC3D_RANGE, voxel_size: float = 0.8, prior_boost: float = 0.0,
                 band_from_previous: bool = False, dropout: float = 0.0):
        self.grid = OccGrid.from_voxel(float(voxel_size), tuple(float(v) for v in pc_range))
        self.prior_boost, self.band_from_previous = float(prior_boost), bool(band_from_previous)
        self.dropout = float(dropout)

    def __repr__(self) -> str:
        return (f'EgoWarpAnchors(voxel={self.grid.voxel_size}, prior_boost={self.prior_boost}, '
                f'band_from_previous={self.band_from_previous}, dropout={self.dropout})')

    # -- ego-warp ----------------------------------------------------------------------
    def warp(self, labels: torch.Tensor, dst_pose: torch.Tensor, src_pose: torch.Tensor) -> torch.Tensor:
        """Labels [B, X, Y, Z] of the frame at ``src_pose`` [B, 4, 4] seen from ``dst_pose``; outside = 255."""
        return warp_labels(labels, relative_pose(dst_pose, src_pose), self.grid, fill=IGNORE_INDEX)

    def sequence(self, base: torch.Tensor, poses: torch.Tensor, frames=None) -> torch.Tensor:
        """Anchors of a sequence: base labels [B, T+1, X, Y, Z] (the context), poses [B, S, 4, 4]
        -> [B, len(frames), X, Y, Z] (default every frame 0..S-1).

        Frame j's anchor is context frame ``anchor_sources(S, T+1)[j]`` warped into frame j.
        """
        s, n_ctx = poses.shape[1], base.shape[1]
        src = anchor_sources(s, n_ctx)
        out = []
        for j in (range(s) if frames is None else frames):
            a = src[j]
            out.append(base[:, a] if a == j else self.warp(base[:, a], poses[:, j], poses[:, a]))
        return torch.stack(out, 1)

    def current(self, context: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        """The anchor of the current (last context) frame: the frame before it warped in, [B, X, Y, Z]."""
        n = context.shape[1]
        return self.sequence(context, poses[:, :n], [n - 1])[:, 0]

    # -- prediction time ---------------------------------------------------------------
    def band(self, anchor: torch.Tensor, previous: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Unknown cells of ``anchor`` [B, X, Y, Z] from ``previous`` (forecast of the frame before,
        labels [B, X, Y, Z]) moved by ``step`` = relative pose of this frame to that one [B, 4, 4]."""
        if not self.band_from_previous:
            return anchor
        moved = warp_labels(previous, step, self.grid, fill=IGNORE_INDEX)
        return torch.where(anchor == IGNORE_INDEX, moved.to(anchor.dtype), anchor)

    def calibrate(self, logits: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        """Decoded logits [B, 18, X, Y, Z] + ``prior_boost`` * one-hot of the known anchor cells."""
        if self.prior_boost == 0:
            return logits
        known = (anchor != IGNORE_INDEX)[:, None].to(logits.dtype)
        return logits + self.prior_boost * known * anchor_prior(anchor)

    # -- training ----------------------------------------------------------------------
    def drop_box(self, anchor: torch.Tensor) -> torch.Tensor:
        """With probability ``dropout``, one random BEV box of ``anchor`` [X, Y, Z] set to unknown (255)."""
        if self.dropout <= 0 or float(torch.rand(())) >= self.dropout:
            return anchor
        anchor = anchor.clone()
        box = []
        for n in anchor.shape[:2]:
            size = int(n * (0.2 + 0.4 * float(torch.rand(()))))
            lo = int(torch.randint(0, n - size + 1, ()))
            box.append(slice(lo, lo + size))
        anchor[box[0], box[1]] = IGNORE_INDEX
        return anchor

    # -- forecaster input --------------------------------------------------------------
    @staticmethod
    def bev(anchors: torch.Tensor, stride: int) -> torch.Tensor:
        """Anchors [B, S, X, Y, Z] -> class-fraction maps [B, S, 19*Z, X/s, Y/s] (``anchor_bev``)."""
        b, s = anchors.shape[:2]
        f = anchor_bev(anchors.flatten(0, 1), stride)
        return f.view(b, s, *f.shape[1:])


__all__ = ['EgoWarpAnchors', 'anchor_sources', 'anchor_prior', 'anchor_bev']
