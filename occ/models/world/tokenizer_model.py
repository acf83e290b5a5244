"""Stage 1 of the world model: train a scene tokenizer (VQ-VAE) to reconstruct occupancy frames."""
from __future__ import annotations

from typing import Optional

import torch
from mmengine.model import BaseModel

from occ.registry import MODELS


def build_losses(losses: Optional[list]) -> torch.nn.ModuleList:
    """Occupancy losses (``occ.models.losses`` configs) on decoded logits; default flat CE."""
    return torch.nn.ModuleList(MODELS.build(c) for c in (losses or [dict(type='WeightedCELoss', class_weight=None)]))


def occ_loss_terms(losses: torch.nn.ModuleList, logits: torch.Tensor, target: torch.Tensor, prefix: str) -> dict:
    """``{prefix_<loss name>: value}`` of every loss on logits [N, 18, X, Y, Z] and labels [N, X, Y, Z]."""
    return {f'{prefix}_{type(m).__name__.replace("Loss", "").lower()}': m(logits, target.long()) for m in losses}


@MODELS.register_module()
class OccTokenizerModel(BaseModel):
    """A tokenizer (``OccTokenizer`` / ``ConditionalOccTokenizer``) trained on the frames a frames part picks.

    loss: ``frames.train_pairs(batch)`` -> (labels, anchor or None) -> tokenizer ->
    ``loss_rec_*`` (``losses``) + ``loss_vq``; logs the batch's codebook ``perplexity``
    and ``code_usage``. predict: the current frame's reconstruction (``semantics``;
    conditional: given the previous frame ego-warped, ``frames.calibrate``d) and its
    ``tokens`` [x, y], so OccMetric scores reconstruction mIoU / IoU.

    Args:
        tokenizer: tokenizer config.
        frames: ``CurrentFrames`` (plain VQ-VAE) or ``AnchoredPairs`` (conditional) config.
        losses: reconstruction losses (default flat CE).
    """

    def __init__(self, tokenizer: dict, frames: Optional[dict] = None, losses: Optional[list] = None,
                 data_preprocessor=None, init_cfg=None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='OccDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.tokenizer = MODELS.build(tokenizer)
        self.frames = MODELS.build(frames or dict(type='CurrentFrames'))
        self.losses = build_losses(losses)

    def forward(self, inputs: dict, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs)
        if mode == 'predict':
            return self.predict(inputs)
        if mode == 'tensor':
            return self.tokenizer(*self.frames.eval_pair(inputs))
        raise ValueError(f"OccTokenizerModel: unknown mode {mode!r} (use 'loss', 'predict' or 'tensor')")

    def loss(self, batch: dict) -> dict:
        labels, anchor = self.frames.train_pairs(batch)
        out = self.tokenizer(labels, anchor)
        losses = occ_loss_terms(self.losses, out['logits'], labels, 'loss_rec')
        losses['loss_vq'] = out['loss_vq']
        losses['perplexity'] = out['perplexity'].detach()
        losses['code_usage'] = out['code_usage'].detach()
        return losses

    @torch.no_grad()
    def predict(self, batch: dict) -> list:
        labels, anchor = self.frames.eval_pair(batch)
        out = self.tokenizer(labels, anchor)
        rec = self.frames.calibrate(out['logits'], anchor).argmax(1).to(torch.uint8).cpu().numpy()
        tokens = batch.get('sample_token') or [None] * len(rec)
        idx = out['indices'].cpu().numpy()
        return [{'sample_token': tokens[i], 'semantics': rec[i], 'tokens': idx[i]} for i in range(len(rec))]


__all__ = ['OccTokenizerModel', 'build_losses', 'occ_loss_terms']
