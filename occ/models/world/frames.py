"""Which frames a tokenizer learns to reconstruct, and on which anchor (stage 1 of the world model).

A frames part turns a sequence batch into (labels [N, X, Y, Z], anchor [N, X, Y, Z]
or None) for the tokenizer, in training (``train_pairs``) and at evaluation
(``eval_pair``: the current frame), and calibrates the decoded logits
(``calibrate``). It is the only difference between the stage-1 models of the
plain OccWorld tokenizer (``CurrentFrames``) and the conditional tokenizer of
residual forecasting (``AnchoredPairs``).
"""
from __future__ import annotations

import torch

from occ.data.sequence import CONTEXT_CAMERA_KEY, SequenceBatch
from occ.registry import MODELS


@MODELS.register_module()
class CurrentFrames:
    """Every sample's current frame, alone (a plain VQ-VAE).

    Args:
        flip: training only: probability of mirroring a batch along x and, independently,
            along y (a single frame has no pose to keep consistent).
    """

    def __init__(self, flip: float = 0.0):
        self.flip = float(flip)

    def train_pairs(self, batch: dict) -> tuple:
        labels = batch['voxel_semantics']
        for dim in (1, 2):
            if self.flip > 0 and float(torch.rand(())) < self.flip:
                labels = labels.flip(dim)
        return labels, None

    def eval_pair(self, batch: dict) -> tuple:
        return batch['voxel_semantics'], None

    def calibrate(self, logits: torch.Tensor, anchor) -> torch.Tensor:
        return logits

    def __repr__(self) -> str:
        return f'CurrentFrames(flip={self.flip})'


@MODELS.register_module()
class AnchoredPairs:
    """Random (frame j, anchor = frame j - k ego-warped into j) pairs of each sequence.

    Gaps k ~ U{1..``max_gap``} are the gaps a forecast decodes at (every future
    frame t+h is decoded on frame t). Evaluation: the current frame given the
    previous frame ego-warped.

    Args:
        anchors: ``EgoWarpAnchors`` config (warp, anchor dropout, calibration).
        pairs_per_sample: pairs drawn from each sequence per step.
        max_gap: largest k (the forecast horizon H).
        camera_anchor_prob: probability that a pair's anchor is the camera model's
            prediction of frame j - k (``batch[camera_key]``, context frames only)
            instead of its ground truth, so tokens also learn to correct the camera.
    """

    def __init__(self, anchors: dict, pairs_per_sample: int = 2, max_gap: int = 6,
                 camera_anchor_prob: float = 0.0, camera_key: str = CONTEXT_CAMERA_KEY):
        self.anchors = MODELS.build(anchors) if isinstance(anchors, dict) else anchors
        self.pairs_per_sample, self.max_gap = int(pairs_per_sample), int(max_gap)
        self.camera_anchor_prob, self.camera_key = float(camera_anchor_prob), camera_key

    def __repr__(self) -> str:
        return (f'AnchoredPairs({self.anchors!r}, pairs_per_sample={self.pairs_per_sample}, '
                f'max_gap={self.max_gap}, camera_anchor_prob={self.camera_anchor_prob})')

    def train_pairs(self, batch: dict) -> tuple:
        seq = SequenceBatch.of(batch)
        cam = batch.get(self.camera_key) if self.camera_anchor_prob > 0 else None
        if self.camera_anchor_prob > 0 and cam is None:
            raise KeyError(f'AnchoredPairs: camera_anchor_prob > 0 needs batch[{self.camera_key!r}]')
        frames, anchors = [], []
        s = seq.labels.shape[1]
        for b in range(seq.labels.shape[0]):
            for _ in range(self.pairs_per_sample):
                use_cam = cam is not None and float(torch.rand(())) < self.camera_anchor_prob
                n_src = cam.shape[1] if use_cam else s
                k = int(torch.randint(1, self.max_gap + 1, ()))
                cand = []
                while k >= 1 and not cand:         # shrink the gap until the sequence has such a pair
                    cand = [j for j in range(k, s) if seq.valid[b, j] and seq.valid[b, j - k] and j - k < n_src]
                    if not cand:
                        k -= 1
                if not cand:
                    continue
                j = cand[int(torch.randint(0, len(cand), ()))]
                src = (cam if use_cam else seq.labels)[b:b + 1, j - k]
                anchor = self.anchors.warp(src, seq.poses[b:b + 1, j], seq.poses[b:b + 1, j - k])[0]
                frames.append(seq.labels[b, j])
                anchors.append(self.anchors.drop_box(anchor))
        if not frames:
            raise ValueError('AnchoredPairs: no sequence in the batch has two valid frames')
        return torch.stack(frames), torch.stack(anchors)

    def eval_pair(self, batch: dict) -> tuple:
        seq = SequenceBatch.of(batch, with_future=False)
        if seq.num_context < 2:
            raise ValueError('AnchoredPairs: evaluation needs a past frame (num_history >= 1)')
        return batch['voxel_semantics'], self.anchors.current(seq.context, seq.poses)

    def calibrate(self, logits: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        return self.anchors.calibrate(logits, anchor)


__all__ = ['CurrentFrames', 'AnchoredPairs']
