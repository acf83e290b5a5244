"""OccWorld-style occupancy world model: scene tokenizer + token forecaster as one mmengine model."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel

from occ.registry import MODELS

from .ego import step_poses

# Token targets to skip: not 255 (IGNORE_INDEX), which is a valid code of a 512-code book.
NO_TARGET = -100
# Camera-driven mode: the batch carries the camera model's BEV of every context frame here,
# float [B, T + 1, C, X, Y] (oldest first, current last, each in its own ego frame).
CONTEXT_BEV_KEY = 'context_bev'


def sequence_poses(batch: dict) -> torch.Tensor:
    """Poses of history + current + future frames, [B, T + 1 + H, 4, 4]."""
    parts = []
    hist = batch.get('history')
    if hist and hist['ego2global'].shape[1]:
        parts.append(hist['ego2global'])
    parts.append(batch['ego2global'][:, None])
    if 'future_ego2global' in batch:
        parts.append(batch['future_ego2global'])
    return torch.cat(parts, 1)


def context_semantics(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Past + current labels [B, T + 1, X, Y, Z] and their validity bool [B, T + 1]."""
    cur = batch['voxel_semantics'][:, None]
    valid = torch.ones(cur.shape[0], 1, dtype=torch.bool, device=cur.device)
    hist = batch.get('history')
    if hist and hist['voxel_semantics'].shape[1]:
        return (torch.cat([hist['voxel_semantics'], cur], 1),
                torch.cat([hist['valid'].bool(), valid], 1))
    return cur, valid


