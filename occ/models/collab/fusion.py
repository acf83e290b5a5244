"""CollabFusion: neighbours' BEV maps -> byte messages under a budget -> fused ego BEV.

The stages are registered parts chosen in the config (registry.py, stages.py):

    sender    BEV cells become tokens with a confidence (learned gate or feature norm); the
              compressor named by ``strategy`` (``COMPRESSORS``: none, full, random, topk, tome,
              or any registered one) picks / merges them to ``budget_bytes``;
    codec     the wire format (``CODECS``, default ``WireCodec``: message.py);
    link      range, localisation error, latency and loss (``LINKS``, default ``SimulatedLink``),
              a seeded simulation with no learned part;
    receiver  decode, re-pose the tokens from the sender's pose in the header into the
              (augmented) ego frame, keep those that can reach the grid, and fuse them into
              the ego cells (``FUSIONS``, default ``LocalTokenAttention``; ``MaxFusion`` /
              ``MeanFusion`` are parameter-free baselines).

Without any received token the ego BEV is returned as is.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from occ.geometry import apply_se2, bev_aug_2d, pose2d, relative_se2, xy_range
from occ.registry import MODELS

from .registry import CODECS, COMPRESSORS, FUSIONS, LINKS
from .select import feature_norm_confidence
from .tokens import bev_cell_centres, bev_to_tokens

DEFAULT_FUSION = dict(type='LocalTokenAttention', num_heads=4, k=8, radius=2.0, reach_scale=1.5, zero_init=True)


@MODELS.register_module()
class CollabFusion(nn.Module):
    """Bandwidth-limited collaborative BEV fusion from pluggable stages.

    Args:
        embed_dims: BEV channels C (ego and neighbours share the encoder).
        pc_range: BEV range (x_min, y_min, z_min, x_max, y_max, z_max) of every agent's map.
        strategy: name of the sender's compressor in ``COMPRESSORS`` ('none', 'full', 'random',
            'topk', 'tome', or a registered one).
        budget_bytes: bytes per message (per neighbour and frame); ignored by 'full' and 'none'.
        compressors: constructor options per strategy name, e.g.
            ``dict(tome=dict(select_ratio=0.5, merge_radius=4.0))`` (used whenever that strategy
            is sent, also when ``train_mix`` draws it); an entry with a ``type`` defines a named
            variant, e.g. ``tome4=dict(type='tome', cells_per_token=4)`` for ``strategy='tome4'``.
        codec: config of the wire format (``CODECS``), default ``dict(type='WireCodec', quant='fp16')``.
        link: config of the simulated link (``LINKS``), default ``dict(type='SimulatedLink')``
            (no loss, no latency, no pose noise, unlimited range).
        fusion: config of the receiver fusion (``FUSIONS``; ``embed_dims`` is filled in), default
            ``LocalTokenAttention`` (4 heads, k = 8, radius 2 m, reach_scale 1.5, zero_init).
        confidence: 'norm' (feature L2 norm) or 'learned' (1x1 conv + sigmoid that also gates
            the sent features, so it learns from the fusion loss).
        seed: seeds pose noise and message loss (link), random selection and ``train_mix``.
        train_mix: optional ``dict(strategies=(...), budget_range=(lo, hi))``: in training mode
            every forward call draws one strategy from ``strategies`` and one budget log-uniform
            in [lo, hi] bytes (seeded), so one set of weights serves every budget at test time
            (Where2comm trains once and sweeps its threshold at inference). Eval mode always
            uses ``strategy`` / ``budget_bytes``.
    """

    def __init__(self, embed_dims: int, pc_range=(-40.0, -40.0, -1.0, 40.0, 40.0, 5.4),
                 strategy: str = 'tome', budget_bytes: int = 16384, compressors: dict | None = None,
                 codec: dict | None = None, link: dict | None = None, fusion: dict | None = None,
                 confidence: str = 'norm', seed: int = 0, train_mix: dict | None = None):
        super().__init__()
        if confidence not in ('norm', 'learned'):
            raise ValueError(f"CollabFusion: confidence must be 'norm' or 'learned', got {confidence!r}")
        self.embed_dims = embed_dims
        self.pc_range = tuple(float(v) for v in pc_range)
        self.budget_bytes, self.confidence, self.seed = int(budget_bytes), confidence, seed
        self.compressor_options = {str(k): dict(v) for k, v in (compressors or {}).items()}
        self.conf_head = nn.Conv2d(embed_dims, 1, 1) if confidence == 'learned' else None
        self.fusion = FUSIONS.build(dict(fusion if fusion is not None else DEFAULT_FUSION),
                                    default_args=dict(embed_dims=embed_dims))
        self.codec = CODECS.build(dict(codec if codec is not None else dict(type='WireCodec')))
        self.link = LINKS.build(dict(link if link is not None else dict(type='SimulatedLink')))
        self.compressors = nn.ModuleDict()
        self.strategy = strategy
        self.train_mix = self._check_train_mix(train_mix)
        for name in (self.train_mix or {}).get('strategies', ()):
            self._compressor(name)
        self.reset_state()
        self.last_stats: dict = {}
        # checkpoints written before the stages were split name the fusion 'attn'
        self._register_load_state_dict_pre_hook(_rename_legacy_keys)

    # ----------------------------------------------------------------- stages
    def _compressor(self, name: str) -> nn.Module:
        """The compressor of strategy ``name``, built once from its ``compressors`` options (whose
        ``type`` defaults to ``name``: a strategy is a registered compressor or a named variant)."""
        if name not in self.compressors:
            opts = dict(self.compressor_options.get(name, {}))
            kind = opts.pop('type', name)
            if COMPRESSORS.get(kind) is None:
                raise ValueError(f'CollabFusion: strategy {name!r} is not a registered compressor; '
                                 f'known: {sorted(COMPRESSORS.module_dict)} (or name a variant in '
                                 f"compressors=dict({name}=dict(type=..., ...)))")
            self.compressors[name] = COMPRESSORS.build(dict(opts, type=kind))
        return self.compressors[name]

    @property
    def strategy(self) -> str:
        """Name of the compressor the sender uses now."""
        return self._strategy

    @strategy.setter
    def strategy(self, name: str) -> None:
        self._compressor(name)
        self._strategy = name

    @property
    def compressor(self) -> nn.Module:
        return self.compressors[self._strategy]

    def reset_state(self) -> None:
        """Restart every random stream from the seed and forget queued (stale) messages."""
        self.link.reset(self.seed)
        self._gen_select = torch.Generator().manual_seed(self.seed + 2)
        self._gen_mix = torch.Generator().manual_seed(self.seed + 3)

    def _check_train_mix(self, mix: dict | None) -> dict | None:
        if mix is None:
            return None
        strategies = tuple(mix.get('strategies', ()))
        if not strategies or 'none' in strategies:
            raise ValueError(f'CollabFusion: train_mix strategies {strategies} must be a non-empty '
                             "list of registered compressors other than 'none'")
        lo, hi = (float(v) for v in mix.get('budget_range', (0, 0)))
        if not 0 < lo <= hi:
            raise ValueError(f'CollabFusion: train_mix budget_range must be 0 < lo <= hi, got {(lo, hi)}')
        return dict(strategies=strategies, budget_range=(lo, hi))

    def draw_training_link(self) -> tuple:
        """(strategy, budget_bytes) for one training step under ``train_mix`` (seeded)."""
        strategies, (lo, hi) = self.train_mix['strategies'], self.train_mix['budget_range']
        u = torch.rand(2, generator=self._gen_mix, dtype=torch.float64)
        strategy = strategies[int(u[0] * len(strategies)) % len(strategies)]
        budget = int(round(math.exp(math.log(lo) + float(u[1]) * (math.log(hi) - math.log(lo)))))
        return strategy, budget

    # ----------------------------------------------------------------- sender
    def make_message(self, bev: torch.Tensor, pose: tuple, conf: torch.Tensor | None = None):
        """Encode one neighbour's map.

        Args:
            bev: [C, X, Y] in the sender's frame; pose: its (x, y, yaw) as written in the header.
            conf: optional [X, Y] confidence (e.g. max non-free probability) for selection.
        Returns:
            (bytes or None when nothing fits the budget, sent features [n, C] with gradient in
            the order of the message, for a straight-through estimate in training).
        """
        feat, pos = bev_to_tokens(bev, self.pc_range)
        if self.conf_head is not None:
            gate = torch.sigmoid(self.conf_head(bev.unsqueeze(0)))[0, 0].reshape(-1)
            feat = feat * gate.unsqueeze(1)
            score = gate if conf is None else conf.reshape(-1)
        else:
            score = feature_norm_confidence(feat) if conf is None else conf.reshape(-1)
        payload = self.compressor(bev, feat, pos, score, self.budget_bytes, self.codec, self._gen_select)
        if payload is None:
            return None, None
        return self.codec.encode(payload, pose, self.pc_range), payload.feat

    # --------------------------------------------------------------- receiver
    def _cell(self, bev_shape) -> float:
        x_min, _, x_max, _ = xy_range(self.pc_range)
        return (x_max - x_min) / bev_shape[0]

    def receive(self, data: bytes, receiver_pose: tuple, ego_aug: torch.Tensor | None,
                cell: float, source: str = 'message'):
        """Decode and re-pose a message into the (augmented) ego frame.

        Returns:
            feat [n, C'] as decoded (before ``Compressor.restore``), pos [n, 2] (ego frame),
            size [n], reach [n] metres, and near [n_message] (which tokens of the message were
            kept); only tokens that can reach the ego grid are kept.
        """
        msg = self.codec.decode(data, source)
        t = relative_se2(msg.pose, receiver_pose)
        if ego_aug is not None:
            t = ego_aug @ t
        pos = apply_se2(t, msg.pos)
        reach = self.fusion.reach(msg.size, cell)
        x_min, y_min, x_max, y_max = xy_range(self.pc_range)
        near = ((pos[:, 0] >= x_min - reach) & (pos[:, 0] <= x_max + reach)
                & (pos[:, 1] >= y_min - reach) & (pos[:, 1] <= y_max + reach))
        return msg.feat[near], pos[near], msg.size[near], reach[near], near

    # ---------------------------------------------------------------- forward
    def forward(self, bev: torch.Tensor, batch: dict, neighbor_bevs: torch.Tensor | None,
                neighbor_conf: torch.Tensor | None = None):
        """Fuse neighbours into the ego BEV.

        Args:
            bev: [B, C, X, Y] ego BEV (in the ego frame after ``batch['bev_aug']``).
            batch: flat batch dict; reads ``ego2global`` [B, 4, 4], optional ``bev_aug`` [B, 4, 4]
                and ``neighbors``: ``ego2global`` [B, K, 4, 4], ``valid`` [B, K], optional
                ``bev_aug`` [B, K, 4, 4] and ``agent_id`` [B, K]; ``scene_token`` (list) and
                ``frame_idx`` [B] (with ``agent_id``) key the latency queue.
            neighbor_bevs: [B, K, C, X, Y], each in its sender's frame (None: no neighbours).
            neighbor_conf: optional [B, K, X, Y] confidence for selection.
        Returns:
            (fused BEV [B, C, X, Y], bytes_sent [B] float: bytes the neighbours transmitted).
        """
        if self.training and self.train_mix is not None:
            fixed = self.strategy, self.budget_bytes
            self.strategy, self.budget_bytes = self.draw_training_link()
            try:
                return self._fuse(bev, batch, neighbor_bevs, neighbor_conf)
            finally:
                self.strategy, self.budget_bytes = fixed
        return self._fuse(bev, batch, neighbor_bevs, neighbor_conf)

    def _fuse(self, bev, batch, neighbor_bevs, neighbor_conf):
        b_sz = bev.shape[0]
        bytes_sent = torch.zeros(b_sz, device=bev.device)
        nb = batch.get('neighbors') if isinstance(batch, dict) else None
        if not self.compressor.sends or neighbor_bevs is None or nb is None or neighbor_bevs.shape[1] == 0:
            self.last_stats = dict(tokens_received=0, messages=0)
            return bev, bytes_sent
        if neighbor_bevs.dim() != 5 or neighbor_bevs.shape[0] != b_sz or neighbor_bevs.shape[2:] != bev.shape[1:]:
            raise ValueError(f'CollabFusion: neighbor_bevs {tuple(neighbor_bevs.shape)} does not match '
                             f'ego bev {tuple(bev.shape)} as [B, K, C, X, Y]')
        k_sz = neighbor_bevs.shape[1]
        valid = nb.get('valid')
        valid = torch.ones(b_sz, k_sz, dtype=torch.bool) if valid is None else valid.bool().cpu()
        n_e2g, n_aug, agent_id = nb['ego2global'], nb.get('bev_aug'), nb.get('agent_id')
        cell = self._cell(bev.shape[2:])
        query_pos = bev_cell_centres(bev.shape[2], bev.shape[3], self.pc_range, bev.device)
        outs, n_tokens, n_msgs = [], 0, 0
        for b in range(b_sz):
            recv_pose = pose2d(batch['ego2global'][b])
            ego_aug = bev_aug_2d(batch['bev_aug'][b]) if batch.get('bev_aug') is not None else None
            feats, poss, sizes, reaches = [], [], [], []
            for k in range(k_sz):
                key, frame = self._sender_key(batch, b, k, agent_id)
                data, sent_feat = None, None
                if valid[b, k]:
                    true_pose = pose2d(n_e2g[b, k])
                    if self.link.in_range(true_pose, recv_pose):
                        sender_bev = neighbor_bevs[b, k]
                        if n_aug is not None:
                            self._check_not_augmented(n_aug[b, k])
                        noisy = self.link.localise(true_pose)
                        conf = neighbor_conf[b, k] if neighbor_conf is not None else None
                        data, sent_feat = self.make_message(sender_bev, noisy, conf)
                        bytes_sent[b] += 0 if data is None else len(data)
                arrived = self.link.transmit(key, data, frame)
                if arrived is None:
                    continue
                f, p, s, r, near = self.receive(arrived, recv_pose, ego_aug, cell, f'message b={b} k={k}')
                f = f.to(bev.device, bev.dtype)
                if arrived is data and self.training and sent_feat is not None:
                    # Values are exactly the decoded bytes; gradients reach the sender's encoder.
                    sf = sent_feat[near.to(sent_feat.device)]
                    f = sf + (f - sf).detach()
                f = self.compressor.restore(f)
                feats.append(f)
                poss.append(p.to(bev.device))
                sizes.append(s.to(bev.device, bev.dtype))
                reaches.append(r.to(bev.device))
                n_msgs += 1
            if not feats or sum(x.shape[0] for x in feats) == 0:
                outs.append(bev[b])
                continue
            f, p, s, r = torch.cat(feats), torch.cat(poss), torch.cat(sizes), torch.cat(reaches)
            n_tokens += f.shape[0]
            q = bev[b].reshape(bev.shape[1], -1).t()
            fused = self.fusion(q, query_pos, f, p, s, r)
            outs.append(fused.t().reshape(bev.shape[1:]))
        self.last_stats = dict(tokens_received=n_tokens, messages=n_msgs)
        return torch.stack(outs), bytes_sent

    @staticmethod
    def _sender_key(batch: dict, b: int, k: int, agent_id):
        """Who sent a message and when: (scene, agent) and the frame index when the batch says so.

        The latency queue needs a sender identity that survives across batches; a batch slot
        (b, k) is only that when frames are fed one sequence at a time.
        """
        scene, frame = batch.get('scene_token'), batch.get('frame_idx')
        if agent_id is not None and scene is not None:
            key = (str(scene[b]), int(agent_id[b, k]))
        else:
            key = ('slot', b, k)
        return key, (int(frame[b]) if frame is not None else None)

    @staticmethod
    def _check_not_augmented(aug: torch.Tensor) -> None:
        """Token positions are cell centres of the sender's *plain* ego frame: refuse a BEV-augmented map."""
        if not torch.allclose(bev_aug_2d(aug), torch.eye(3, dtype=torch.float64)):
            raise ValueError('CollabFusion: neighbours must be encoded without BEV augmentation '
                             '(neighbors["bev_aug"] is not the identity); augment only the ego')


def _rename_legacy_keys(state_dict, prefix, *args) -> None:
    """``<prefix>attn.*`` (one fixed attention before the stages were split) -> ``<prefix>fusion.*``."""
    for key in [k for k in state_dict if k.startswith(prefix + 'attn.')]:
        state_dict[prefix + 'fusion.' + key[len(prefix) + 5:]] = state_dict.pop(key)
