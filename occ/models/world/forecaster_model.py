"""Stage 2 of the world model: a causal token forecaster on a frozen tokenizer.

One route from batch to loss, top to bottom (``teacher_forced``, then ``loss``):

    batch -> SequenceBatch (context + future labels, validity, poses)
          -> context part: base labels of the context (GT or camera) [+ camera BEV]
          -> anchors part: every frame's anchor (ego-warped context frame)      [residual only]
          -> frozen tokenizer: tokens of every frame, encoded on its anchor (the targets)
          -> TokenForecaster, teacher-forced: logits of frame s+1 from frames <= s
          -> loss_token (CE over codes) + loss_occ (decoded expected code vs labels)

Prediction rolls the forecaster out and decodes each forecast frame's expected
code on its anchor (the current frame ego-warped into t+h; ``anchors.band`` and
``anchors.calibrate`` at prediction time).
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel

from occ.data.sequence import SequenceBatch
from occ.geometry import relative_pose
from occ.registry import MODELS

from .ego import step_poses
from .tokenizer_model import build_losses, occ_loss_terms

# Token targets to skip: not 255 (IGNORE_INDEX), which is a valid code of a 512-code book.
NO_TARGET = -100


def load_tokenizer_weights(tokenizer: torch.nn.Module, path: str) -> str:
    """Load the ``tokenizer.*`` weights of a stage-1 checkpoint (a file, or a work dir: its newest
    verified checkpoint) into ``tokenizer``; returns the checkpoint file. Errors name the path."""
    from occ.engine.checkpoint import load_state_dict, resolve_last_checkpoint
    ckpt = path
    if os.path.isdir(path):
        ckpt = resolve_last_checkpoint(path)
        if ckpt is None:
            raise FileNotFoundError(f'{path}: no checkpoint in this tokenizer work dir (train stage 1 first)')
    elif not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: tokenizer checkpoint not found (train stage 1 first)')
    state = load_state_dict(ckpt)
    sub = {k[len('tokenizer.'):]: v for k, v in state.items() if k.startswith('tokenizer.')}
    if not sub:
        raise RuntimeError(f'{ckpt}: no tokenizer.* weights (is it a stage-1 checkpoint?)')
    tokenizer.load_state_dict(sub)
    return ckpt


class FrozenTokenizerModel(BaseModel):
    """Base of the models that use a trained tokenizer without training it (kept in eval mode:
    no EMA codebook updates, no dead-code restarts, no gradients).

    ``tokenizer_ckpt`` is loaded by ``init_weights`` (what the Runner calls before training),
    not when the model is built: a config builds before stage 1 has run, and a stage-2
    checkpoint already holds the tokenizer's weights.
    """

    def __init__(self, tokenizer: dict, tokenizer_ckpt: Optional[str] = None, anchors: Optional[dict] = None,
                 context: Optional[dict] = None, num_future: int = 6, data_preprocessor=None, init_cfg=None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='OccDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.tokenizer = MODELS.build(tokenizer)
        self.tokenizer_ckpt = tokenizer_ckpt
        self.tokenizer.requires_grad_(False)
        self.tokenizer.eval()
        self.anchors = MODELS.build(anchors) if isinstance(anchors, dict) else anchors
        self.context = MODELS.build(context or dict(type='GroundTruthContext'))
        self.num_future = int(num_future)

    def init_weights(self):
        super().init_weights()
        if self.tokenizer_ckpt:
            from mmengine.logging import print_log
            ckpt = load_tokenizer_weights(self.tokenizer, self.tokenizer_ckpt)
            print_log(f'{type(self).__name__}: tokenizer weights from {ckpt}', logger='current')

    def train(self, mode: bool = True):
        super().train(mode)
        self.tokenizer.eval()
        return self

    @torch.no_grad()
    def tokenize(self, labels: torch.Tensor, anchors: Optional[torch.Tensor]) -> torch.Tensor:
        """Labels [B, S, X, Y, Z] (+ their anchors, same shape, or None) -> tokens long [B, S, x, y]."""
        b, s = labels.shape[:2]
        idx = self.tokenizer.encode(labels.flatten(0, 1), None if anchors is None else anchors.flatten(0, 1))['indices']
        return idx.view(b, s, *idx.shape[1:])

    def decode(self, probs: torch.Tensor, anchor: Optional[torch.Tensor]) -> torch.Tensor:
        """A token distribution [B, K, x, y] -> logits [B, 18, X, Y, Z]: its expected code decoded on ``anchor``."""
        logits = self.tokenizer.decode_probs(probs, anchor)
        return logits if anchor is None else self.anchors.calibrate(logits, anchor)

    def forward(self, inputs: dict, data_samples=None, mode: str = 'predict'):
        if mode == 'loss':
            return self.loss(inputs)
        if mode == 'predict':
            return self.predict(inputs)
        raise ValueError(f"{type(self).__name__}: unknown mode {mode!r} (use 'loss' or 'predict')")

    def loss(self, batch: dict) -> dict:
        raise ValueError(f'{type(self).__name__} has nothing to train')

    def outputs(self, batch: dict, current: torch.Tensor, future: torch.Tensor) -> list:
        """Per sample ``semantics`` [X, Y, Z] and ``semantics_future`` [H, X, Y, Z] (uint8 numpy)."""
        tokens = batch.get('sample_token') or [None] * len(future)
        cur, fut = current.to(torch.uint8).cpu().numpy(), future.to(torch.uint8).cpu().numpy()
        return [{'sample_token': tokens[i], 'semantics': cur[i], 'semantics_future': fut[i]} for i in range(len(fut))]


@MODELS.register_module()
class OccForecasterModel(FrozenTokenizerModel):
    """Forecast occupancy at +0.5 s .. +H/2 s from the context frames and the known ego motion.

    Args:
        tokenizer: tokenizer config (must match the stage-1 checkpoint).
        forecaster: ``TokenForecaster`` config (``anchor_channels`` with anchors,
            ``bev_channels`` with a camera context).
        tokenizer_ckpt: stage-1 checkpoint file or work dir, loaded by ``init_weights``.
        anchors: ``EgoWarpAnchors`` config for residual forecasting (conditional tokenizer);
            None: plain OccWorld (a forecast frame is decoded from its tokens alone).
        context: ``GroundTruthContext`` (default) or ``CameraContext`` config.
        num_future: H frames forecast.
        losses: occupancy losses on the decoded forecast frames (default flat CE).
        token_loss_weight, occ_loss_weight: weights of ``loss_token`` and ``loss_occ_*``.
        context_loss: also train predictions of context frames from earlier ones.
        temperature: 0 = greedy rollout; > 0 samples tokens (seeded by ``sample_seed``).

    predict: ``semantics`` = the current frame the forecast starts from (ground truth,
    or the camera model's prediction), ``semantics_future`` [H, X, Y, Z].
    """

    def __init__(self, tokenizer: dict, forecaster: dict, tokenizer_ckpt: Optional[str] = None,
                 anchors: Optional[dict] = None, context: Optional[dict] = None, num_future: int = 6,
                 losses: Optional[list] = None, token_loss_weight: float = 1.0, occ_loss_weight: float = 0.5,
                 context_loss: bool = True, temperature: float = 0.0, sample_seed: int = 0,
                 data_preprocessor=None, init_cfg=None):
        super().__init__(tokenizer, tokenizer_ckpt, anchors, context, num_future, data_preprocessor, init_cfg)
        self.forecaster = MODELS.build(forecaster)
        self.losses = build_losses(losses)
        self.token_loss_weight, self.occ_loss_weight = float(token_loss_weight), float(occ_loss_weight)
        self.context_loss, self.temperature, self.sample_seed = bool(context_loss), float(temperature), int(sample_seed)

    def _anchor_maps(self, anchors: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Anchors of frames 1..S-1 [B, S-1, ...] -> forecaster input (entry s: the frame s+1 it predicts)."""
        return None if anchors is None else self.anchors.bev(anchors[:, 1:], self.tokenizer.stride)

    def teacher_forced(self, batch: dict) -> dict:
        """The forecaster on every frame of the sequence at once (causal: entry s sees frames <= s).

        Returns ``logits`` [B, S-1, K, x, y] (entry s: frame s+1's tokens), ``tokens`` long
        [B, S, x, y] (every frame encoded on the anchor it is decoded on), ``anchors``
        [B, S, X, Y, Z] or None, and the ``seq`` (``SequenceBatch``).
        """
        seq = SequenceBatch.of(batch)
        base, feats = self.context.base(batch, seq), self.context.features(batch, seq)
        anchors = None if self.anchors is None else self.anchors.sequence(base, seq.poses)
        tokens = self.tokenize(seq.labels, anchors)
        given = tokens if feats is None else tokens[:, seq.num_context:]     # frames that enter as tokens
        logits = self.forecaster(given[:, :-1] if given.shape[1] > 1 else None, step_poses(seq.poses)[:, :-1],
                                 context_feats=feats, anchor_feats=self._anchor_maps(anchors))
        return {'logits': logits, 'tokens': tokens, 'anchors': anchors, 'seq': seq}

    def loss(self, batch: dict) -> dict:
        tf = self.teacher_forced(batch)
        logits, tokens, anchors, seq = tf['logits'], tf['tokens'], tf['anchors'], tf['seq']
        n_ctx = seq.num_context
        # A target counts when it and its input frame exist (invalid history frames repeat the
        # earliest one; invalid future frames are 255 past the scene end).
        ok = seq.valid[:, 1:] & seq.valid[:, :-1]
        if not self.context_loss:
            ok[:, :n_ctx - 1] = False
        target = tokens[:, 1:].masked_fill(~ok[:, :, None, None], NO_TARGET)
        losses = {'loss_token': self.token_loss_weight *
                  F.cross_entropy(logits.transpose(1, 2), target, ignore_index=NO_TARGET)}
        if self.occ_loss_weight > 0:
            f_ok = ok[:, n_ctx - 1:]                                  # predictions of the future frames
            if f_ok.any():
                probs = logits[:, n_ctx - 1:][f_ok].softmax(1)        # [M, K, x, y]
                anchor = None if anchors is None else anchors[:, n_ctx:][f_ok]
                occ = self.tokenizer.decode_probs(probs, anchor)
                for k, v in occ_loss_terms(self.losses, occ, seq.labels[:, n_ctx:][f_ok], 'loss_occ').items():
                    losses[k] = self.occ_loss_weight * v
            else:
                losses['loss_occ_none'] = logits.sum() * 0
        with torch.no_grad():
            sel = target != NO_TARGET
            losses['token_acc'] = ((logits.argmax(2)[sel] == target[sel]).float().mean() if sel.any()
                                   else logits.new_zeros(()))
        return losses

    @torch.no_grad()
    def forecast_logits(self, batch: dict) -> tuple:
        """(current frame [B, X, Y, Z], forecast logits [B, H, 18, X, Y, Z]); never reads future labels."""
        seq = SequenceBatch.of(batch, with_future=False)
        n_ctx, h_all = seq.num_context, self.num_future
        if seq.num_future < h_all:
            raise ValueError(f'{type(self).__name__}: poses of {seq.num_future} future frames, need {h_all}')
        poses = seq.poses[:, :n_ctx + h_all]
        base, feats = self.context.base(batch, seq), self.context.features(batch, seq)
        anchors = None if self.anchors is None else self.anchors.sequence(base, poses)
        tokens = None if feats is not None else self.tokenize(base, None if anchors is None else anchors[:, :n_ctx])
        gen = torch.Generator(device=poses.device).manual_seed(self.sample_seed)
        _, fut_logits = self.forecaster.generate(step_poses(poses), h_all, tokens=tokens, context_feats=feats,
                                                 temperature=self.temperature, generator=gen,
                                                 anchor_feats=self._anchor_maps(anchors))
        out, prev = [], None
        for h in range(h_all):
            anchor = None
            if anchors is not None:
                anchor = anchors[:, n_ctx + h]
                if prev is not None:
                    step = relative_pose(poses[:, n_ctx + h], poses[:, n_ctx + h - 1])
                    anchor = self.anchors.band(anchor, prev, step)
            out.append(self.decode(fut_logits[:, h].softmax(1), anchor))
            prev = out[-1].argmax(1)
        return base[:, -1], torch.stack(out, 1)

    @torch.no_grad()
    def predict(self, batch: dict) -> list:
        current, logits = self.forecast_logits(batch)
        return self.outputs(batch, current, logits.argmax(2))


@MODELS.register_module()
class TokenizerOracle(FrozenTokenizerModel):
    """Diagnostic, not a forecast: every future frame decoded from its *own* tokens on its forecast anchor.

    What perfect token forecasts would give (the tokenizer's reconstruction at gap h
    given frame t ego-warped; camera context: the camera's prediction of frame t).
    It reads the future labels. Same arguments as ``OccForecasterModel``'s tokenizer part.
    """

    @torch.no_grad()
    def predict(self, batch: dict) -> list:
        seq = SequenceBatch.of(batch)
        n_ctx, h_all = seq.num_context, self.num_future
        base = self.context.base(batch, seq)
        frames = range(n_ctx, n_ctx + h_all)
        anchors = None if self.anchors is None else self.anchors.sequence(base, seq.poses, frames)
        future = seq.labels[:, n_ctx:n_ctx + h_all]
        b = future.shape[0]
        flat_anchor = None if anchors is None else anchors.flatten(0, 1)
        q = self.tokenizer.encode(future.flatten(0, 1), flat_anchor)
        probs = F.one_hot(q['indices'], self.tokenizer.num_codes).permute(0, 3, 1, 2).float()
        logits = self.decode(probs, flat_anchor)
        return self.outputs(batch, base[:, -1], logits.argmax(1).view(b, h_all, *logits.shape[2:]))


__all__ = ['OccForecasterModel', 'TokenizerOracle', 'FrozenTokenizerModel', 'load_tokenizer_weights', 'NO_TARGET']
