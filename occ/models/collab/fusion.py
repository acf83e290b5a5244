"""CollabFusion: neighbours' BEV maps -> byte messages under a budget -> fused ego BEV.

Sender side (per neighbour, in its own ego frame): BEV cells become tokens,
optionally gated/selected by confidence, then reduced to the budget by the
chosen ``strategy`` and serialised (``message.py``). Receiver side: decode,
re-pose the tokens from the sender's pose (read from the message header) into
the ego frame (and the ego's BEV augmentation), keep those that can reach the
ego grid, and let every ego cell attend to the tokens near it
(``attention.py``). Without any received token the ego BEV is returned as is.

Strategies (the baselines are config switches):
    'none'    ego only, nothing sent;
    'full'    the whole BEV map, uncompressed (``quant`` 'fp32' by default);
    'random'  random cells, as many as fit the budget;
    'topk'    the most confident cells that fit the budget (Where2comm-style);
    'tome'    optional confidence pre-selection, then ToMe merging to the budget.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from occ.geometry import apply_se2, bev_aug_2d, perturb_pose, pose2d, relative_se2, xy_range
from occ.registry import MODELS

from .attention import LocalTokenAttention
from .channel import CommChannel
from .message import (decode, encode_dense, encode_tokens, max_tokens_for_budget, size_dtype_for)
from .select import feature_norm_confidence, random_subset, topk_by_confidence
from .tokens import bev_cell_centres, bev_to_tokens
from .tome import merge_to

STRATEGIES = ('none', 'full', 'random', 'topk', 'tome')


@MODELS.register_module()
class CollabFusion(nn.Module):
    """Bandwidth-limited collaborative BEV fusion.

    Args:
        embed_dims: BEV channels C (ego and neighbours share the encoder).
        pc_range: BEV range (x_min, y_min, z_min, x_max, y_max, z_max) of every agent's map.
        strategy: one of STRATEGIES.
        budget_bytes: bytes per message (per neighbour and frame); ignored by 'full' and 'none'.
        quant: feature precision on the link: 'fp32', 'fp16' or 'int8'.
        select_ratio: for 'tome', keep this fraction of cells by confidence before merging
            (None: merge all cells).
        confidence: 'norm' (feature L2 norm) or 'learned' (1x1 conv + sigmoid that also gates
            the sent features, so it learns from the fusion loss).
        merge_radius: metres; ToMe only matches tokens this close (doubled if a round stalls).
        attn_k, attn_radius, num_heads: local attention (k nearest tokens within radius metres;
            a merged token of size s reaches max(attn_radius, cell * sqrt(s / pi) * reach_scale)).
        comm_range: metres; neighbours farther than this from the ego send nothing (None: any).
        drop_prob, latency: link loss probability and delay in frames (see CommChannel).
        pose_noise_m, pose_noise_deg: std of the sender's localisation error written in its header.
        seed: seeds pose noise, random selection and message loss.
        zero_init: the fusion starts as the identity (output projection zero).
        train_mix: optional ``dict(strategies=(...), budget_range=(lo, hi))``: in training mode
            every forward call draws one strategy from ``strategies`` and one budget log-uniform
            in [lo, hi] bytes (seeded), so one set of weights serves every budget at test time
            (Where2comm trains once and sweeps its threshold at inference). Eval mode always
            uses ``strategy`` / ``budget_bytes``.
    """

    def __init__(self, embed_dims: int, pc_range=(-40.0, -40.0, -1.0, 40.0, 40.0, 5.4),
                 strategy: str = 'tome', budget_bytes: int = 16384, quant: str = 'fp16',
                 select_ratio: float | None = None, confidence: str = 'norm',
                 merge_radius: float = 4.0, attn_k: int = 8, attn_radius: float = 2.0,
                 reach_scale: float = 1.5, num_heads: int = 4, comm_range: float | None = None,
                 drop_prob: float = 0.0, latency: int = 0, pose_noise_m: float = 0.0,
                 pose_noise_deg: float = 0.0, seed: int = 0, zero_init: bool = True,
                 train_mix: dict | None = None):
        super().__init__()
        if strategy not in STRATEGIES:
            raise ValueError(f'CollabFusion: strategy {strategy!r} not in {STRATEGIES}')
        if confidence not in ('norm', 'learned'):
            raise ValueError(f"CollabFusion: confidence must be 'norm' or 'learned', got {confidence!r}")
        if select_ratio is not None and not 0.0 < select_ratio <= 1.0:
            raise ValueError(f'CollabFusion: select_ratio must be in (0, 1], got {select_ratio}')
        self.embed_dims = embed_dims
        self.pc_range = tuple(float(v) for v in pc_range)
        self.strategy, self.budget_bytes, self.quant = strategy, int(budget_bytes), quant
        self.select_ratio, self.confidence = select_ratio, confidence
        self.merge_radius, self.reach_scale, self.comm_range = merge_radius, reach_scale, comm_range
        self.pose_noise_m, self.pose_noise_deg, self.seed = pose_noise_m, pose_noise_deg, seed
        self.conf_head = nn.Conv2d(embed_dims, 1, 1) if confidence == 'learned' else None
        self.attn = LocalTokenAttention(embed_dims, num_heads, attn_k, attn_radius, zero_init=zero_init)
        self.channel = CommChannel(drop_prob, latency, seed)
        self.train_mix = self._check_train_mix(train_mix)
        self.reset_state()
        self.last_stats: dict = {}

    def reset_state(self) -> None:
        """Restart every random stream from the seed and forget queued (stale) messages."""
        self.channel.reset()
        self._gen_pose = torch.Generator().manual_seed(self.seed + 1)
        self._gen_select = torch.Generator().manual_seed(self.seed + 2)
        self._gen_mix = torch.Generator().manual_seed(self.seed + 3)

    @staticmethod
    def _check_train_mix(mix: dict | None) -> dict | None:
        if mix is None:
            return None
        strategies = tuple(mix.get('strategies', ()))
        bad = [s for s in strategies if s not in STRATEGIES or s == 'none']
        if not strategies or bad:
            raise ValueError(f'CollabFusion: train_mix strategies {strategies} must be a non-empty '
                             f'subset of {STRATEGIES[1:]}')
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
        c, x_cells, y_cells = bev.shape
        if self.strategy == 'full':
            return encode_dense(bev, pose, self.pc_range, self.quant), bev_to_tokens(bev, self.pc_range)[0]
        feat, pos = bev_to_tokens(bev, self.pc_range)
        num = feat.shape[0]
        if self.conf_head is not None:
            gate = torch.sigmoid(self.conf_head(bev.unsqueeze(0)))[0, 0].reshape(-1)
            feat = feat * gate.unsqueeze(1)
            score = gate if conf is None else conf.reshape(-1)
        else:
            score = feature_norm_confidence(feat) if conf is None else conf.reshape(-1)
        n_plain = max_tokens_for_budget(self.budget_bytes, c, self.quant, has_sizes=False)
        if n_plain == 0:
            return None, None
        if n_plain >= num or self.strategy in ('random', 'topk'):
            if n_plain >= num:
                keep = torch.arange(num, device=feat.device)
            elif self.strategy == 'random':
                keep = random_subset(num, n_plain, self._gen_select, feat.device)
            else:
                keep = topk_by_confidence(score, n_plain)
            return encode_tokens(feat[keep], pos[keep], None, pose, self.quant), feat[keep]
        # ToMe: sizes travel with the tokens, so fewer fit.
        itemsize = size_dtype_for(num).itemsize
        n = max_tokens_for_budget(self.budget_bytes, c, self.quant, True, itemsize)
        if n == 0:
            return None, None
        if self.select_ratio is not None:
            keep = topk_by_confidence(score, max(n, math.ceil(self.select_ratio * num)))
            feat, pos = feat[keep], pos[keep]
        merged = merge_to(feat, pos, n, radius=self.merge_radius)
        data = encode_tokens(merged['feat'], merged['pos'], merged['size'], pose, self.quant)
        return data, merged['feat']

    # --------------------------------------------------------------- receiver
    def _cell(self, bev_shape) -> float:
        x_min, _, x_max, _ = xy_range(self.pc_range)
        return (x_max - x_min) / bev_shape[0]

    def receive(self, data: bytes, receiver_pose: tuple, ego_aug: torch.Tensor | None,
                cell: float, source: str = 'message'):
        """Decode and re-pose a message into the (augmented) ego frame.

        Returns:
            feat [n, C], pos [n, 2] (ego frame), size [n], reach [n] metres; only tokens that can
            reach the ego grid are kept.
        """
        msg = decode(data, source)
        t = relative_se2(msg.pose, receiver_pose)
        if ego_aug is not None:
            t = ego_aug @ t
        pos = apply_se2(t, msg.pos)
        reach = torch.clamp(cell * torch.sqrt(msg.size / math.pi) * self.reach_scale,
                            min=self.attn.radius)
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
        if self.strategy == 'none' or neighbor_bevs is None or nb is None or neighbor_bevs.shape[1] == 0:
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
                    in_range = self.comm_range is None or math.hypot(
                        true_pose[0] - recv_pose[0], true_pose[1] - recv_pose[1]) <= self.comm_range
                    if in_range:
                        sender_bev = neighbor_bevs[b, k]
                        if n_aug is not None:
                            self._check_not_augmented(n_aug[b, k])
                        noisy = perturb_pose(true_pose, self.pose_noise_m, self.pose_noise_deg,
                                             self._gen_pose)
                        conf = neighbor_conf[b, k] if neighbor_conf is not None else None
                        data, sent_feat = self.make_message(sender_bev, noisy, conf)
                        bytes_sent[b] += 0 if data is None else len(data)
                arrived = self.channel.transmit(key, data, frame)
                if arrived is None:
                    continue
                f, p, s, r, near = self.receive(arrived, recv_pose, ego_aug, cell, f'message b={b} k={k}')
                f = f.to(bev.device, bev.dtype)
                if arrived is data and self.training and sent_feat is not None:
                    # Values are exactly the decoded bytes; gradients reach the sender's encoder.
                    sf = sent_feat[near.to(sent_feat.device)]
                    f = sf + (f - sf).detach()
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
            fused = self.attn(q, query_pos, f, p, s, r)
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
