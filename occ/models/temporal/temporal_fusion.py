"""TemporalFusion: the one temporal module OccNet calls, in training and in streaming.

Two ways to get the past, same fusion:

- ``forward_train(bev_fn, bev, batch)``: the batch carries ``history`` (T past
  frames, most recent last, ``valid`` [B, T]); their BEV maps are recomputed
  with the same encoder (``bev_fn``), under ``no_grad`` unless
  ``history_grad=True``, and fused with the current map.
- ``forward_stream(bev, batch, state)``: consecutive samples of a scene arrive
  one after another; the memory (the last T encoder BEV maps, or the
  recurrent state) is kept in ``state`` between calls instead of recomputing
  history. It resets when the scene token changes or the frame index is not
  the next one (a gap); per-scene memories are kept for the ``max_scenes``
  most recently seen scenes so a batch may hold several scenes.

``fuse(bev, batch, bev_fn, state)`` picks between them (training or
``streaming=False`` -> recompute; eval with ``streaming=True`` -> stream) and
is the single call OccNet makes. See docs/TEMPORAL.md.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from occ.geometry import relative_pose
from occ.models.groups import encode_valid_rows
from occ.registry import MODELS

from .registry import TEMPORAL_FUSIONS


def _as_list(x, n: int, key: str) -> list:
    """Per-sample values of a batch entry that may be a list, a tensor or a scalar."""
    if isinstance(x, torch.Tensor):
        x = x.reshape(-1).tolist()
    elif not isinstance(x, (list, tuple)):
        x = [x] * n
    if len(x) != n:
        raise ValueError(f'TemporalFusion: batch[{key!r}] has {len(x)} entries for a batch of {n}')
    return list(x)


@MODELS.register_module()
class TemporalFusion(nn.Module):
    """Temporal memory: past BEV aligned by ego motion and fused.

    Args:
        fusion: config of a fusion op registered in ``TEMPORAL_FUSIONS``
            (``ConcatConvFusion``, ``TemporalSelfAttention``, ``ConvGRUFusion``
            or your own); ``num_frames`` and ``pc_range`` are filled in from here.
        num_history: T past frames used in training (and kept when streaming
            for the non-recurrent fusions).
        pc_range: grid range (x_min, y_min, z_min, x_max, y_max, z_max).
        history_grad: backpropagate through the history encoder passes
            (memory and time ~T+1x); False runs them under ``no_grad``.
        streaming: in eval mode keep memory across calls instead of
            recomputing history from the batch.
        max_scenes: per-scene memories kept while streaming.
        history_stride: keyframes between history frames; must equal the
            dataset's ``history_stride`` (streaming looks frames up by index).
    """

    def __init__(self, fusion: dict, num_history: int, pc_range, history_grad: bool = False,
                 streaming: bool = True, max_scenes: int = 4, history_stride: int = 1):
        super().__init__()
        if num_history < 1:
            raise ValueError(f'TemporalFusion needs num_history >= 1 (got {num_history}); '
                             'for T = 0 set the model\'s temporal=None')
        cfg = dict(fusion)
        kind = cfg.get('type')
        if isinstance(kind, str) and TEMPORAL_FUSIONS.get(kind) is None:
            raise ValueError(f'TemporalFusion: fusion type {kind!r} is not registered in TEMPORAL_FUSIONS '
                             f'(known: {sorted(TEMPORAL_FUSIONS.module_dict)}); register a new one with '
                             '@occ.models.temporal.TEMPORAL_FUSIONS.register_module()')
        cfg.setdefault('num_frames', num_history)
        cfg.setdefault('pc_range', tuple(pc_range))
        self.fusion = TEMPORAL_FUSIONS.build(cfg)
        self.num_history = num_history
        self.pc_range = tuple(float(v) for v in pc_range)
        self.history_grad = history_grad
        self.streaming = streaming
        self.max_scenes = max_scenes
        if history_stride < 1:
            raise ValueError(f'TemporalFusion: history_stride must be >= 1, got {history_stride}')
        self.history_stride = history_stride

    @property
    def recurrent(self) -> bool:
        return self.fusion.recurrent

    # ------------------------------------------------------------------ entry
    def fuse(self, bev: torch.Tensor, batch: dict, bev_fn=None, state=None):
        """The call OccNet makes: ``bev, state = temporal.fuse(bev, batch, bev_fn, state)``.

        Args:
            bev: [B, C, X, Y] current BEV from the view transform.
            batch: the flat batch dict.
            bev_fn: callable(flat batch dict with leading B*T') -> [B*T', C, X, Y]
                (or a dict with ``bev``); needed unless streaming.
            state: what the previous call returned (None at start).
        Returns:
            fused bev [B, C, X, Y], new state.
        """
        if self.training or not self.streaming:
            if bev_fn is None:
                raise ValueError('TemporalFusion.fuse: recomputing history needs bev_fn')
            return self.forward_train(bev_fn, bev, batch), state
        return self.forward_stream(bev, batch, state)

    forward = fuse

    # --------------------------------------------------------------- training
    def history_bev(self, bev_fn, batch: dict) -> tuple[torch.Tensor, dict]:
        """Encode the last ``num_history`` history frames.

        Returns BEV [B, T, C, X, Y] (zeros for invalid frames, which are not
        encoded at all) and the history dict cut to those T slots (missing
        older slots padded as invalid).
        """
        if 'history' not in batch:
            raise KeyError('TemporalFusion: the batch has no "history"; set num_history='
                           f'{self.num_history} in the dataset config (or streaming=True at test time)')
        hist = batch['history']
        if 'valid' not in hist or 'ego2global' not in hist:
            raise KeyError(f'TemporalFusion: batch["history"] lacks "valid"/"ego2global" (has {sorted(hist)})')
        valid = hist['valid'].bool()
        b, th = valid.shape
        t = self.num_history
        sl = slice(max(0, th - t), th)
        pad = t - (sl.stop - sl.start)
        cut = {}
        for k, v in hist.items():
            if isinstance(v, torch.Tensor) and v.dim() >= 2 and v.shape[:2] == (b, th):
                v = v[:, sl]
                if pad:
                    v = torch.cat([v[:, :1].expand(b, pad, *v.shape[2:]).clone(), v], 1)
                cut[k] = v
        if pad:
            cut['valid'][:, :pad] = False
        with torch.set_grad_enabled(self.history_grad and torch.is_grad_enabled()):
            out = encode_valid_rows(cut, cut['valid'].bool(), bev_fn)
        return out, cut

    def forward_train(self, bev_fn, bev: torch.Tensor, batch: dict) -> torch.Tensor:
        """Fuse the current BEV [B, C, X, Y] with recomputed history; returns [B, C, X, Y]."""
        hist_bev, hist = self.history_bev(bev_fn, batch)
        b, t = hist['valid'].shape
        if hist_bev is None:
            hist_bev = bev.new_zeros(b, t, *bev.shape[1:])
        cur_pose = batch['ego2global']
        cur_aug = batch.get('bev_aug')
        past_aug = hist.get('bev_aug')
        frames = []
        for i in range(t):
            m = relative_pose(cur_pose, hist['ego2global'][:, i], cur_aug,
                                   None if past_aug is None else past_aug[:, i])
            frames.append(dict(feat=hist_bev[:, i], cur2past=m, valid=hist['valid'][:, i].bool(),
                               ego2global=hist['ego2global'][:, i],
                               bev_aug=None if past_aug is None else past_aug[:, i]))
        if not self.recurrent:
            return self.fusion(bev, frames)
        # Unroll the recurrence over the history, oldest first; a sample whose
        # frame is missing keeps its state (and the pose it was made in).
        state = None
        for f in frames:
            prev = None if state is None else self._prev(state, f['ego2global'], f['bev_aug'])
            new = self.fusion.step(f['feat'], prev)
            v = f['valid']
            if state is None:
                state = dict(feat=new * v.view(-1, 1, 1, 1).to(new.dtype), valid=v.clone(),
                             ego2global=f['ego2global'], bev_aug=f['bev_aug'])
            else:
                state = dict(feat=torch.where(v.view(-1, 1, 1, 1), new, state['feat']),
                             valid=state['valid'] | v,
                             ego2global=torch.where(v.view(-1, 1, 1), f['ego2global'], state['ego2global']),
                             bev_aug=None if f['bev_aug'] is None else
                             torch.where(v.view(-1, 1, 1), f['bev_aug'], state['bev_aug']))
        prev = None if state is None else self._prev(state, cur_pose, cur_aug)
        return self.fusion.output(bev, self.fusion.step(bev, prev))

    @staticmethod
    def _prev(state: dict, pose_now: torch.Tensor, aug_now) -> dict:
        m = relative_pose(pose_now, state['ego2global'], aug_now, state['bev_aug'])
        return dict(feat=state['feat'], cur2past=m, valid=state['valid'])

    # -------------------------------------------------------------- streaming
    def forward_stream(self, bev: torch.Tensor, batch: dict, state=None):
        """Fuse with the kept memory, then update it.

        ``state`` is an ``OrderedDict`` scene_token -> list of entries
        ``(frame_idx, feat [C, X, Y], ego2global [4, 4], bev_aug [4, 4] | None)``,
        oldest first: the encoder BEV maps of the last T * history_stride
        frames, or for the recurrent fusion the states of the last
        history_stride frames. Samples of one batch are processed in order, so a batch
        may hold consecutive frames of the same scene.
        """
        b = bev.shape[0]
        for key in ('scene_token', 'frame_idx', 'ego2global'):
            if key not in batch:
                raise KeyError(f'TemporalFusion streaming needs batch[{key!r}] (has {sorted(batch)})')
        scenes = _as_list(batch['scene_token'], b, 'scene_token')
        fidx = [int(i) for i in _as_list(batch['frame_idx'], b, 'frame_idx')]
        poses = batch['ego2global']
        augs = batch.get('bev_aug')
        mem = OrderedDict() if state is None else state
        out = []
        for i in range(b):
            x = bev[i:i + 1]
            pose = poses[i:i + 1]
            aug = None if augs is None else augs[i:i + 1]
            s = self.history_stride
            # the recurrence reads the state made ``s`` frames back (s chains
            # interleave when s > 1); the queue reads T slots s frames apart
            reach = s if self.recurrent else self.num_history * s
            # keep only frames 1..reach steps back; a backwards jump (replay)
            # or a gap drops them, which is the scene-boundary reset
            entries = [e for e in mem.pop(scenes[i], []) if 1 <= fidx[i] - e[0] <= reach]
            by_idx = {e[0]: e for e in entries}
            if self.recurrent:
                prev = None
                e = by_idx.get(fidx[i] - s)
                if e is not None:
                    _, feat, p, a = e
                    prev = dict(feat=feat[None], valid=torch.ones(1, dtype=torch.bool, device=x.device),
                                cur2past=relative_pose(pose, p[None], aug, None if a is None else a[None]))
                new = self.fusion.step(x, prev)
                out.append(self.fusion.output(x, new))
                kept = new
            else:
                frames = []
                for k in range(self.num_history, 0, -1):   # oldest first
                    e = by_idx.get(fidx[i] - k * s)
                    if e is None:
                        frames.append(dict(feat=torch.zeros_like(x), cur2past=torch.eye(4, device=x.device)[None],
                                           valid=torch.zeros(1, dtype=torch.bool, device=x.device)))
                    else:
                        frames.append(dict(feat=e[1][None], valid=torch.ones(1, dtype=torch.bool, device=x.device),
                                           cur2past=relative_pose(pose, e[2][None], aug,
                                                                       None if e[3] is None else e[3][None])))
                out.append(self.fusion(x, frames))
                kept = x
            entries = [e for e in entries if fidx[i] - e[0] < reach]
            entries.append((fidx[i], kept[0].detach(), pose[0], None if aug is None else aug[0]))
            mem[scenes[i]] = entries        # re-inserted last = most recently used
            while len(mem) > self.max_scenes:
                mem.popitem(last=False)
        return torch.cat(out, 0), mem
