"""OccWorld-style occupancy world model: scene tokenizer + token forecaster as one mmengine model."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel

from occ.constants import IGNORE_INDEX
from occ.geometry import OCC3D_RANGE, OccGrid, relative_pose, warp_labels
from occ.registry import MODELS

from .conditional_tokenizer import anchor_bev, anchor_prior
from .ego import step_poses

# Token targets to skip: not 255 (IGNORE_INDEX), which is a valid code of a 512-code book.
NO_TARGET = -100
# Camera-driven mode: the batch carries the camera model's BEV of every context frame here,
# float [B, T + 1, C, X, Y] (oldest first, current last, each in its own ego frame).
CONTEXT_BEV_KEY = 'context_bev'
# ... and the camera model's occupancy prediction (argmax) of the same frames, uint8 [B, T + 1, X, Y, Z]:
# the anchor a conditional tokenizer decodes on in camera-driven mode (never the ground truth).
CONTEXT_CAMERA_KEY = 'context_camera_semantics'


def anchor_sources(num_frames: int, num_context: int) -> list:
    """Index of the frame each frame's anchor comes from: [0, 0, 1, .., n_ctx - 2, n_ctx - 1, .., n_ctx - 1].

    A context frame s >= 1 is anchored on its predecessor s - 1; every future
    frame on the current frame (index ``num_context - 1``), so a forecast is
    never built on a warp of a warp; frame 0 on itself.
    """
    return [0] + [min(j - 1, num_context - 1) for j in range(1, num_frames)]


def warp_sequence(labels: torch.Tensor, poses: torch.Tensor, sources: list, pc_range, voxel_size: float,
                  frames=None) -> torch.Tensor:
    """Anchors of a sequence: labels [B, S_l, X, Y, Z], poses [B, S, 4, 4] -> [B, len(frames), X, Y, Z].

    Anchor of frame j = labels of frame ``sources[j]`` warped into frame j's ego
    frame (``occ.geometry.warp_labels``; cells from outside the grid are 255, unknown).
    ``frames``: which j (default all with ``sources[j] < S_l``).
    """
    frames = list(range(len(sources))) if frames is None else list(frames)
    grid = OccGrid.from_voxel(voxel_size, pc_range)
    out = []
    for j in frames:
        a = sources[j]
        if a == j:
            out.append(labels[:, a])
            continue
        dst2src = relative_pose(poses[:, j], poses[:, a])
        out.append(warp_labels(labels[:, a], dst2src, grid, fill=IGNORE_INDEX))
    return torch.stack(out, 1)


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

    * ``'tokenizer'``: the VQ-VAE reconstructs frames (``loss_rec_*`` from
      ``occ_losses`` on decoded logits + ``loss_vq``); logs codebook perplexity
      and usage. Plain tokenizer: the current (or every context) frame. A
      conditional tokenizer (``ConditionalOccTokenizer``): ``pairs_per_sample``
      random (frame, anchor) pairs per sequence, the anchor being an earlier
      frame 1..``num_future`` steps back warped into the frame (the gaps a
      forecast decodes at). Predict: the current frame's reconstruction (so
      OccMetric reports reconstruction mIoU/IoU; conditional: given the previous
      frame ego-warped).
    * ``'forecaster'``: the tokenizer is frozen (load it with
      ``tokenizer_ckpt``); context and future frames are tokenised, the
      forecaster is teacher-forced (``loss_token`` CE on the next frame's
      tokens, future frames past the scene end ignored), and the expected code
      of its token distribution is decoded for ``loss_occ_*`` on the future
      labels. Predict: autoregressive rollout of ``num_future`` frames,
      ``semantics_future`` [H, X, Y, Z].

    Residual forecasting (conditional tokenizer): frame j's tokens are encoded
    and decoded against its *anchor* (``anchor_sources``: the previous frame for
    context frames, the current frame t for every future frame t+h, ego-warped
    into frame j; ``warp_sequence``). The forecaster also reads the anchor of the
    frame it predicts (``anchor_bev``), and a forecast frame is decoded as
    ``tokenizer.decode(predicted tokens, warp(frame t -> t+h))``: with zero
    residual that is exactly the ego-warp baseline.

    Args:
        tokenizer: ``OccTokenizer`` / ``ConditionalOccTokenizer`` config.
        forecaster: ``TokenForecaster`` config (None for the tokenizer stage).
        stage: 'tokenizer' or 'forecaster'.
        num_future: H frames predicted.
        occ_losses: loss configs (``occ.models.losses``) on decoded logits.
        token_loss_weight, occ_loss_weight: weights of the forecaster's two terms.
        context_loss: also train predictions of context frames from earlier ones
            (more supervision per sequence; future frames are always trained).
        temperature: 0 = greedy rollout; > 0 samples (seeded by ``sample_seed``).
        tokenizer_frames: frames the plain tokenizer stage reconstructs: 'current' (one a
            sample, cheapest) or 'context' (every existing past frame too).
        tokenizer_ckpt: checkpoint whose ``tokenizer.*`` weights are loaded (forecaster stage).
        context_source: 'gt' (tokenised ground-truth context), 'camera' (``context_bev``
            and, for anchors, ``context_camera_semantics`` of the batch; ground truth is
            then only read as training targets), or 'auto' (camera iff the batch has
            ``context_bev``).
        pairs_per_sample: (frame, anchor) pairs per sequence for the conditional tokenizer.
        pc_range, voxel_size: the label grid (for the anchor warps).
        predict_mode: 'forecast', or 'oracle' (diagnostic, reads the future labels: each
            future frame decoded from its *own* tokens on the forecast's anchor, i.e. the
            conditional tokenizer's reconstruction at gap h).
        camera_anchor_prob: conditional tokenizer stage: probability that a pair's anchor
            is the camera model's prediction of the earlier (context) frame instead of its
            ground truth (needs ``context_camera_semantics``), so that tokens learn to
            correct the camera model too (the camera-driven mode's tokenizer).
        target_anchors: forecaster stage, camera-driven: the anchors target tokens are
            encoded on: 'gt' (ground truth warped: tokens = what changed in the world) or
            'decode' (the camera anchors the frames are decoded on: tokens = what to change
            in the camera's prediction; use with a tokenizer trained with camera anchors).
        decode_soft: rollout decodes each forecast frame from its *expected code*
            (softmax over codes . codebook, ``decode_probs``), the quantity the occupancy
            loss trains, instead of the code of the most likely token; the argmax (or
            sampled) tokens still feed the next step. Conditional tokenizer only.
        band_from_previous: rollout only: a forecast frame's anchor cells that are unknown
            (outside frame t's grid) take the model's own forecast of the previous frame
            moved one step instead (known cells stay the direct warp of frame t, so
            nearest-voxel warps are never chained on them); the decoder then only fills
            the thin strip that entered in the last step.
        decode_prior_boost: prediction only (rollout, oracle, current-frame
            reconstruction): extra weight on the one-hot of *known* anchor cells, a
            calibration that keeps the decoder from flipping anchor cells on weak
            evidence (chosen on training scenes, docs/WORLD.md; 0 = off).
        anchor_dropout: conditional tokenizer stage: probability that a random BEV box
            (20-60 % of each side) of a pair's anchor is blanked to unknown, so the
            tokens, not the anchor, must carry the frame there (as for cells that enter
            the grid); without it the decoder learned to ignore the tokens.

    Camera-driven mode: the context frames enter the forecaster as the camera
    model's BEV maps [B, T + 1, C, X, Y] (forecaster built with
    ``bev_channels=C``) instead of ground-truth tokens (docs/WORLD.md).
    """

    def __init__(self, tokenizer: dict, forecaster: Optional[dict] = None, stage: str = 'tokenizer',
                 num_future: int = 6, occ_losses: Optional[list] = None, token_loss_weight: float = 1.0,
                 occ_loss_weight: float = 0.5, context_loss: bool = True, temperature: float = 0.0,
                 sample_seed: int = 0, tokenizer_frames: str = 'current', tokenizer_ckpt: Optional[str] = None,
                 context_source: str = 'auto', pairs_per_sample: int = 2, pc_range=OCC3D_RANGE,
                 voxel_size: float = 0.8, predict_mode: str = 'forecast', camera_anchor_prob: float = 0.0,
                 target_anchors: str = 'gt', anchor_dropout: float = 0.0, decode_prior_boost: float = 0.0,
                 decode_soft: bool = False, band_from_previous: bool = False, data_preprocessor=None,
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
        if context_source not in ('auto', 'gt', 'camera'):
            raise ValueError(f"OccWorldModel: context_source must be 'auto', 'gt' or 'camera', got {context_source!r}")
        if predict_mode not in ('forecast', 'oracle'):
            raise ValueError(f"OccWorldModel: predict_mode must be 'forecast' or 'oracle', got {predict_mode!r}")
        self.stage, self.num_future, self.tokenizer_frames = stage, int(num_future), tokenizer_frames
        self.tokenizer = MODELS.build(tokenizer)
        self.forecaster = MODELS.build(forecaster) if forecaster is not None else None
        self.occ_losses = torch.nn.ModuleList(MODELS.build(c) for c in (occ_losses or [dict(type='WeightedCELoss')]))
        self.token_loss_weight, self.occ_loss_weight = float(token_loss_weight), float(occ_loss_weight)
        self.context_loss, self.temperature, self.sample_seed = bool(context_loss), float(temperature), int(sample_seed)
        self.context_source, self.pairs_per_sample = context_source, int(pairs_per_sample)
        self.pc_range, self.voxel_size = tuple(float(v) for v in pc_range), float(voxel_size)
        self.grid = OccGrid.from_voxel(self.voxel_size, self.pc_range)
        if target_anchors not in ('gt', 'decode'):
            raise ValueError(f"OccWorldModel: target_anchors must be 'gt' or 'decode', got {target_anchors!r}")
        self.predict_mode, self.target_anchors = predict_mode, target_anchors
        self.camera_anchor_prob, self.anchor_dropout = float(camera_anchor_prob), float(anchor_dropout)
        self.decode_prior_boost, self.decode_soft = float(decode_prior_boost), bool(decode_soft)
        self.band_from_previous = bool(band_from_previous)
        if tokenizer_ckpt:
            self.load_tokenizer(tokenizer_ckpt)
        if stage == 'forecaster':
            self.tokenizer.requires_grad_(False)
            self.tokenizer.eval()

    @property
    def conditional(self) -> bool:
        """Whether frames are tokenised and decoded against an anchor (residual forecasting)."""
        return bool(getattr(self.tokenizer, 'conditional', False))

    def load_tokenizer(self, path: str) -> None:
        """Load ``tokenizer.*`` weights from a checkpoint of the tokenizer stage."""
        from occ.engine.checkpoint import load_state_dict
        state = load_state_dict(path)       # CheckpointError (a RuntimeError) naming the file
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

    def _uses_camera(self, batch: dict) -> bool:
        if self.context_source == 'auto':
            return CONTEXT_BEV_KEY in batch
        if self.context_source == 'camera' and CONTEXT_BEV_KEY not in batch:
            raise KeyError(f"OccWorldModel(context_source='camera'): the batch has no {CONTEXT_BEV_KEY!r}")
        return self.context_source == 'camera'

    def _warp(self, labels, poses, sources, frames=None) -> torch.Tensor:
        return warp_sequence(labels, poses, sources, self.pc_range, self.voxel_size, frames)

    def _encode(self, labels: torch.Tensor, anchor: Optional[torch.Tensor]) -> dict:
        return self.tokenizer.encode(labels, anchor) if self.conditional else self.tokenizer.encode(labels)

    def _decode_indices(self, idx: torch.Tensor, anchor: Optional[torch.Tensor]) -> torch.Tensor:
        if not self.conditional:
            return self.tokenizer.decode_indices(idx)
        return self._boost(self.tokenizer.decode_indices(idx, anchor), anchor)

    def _boost(self, logits: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        """Prediction-time calibration: + decode_prior_boost * onehot(anchor) on known anchor cells."""
        if self.decode_prior_boost == 0:
            return logits
        known = (anchor != IGNORE_INDEX)[:, None].to(logits.dtype)
        return logits + self.decode_prior_boost * known * anchor_prior(anchor)

    def _decode_probs(self, probs: torch.Tensor, anchor: Optional[torch.Tensor]) -> torch.Tensor:
        return self.tokenizer.decode_probs(probs, anchor) if self.conditional else self.tokenizer.decode_probs(probs)

    def _anchor_feats(self, anchors: torch.Tensor) -> Optional[torch.Tensor]:
        """Anchors [B, S, X, Y, Z] -> forecaster anchor maps [B, S, 19*Z, x, y] (None without anchors)."""
        if self.forecaster is None or getattr(self.forecaster, 'anchor_adapter', None) is None:
            return None
        b, s = anchors.shape[:2]
        f = anchor_bev(anchors.flatten(0, 1), self.tokenizer.stride)
        return f.view(b, s, *f.shape[1:])

    @torch.no_grad()
    def tokenize(self, labels: torch.Tensor, anchors: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Labels [B, S, X, Y, Z] (+ anchors, same shape) -> tokens long [B, S, x, y] (frozen tokenizer)."""
        b, s = labels.shape[:2]
        idx = self._encode(labels.flatten(0, 1), None if anchors is None else anchors.flatten(0, 1))['indices']
        return idx.view(b, s, *idx.shape[1:])

    def _camera_context(self, batch: dict, n_ctx: int) -> torch.Tensor:
        cam = batch.get(CONTEXT_CAMERA_KEY)
        if cam is None:
            raise KeyError(f'OccWorldModel: camera-driven residual forecasting needs batch[{CONTEXT_CAMERA_KEY!r}] '
                           '(the camera model\'s prediction of every context frame)')
        if cam.shape[1] != n_ctx:
            raise ValueError(f'OccWorldModel: {CONTEXT_CAMERA_KEY} has {cam.shape[1]} frames, the context {n_ctx}')
        return cam

    def rollout(self, batch: dict, context_feats: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Predicted future labels uint8 [B, H, X, Y, Z] (autoregressive, decoded by the tokenizer)."""
        logits = self.rollout_logits(batch, context_feats)
        return logits.argmax(2).to(torch.uint8)

    def rollout_logits(self, batch: dict, context_feats: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Decoded logits of the forecast frames [B, H, 18, X, Y, Z] (what ``rollout`` takes the argmax of).

        ``context_feats`` [B, T + 1, C, X, Y] (camera BEV per context frame)
        replaces the ground-truth context labels (camera-driven mode); the
        anchors then come from ``context_camera_semantics``. Reads only the
        context frames and the poses (future labels are never read).
        """
        poses = sequence_poses(batch)
        n_ctx = poses.shape[1] - batch['future_ego2global'].shape[1] if 'future_ego2global' in batch else poses.shape[1]
        ego = step_poses(poses)
        h_all = self.num_future
        if ego.shape[1] < n_ctx + h_all:
            raise ValueError(f'OccWorldModel: poses for {ego.shape[1]} frames, need {n_ctx + h_all}')
        gen = torch.Generator(device=poses.device).manual_seed(self.sample_seed)
        camera = context_feats is not None
        base = self._camera_context(batch, n_ctx) if camera and self.conditional else None
        if not camera:
            base = context_semantics(batch)[0]
        tokens, anchors, fut_anchor = None, None, None
        if self.conditional:
            src = anchor_sources(n_ctx + h_all, n_ctx)
            anchors = self._warp(base, poses, src)                    # [B, T+1+H, ...] anchors of every frame
            fut_anchor = anchors[:, n_ctx:]
            if not camera:
                tokens = self.tokenize(base, anchors[:, :n_ctx])
        elif not camera:
            tokens = self.tokenize(base)
        feats = None if anchors is None else self._anchor_feats(anchors[:, 1:])
        fut, fut_logits = self.forecaster.generate(ego[:, :n_ctx + h_all], h_all, tokens=tokens,
                                                   context_feats=context_feats, temperature=self.temperature,
                                                   generator=gen, anchor_feats=feats)
        b = fut.shape[0]
        if not self.conditional:
            logits = self._decode_indices(fut.flatten(0, 1), None)
            return logits.view(b, h_all, *logits.shape[1:])
        out, prev = [], None
        for h in range(h_all):
            anchor = fut_anchor[:, h]
            if self.band_from_previous and prev is not None:
                step = relative_pose(poses[:, n_ctx + h], poses[:, n_ctx + h - 1])
                moved = warp_labels(prev, step, self.grid, fill=IGNORE_INDEX)
                anchor = torch.where(anchor == IGNORE_INDEX, moved.to(anchor.dtype), anchor)
            if self.decode_soft:
                lg = self._boost(self.tokenizer.decode_probs(fut_logits[:, h].softmax(1), anchor), anchor)
            else:
                lg = self._decode_indices(fut[:, h], anchor)
            out.append(lg)
            prev = lg.argmax(1)
        return torch.stack(out, 1)

    @torch.no_grad()
    def oracle_future(self, batch: dict) -> torch.Tensor:
        """Diagnostic: each future frame decoded from its own tokens on its forecast anchor, uint8 [B, H, X, Y, Z].

        This is the conditional tokenizer's reconstruction at gap h (frame t+h given
        frame t ego-warped; camera-driven: the camera's prediction of frame t), what
        perfect token forecasts would give.
        It reads the future labels: never a forecast.
        """
        ctx = context_semantics(batch)[0]
        n_ctx = ctx.shape[1]
        labels = torch.cat([ctx, batch['future_semantics'][:, :self.num_future]], 1)
        poses = sequence_poses(batch)
        fut = labels[:, n_ctx:]
        base = self._camera_context(batch, n_ctx) if self._uses_camera(batch) else ctx
        anchors = self._warp(base, poses, anchor_sources(labels.shape[1], n_ctx), range(n_ctx, labels.shape[1]))
        b = fut.shape[0]
        q = self._encode(fut.flatten(0, 1), anchors.flatten(0, 1))
        logits = self._decode_indices(q['indices'], anchors.flatten(0, 1))
        return logits.argmax(1).to(torch.uint8).view(b, -1, *logits.shape[2:])

    # ------------------------------------------------------------------ modes
    def forward(self, inputs: dict, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss_tokenizer(inputs) if self.stage == 'tokenizer' else self.loss_forecaster(inputs)
        if mode == 'predict':
            return self.predict(inputs)
        if mode == 'tensor':
            if self.conditional:
                return self.tokenizer(inputs['voxel_semantics'], self._current_anchor(inputs))
            return self.tokenizer(inputs['voxel_semantics'])
        raise ValueError(f"OccWorldModel: unknown mode {mode!r} (use 'loss', 'predict' or 'tensor')")

    def _current_anchor(self, batch: dict, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The previous context frame warped into the current one, [B, X, Y, Z] (``labels``: the context to use)."""
        ctx = context_semantics(batch)[0] if labels is None else labels
        n = ctx.shape[1]
        poses = sequence_poses(batch)[:, :n]
        return self._warp(ctx, poses, anchor_sources(n, n), [n - 1])[:, 0]

    def _tokenizer_pairs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Random (frame, anchor) pairs of each sequence: two [P, X, Y, Z] tensors.

        Per pair a gap k ~ U{1..num_future} (shrunk if the sequence has no valid
        pair that far apart) and a target frame j with frames j and j-k valid;
        anchor = frame j-k warped into frame j. With probability
        ``camera_anchor_prob`` the anchor is the camera model's prediction of frame
        j-k instead (j-k then a context frame: the camera cache covers those).
        """
        ctx, ctx_valid = context_semantics(batch)
        labels = torch.cat([ctx, batch['future_semantics']], 1) if 'future_semantics' in batch else ctx
        valid = torch.cat([ctx_valid, batch['future_valid'].bool()], 1) if 'future_semantics' in batch else ctx_valid
        poses = sequence_poses(batch)
        cam = batch.get(CONTEXT_CAMERA_KEY) if self.camera_anchor_prob > 0 else None
        if self.camera_anchor_prob > 0 and cam is None:
            raise KeyError(f'OccWorldModel: camera_anchor_prob > 0 needs batch[{CONTEXT_CAMERA_KEY!r}]')
        frames, anchors = [], []
        s = labels.shape[1]
        for b in range(labels.shape[0]):
            for _ in range(self.pairs_per_sample):
                use_cam = cam is not None and float(torch.rand(())) < self.camera_anchor_prob
                n_src = cam.shape[1] if use_cam else s
                k = int(torch.randint(1, self.num_future + 1, ()))
                cand = []
                while k >= 1 and not cand:
                    cand = [j for j in range(k, s) if valid[b, j] and valid[b, j - k] and j - k < n_src]
                    if not cand:
                        k -= 1
                if not cand:
                    continue
                j = cand[int(torch.randint(0, len(cand), ()))]
                src = cam[b:b + 1, j - k] if use_cam else labels[b:b + 1, j - k]
                dst2src = relative_pose(poses[b:b + 1, j], poses[b:b + 1, j - k])
                frames.append(labels[b, j])
                anchor = warp_labels(src, dst2src, self.grid, fill=IGNORE_INDEX)[0]
                if float(torch.rand(())) < self.anchor_dropout:
                    anchor = anchor.clone()
                    box = []
                    for n in anchor.shape[:2]:
                        size = int(n * (0.2 + 0.4 * float(torch.rand(()))))
                        lo = int(torch.randint(0, n - size + 1, ()))
                        box.append(slice(lo, lo + size))
                    anchor[box[0], box[1]] = IGNORE_INDEX
                anchors.append(anchor)
        if not frames:
            raise ValueError('OccWorldModel: no sequence in the batch has two valid frames for the tokenizer')
        return torch.stack(frames), torch.stack(anchors)

    def loss_tokenizer(self, batch: dict) -> dict:
        anchor = None
        if self.conditional:
            labels, anchor = self._tokenizer_pairs(batch)
        elif self.tokenizer_frames == 'current':
            labels = batch['voxel_semantics']
        else:
            sem, valid = context_semantics(batch)
            labels = sem[valid]                                     # [N, X, Y, Z] existing frames only
        out = self.tokenizer(labels, anchor) if self.conditional else self.tokenizer(labels)
        losses = self._occ_loss(out['logits'], labels, 'loss_rec')
        losses['loss_vq'] = out['loss_vq']
        losses['perplexity'] = out['perplexity'].detach()
        losses['code_usage'] = out['code_usage'].detach()
        return losses

    def teacher_forced(self, batch: dict) -> dict:
        """Teacher-forced forecaster pass over context + future frames.

        Returns dict ``logits`` [B, S-1, K, x, y] (entry s predicts frame s+1 from frames
        <= s), ``tokens`` long [B, S, x, y] (the targets' source), ``valid`` bool [B, S],
        ``n_ctx``, and ``anchors`` [B, S, X, Y, Z] the frames are decoded on (None for a
        plain tokenizer; camera-driven: built from the camera model's predictions).
        """
        ctx, ctx_valid = context_semantics(batch)
        fut = batch['future_semantics']
        labels = torch.cat([ctx, fut], 1)                           # [B, S, X, Y, Z]
        valid = torch.cat([ctx_valid, batch['future_valid'].bool()], 1)
        n_ctx = ctx.shape[1]
        poses = sequence_poses(batch)
        ego = step_poses(poses)
        camera = self._uses_camera(batch)
        feats = batch.get(CONTEXT_BEV_KEY) if camera else None
        anchors = dec_anchors = None
        if self.conditional:
            src = anchor_sources(labels.shape[1], n_ctx)
            anchors = self._warp(labels, poses, src)               # targets: ground truth on ground truth
            # Decoding (and the forecaster's view of the scene) uses what prediction time has.
            dec_anchors = self._warp(self._camera_context(batch, n_ctx), poses, src) if camera else anchors
        if self.target_anchors == 'decode':
            anchors = dec_anchors
        tokens = self.tokenize(labels, anchors)
        a_feats = None if dec_anchors is None else self._anchor_feats(dec_anchors[:, 1:])
        if feats is not None:    # camera-driven: context frames enter as BEV maps, the future as tokens
            if feats.shape[1] != n_ctx:
                raise ValueError(f'OccWorldModel: {CONTEXT_BEV_KEY} has {feats.shape[1]} frames, the context {n_ctx}')
            logits = self.forecaster(tokens[:, n_ctx:-1] if labels.shape[1] - 1 > n_ctx else None,
                                     ego[:, :-1], context_feats=feats, anchor_feats=a_feats)
        else:
            logits = self.forecaster(tokens[:, :-1], ego[:, :-1], anchor_feats=a_feats)  # [B, S-1, K, x, y]
        return {'logits': logits, 'tokens': tokens, 'valid': valid, 'n_ctx': n_ctx, 'anchors': dec_anchors}

    def loss_forecaster(self, batch: dict) -> dict:
        tf = self.teacher_forced(batch)
        logits, tokens, valid, n_ctx, dec_anchors = tf['logits'], tf['tokens'], tf['valid'], tf['n_ctx'], tf['anchors']
        fut = batch['future_semantics']
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
                occ = self._decode_probs(probs, None if dec_anchors is None else dec_anchors[:, n_ctx:][f_ok])
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
        """Per sample ``semantics`` [X, Y, Z] (current frame) and, in the forecaster stage, ``semantics_future``.

        ``semantics``: the tokenizer's reconstruction of the current frame (conditional:
        given the previous ground-truth frame ego-warped); in camera-driven mode with a
        conditional tokenizer, the camera model's own current prediction (no GT is read).
        """
        camera = self._uses_camera(batch) and self.stage == 'forecaster'
        if camera and self.conditional:
            rec = self._camera_context(batch, batch[CONTEXT_BEV_KEY].shape[1])[:, -1].to(torch.uint8)
        elif self.conditional:
            anchor = self._current_anchor(batch)
            rec = self._boost(self.tokenizer(batch['voxel_semantics'], anchor)['logits'], anchor)
            rec = rec.argmax(1).to(torch.uint8)
        else:
            rec = self.tokenizer(batch['voxel_semantics'])['logits'].argmax(1).to(torch.uint8)
        fut = None
        if self.stage == 'forecaster':
            if self.predict_mode == 'oracle':
                fut = self.oracle_future(batch)
            else:
                fut = self.rollout(batch, batch[CONTEXT_BEV_KEY] if camera else None)
        tokens = batch.get('sample_token') or [None] * len(rec)
        out = []
        for i in range(len(rec)):
            d = {'sample_token': tokens[i], 'semantics': rec[i].cpu().numpy()}
            if fut is not None:
                d['semantics_future'] = fut[i].cpu().numpy()
            out.append(d)
        return out