@MODELS.register_module()
class OccWorldModel(BaseModel):
    """Forecast future occupancy from past occupancy (or camera BEV) and ego motion.

    Two training stages share this class (``stage``):

    * ``'tokenizer'``: the VQ-VAE reconstructs the current (or every context) frame
      (``loss_rec_*`` from ``occ_losses`` on decoded logits + ``loss_vq``);
      logs codebook perplexity and usage. Predict: the current frame's
      reconstruction (so OccMetric reports reconstruction mIoU/IoU).
    * ``'forecaster'``: the tokenizer is frozen (load it with
      ``tokenizer_ckpt``); context and future frames are tokenised, the
      forecaster is teacher-forced (``loss_token`` CE on the next frame's
      tokens, future frames past the scene end ignored), and the expected code
      of its token distribution is decoded for ``loss_occ_*`` on the future
      labels. Predict: autoregressive rollout of ``num_future`` frames,
      ``semantics_future`` [H, X, Y, Z].

    Args:
        tokenizer: ``OccTokenizer`` config.
        forecaster: ``TokenForecaster`` config (None for the tokenizer stage).
        stage: 'tokenizer' or 'forecaster'.
        num_future: H frames predicted.
        occ_losses: loss configs (``occ.models.losses``) on decoded logits.
        token_loss_weight, occ_loss_weight: weights of the forecaster's two terms.
        context_loss: also train predictions of context frames from earlier ones
            (more supervision per sequence; future frames are always trained).
        temperature: 0 = greedy rollout; > 0 samples (seeded by ``sample_seed``).
        tokenizer_frames: frames the tokenizer stage reconstructs: 'current' (one a
            sample, cheapest) or 'context' (every existing past frame too).
        tokenizer_ckpt: checkpoint whose ``tokenizer.*`` weights are loaded (forecaster stage).

    Camera-driven mode: when the batch has ``context_bev`` [B, T + 1, C, X, Y]
    (the camera model's BEV per context frame) and the forecaster was built
    with ``bev_channels=C``, those maps replace the tokenised ground-truth
    context in both training and prediction (docs/WORLD.md).
    """

    def __init__(self, tokenizer: dict, forecaster: Optional[dict] = None, stage: str = 'tokenizer',
                 num_future: int = 6, occ_losses: Optional[list] = None, token_loss_weight: float = 1.0,
                 occ_loss_weight: float = 0.5, context_loss: bool = True, temperature: float = 0.0,
                 sample_seed: int = 0, tokenizer_frames: str = 'current', tokenizer_ckpt: Optional[str] = None, data_preprocessor=None,
                 init_cfg=None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='OccDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if stage not in ('tokenizer', 'forecaster'):
            raise ValueError(f"OccWorldModel: stage must be 'tokenizer' or 'forecaster', got {stage!r}")
        if stage == 'forecaster' and forecaster is None:
            raise ValueError('OccWorldModel: the forecaster stage needs a forecaster config')
        if tokenizer_frames not in ('current', 'context'):
            raise ValueError(f"OccWorldModel: tokenizer_frames must be 'current' or 'context', got {tokenizer_frames!r}")
        self.stage, self.num_future, self.tokenizer_frames = stage, int(num_future), tokenizer_frames
        self.tokenizer = MODELS.build(tokenizer)
        self.forecaster = MODELS.build(forecaster) if forecaster is not None else None
        self.occ_losses = torch.nn.ModuleList(MODELS.build(c) for c in (occ_losses or [dict(type='WeightedCELoss')]))
        self.token_loss_weight, self.occ_loss_weight = float(token_loss_weight), float(occ_loss_weight)
        self.context_loss, self.temperature, self.sample_seed = bool(context_loss), float(temperature), int(sample_seed)
        if tokenizer_ckpt:
            self.load_tokenizer(tokenizer_ckpt)
        if stage == 'forecaster':
            self.tokenizer.requires_grad_(False)
            self.tokenizer.eval()

    def load_tokenizer(self, path: str) -> None:
        """Load ``tokenizer.*`` weights from a checkpoint of the tokenizer stage."""
        try:
            ckpt = torch.load(path, map_location='cpu', weights_only=False)
        except (OSError, RuntimeError, EOFError) as e:
            raise RuntimeError(f'{path}: cannot read the tokenizer checkpoint ({e})') from e
        state = ckpt.get('state_dict', ckpt)
        sub = {k[len('tokenizer.'):]: v for k, v in state.items() if k.startswith('tokenizer.')}
        if not sub:
            raise RuntimeError(f'{path}: no tokenizer.* weights (is it a tokenizer-stage checkpoint?)')
        self.tokenizer.load_state_dict(sub)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.stage == 'forecaster':
            self.tokenizer.eval()   # frozen: no EMA codebook updates, no restarts
        return self

    # ------------------------------------------------------------------ pieces
    def _occ_loss(self, logits: torch.Tensor, target: torch.Tensor, prefix: str) -> dict:
        return {f'{prefix}_{type(m).__name__.replace("Loss", "").lower()}': m(logits, target.long())
                for m in self.occ_losses}

    @torch.no_grad()
    def tokenize(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels [B, S, X, Y, Z] -> tokens long [B, S, x, y] (frozen tokenizer)."""
        b, s = labels.shape[:2]
        idx = self.tokenizer.encode(labels.flatten(0, 1))['indices']
        return idx.view(b, s, *idx.shape[1:])

    def _decode_to_labels(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens [B, S, x, y] -> uint8 labels [B, S, X, Y, Z]."""
        b, s = tokens.shape[:2]
        logits = self.tokenizer.decode_indices(tokens.flatten(0, 1))
        return logits.argmax(1).to(torch.uint8).view(b, s, *logits.shape[2:])

    def rollout(self, batch: dict, context_feats: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Predicted future labels uint8 [B, H, X, Y, Z] (autoregressive, decoded by the tokenizer).

        ``context_feats`` [B, T + 1, C, X, Y] (camera BEV per context frame)
        replaces the ground-truth context labels (camera-driven mode).
        """
        poses = sequence_poses(batch)
        n_ctx = poses.shape[1] - batch['future_ego2global'].shape[1] if 'future_ego2global' in batch else poses.shape[1]
        ego = step_poses(poses)
        if ego.shape[1] < n_ctx + self.num_future:
            raise ValueError(f'OccWorldModel: poses for {ego.shape[1]} frames, need {n_ctx + self.num_future}')
        gen = torch.Generator(device=poses.device).manual_seed(self.sample_seed)
        tokens = None if context_feats is not None else self.tokenize(context_semantics(batch)[0])
        fut, _ = self.forecaster.generate(ego[:, :n_ctx + self.num_future], self.num_future, tokens=tokens,
                                          context_feats=context_feats, temperature=self.temperature,
                                          generator=gen)
        return self._decode_to_labels(fut)

    # ------------------------------------------------------------------ modes
    def forward(self, inputs: dict, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss_tokenizer(inputs) if self.stage == 'tokenizer' else self.loss_forecaster(inputs)
        if mode == 'predict':
            return self.predict(inputs)
        if mode == 'tensor':
            return self.tokenizer(inputs['voxel_semantics'])
        raise ValueError(f"OccWorldModel: unknown mode {mode!r} (use 'loss', 'predict' or 'tensor')")

    def loss_tokenizer(self, batch: dict) -> dict:
        if self.tokenizer_frames == 'current':
            labels = batch['voxel_semantics']
        else:
            sem, valid = context_semantics(batch)
            labels = sem[valid]                                     # [N, X, Y, Z] existing frames only
        out = self.tokenizer(labels)
        losses = self._occ_loss(out['logits'], labels, 'loss_rec')
        losses['loss_vq'] = out['loss_vq']
        losses['perplexity'] = out['perplexity'].detach()
        losses['code_usage'] = out['code_usage'].detach()
        return losses

    def loss_forecaster(self, batch: dict) -> dict:
        ctx, ctx_valid = context_semantics(batch)
        fut = batch['future_semantics']
        labels = torch.cat([ctx, fut], 1)                           # [B, S, X, Y, Z]
        valid = torch.cat([ctx_valid, batch['future_valid'].bool()], 1)
        n_ctx = ctx.shape[1]
        tokens = self.tokenize(labels)
        ego = step_poses(sequence_poses(batch))
        feats = batch.get(CONTEXT_BEV_KEY)
        if feats is not None:    # camera-driven: context frames enter as BEV maps, the future as tokens
            if feats.shape[1] != n_ctx:
                raise ValueError(f'OccWorldModel: {CONTEXT_BEV_KEY} has {feats.shape[1]} frames, the context {n_ctx}')
            logits = self.forecaster(tokens[:, n_ctx:-1] if labels.shape[1] - 1 > n_ctx else None,
                                     ego[:, :-1], context_feats=feats)
        else:
            logits = self.forecaster(tokens[:, :-1], ego[:, :-1])  # [B, S-1, K, x, y]; s predicts s+1
        target = tokens[:, 1:].clone()
        # A target counts when it and its input frame exist (invalid history frames are
        # repeats of the earliest one; invalid future frames are 255 past the scene end).
        ok = valid[:, 1:] & valid[:, :-1]
        if not self.context_loss:
            ok[:, :n_ctx - 1] = False
        target[~ok] = NO_TARGET
        losses = {'loss_token': self.token_loss_weight *
                  F.cross_entropy(logits.transpose(1, 2), target, ignore_index=NO_TARGET)}
        if self.occ_loss_weight > 0:
            f_logits = logits[:, n_ctx - 1:]                           # predictions of the future frames
            f_ok = ok[:, n_ctx - 1:]
            if f_ok.any():
                probs = f_logits[f_ok].softmax(1)                      # [M, K, x, y]
                occ = self.tokenizer.decode_probs(probs)
                for k, v in self._occ_loss(occ, fut[f_ok], 'loss_occ').items():
                    losses[k] = self.occ_loss_weight * v
            else:
                losses['loss_occ_none'] = f_logits.sum() * 0
        with torch.no_grad():
            sel = target != NO_TARGET
            losses['token_acc'] = (logits.argmax(2)[sel] == target[sel]).float().mean() if sel.any() else logits.new_zeros(())
        return losses

    @torch.no_grad()
    def predict(self, batch: dict) -> list:
        rec = self.tokenizer(batch['voxel_semantics'])['logits'].argmax(1).to(torch.uint8)
        fut = self.rollout(batch, batch.get(CONTEXT_BEV_KEY)) if self.stage == 'forecaster' else None
        tokens = batch.get('sample_token') or [None] * len(rec)
        out = []
        for i in range(len(rec)):
            d = {'sample_token': tokens[i], 'semantics': rec[i].cpu().numpy()}
            if fut is not None:
                d['semantics_future'] = fut[i].cpu().numpy()
            out.append(d)
        return out

