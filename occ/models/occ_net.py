"""OccNet: the camera occupancy model composed from config parts (mmengine BaseModel).

images -> backbone -> neck -> view transform -> [temporal] -> [collab] -> head
See docs/CONTRACTS.md for the part interfaces and the batch dict.
"""
from __future__ import annotations

from typing import Optional

import torch
from mmengine.model import BaseDataPreprocessor, BaseModel

from occ.models.groups import encode_valid_rows
from occ.registry import MODELS


@MODELS.register_module()
class OccDataPreprocessor(BaseDataPreprocessor):
    """Moves the flat batch dict (tensors, nested dicts, lists of str) to the model's device.

    Returns ``{'inputs': batch}``, so ``model(**out, mode=...)`` receives the whole batch as ``inputs``.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        if not isinstance(data, dict):
            raise TypeError('OccDataPreprocessor expects the flat batch dict of occ_collate, '
                            f'got {type(data).__name__}')
        if set(data) == {'inputs'}:          # already preprocessed (e.g. called twice)
            data = data['inputs']
        return {'inputs': self.cast_data(data)}


@MODELS.register_module()
class OccNet(BaseModel):
    """Camera-based semantic occupancy network.

    Args:
        backbone, neck, view_transform, head: configs of registered parts
            (neck may be None).
        temporal: optional temporal fusion config (called as
            ``bev, state = temporal(bev, batch, bev_fn=..., state=...)``).
        collab: optional collaboration config (called as
            ``bev, bytes_sent = collab(bev, batch, neighbor_bevs [B, K, C, X, Y])``).
        depth_loss_weight: weight of the view transform's depth loss (needs
            ``batch['depth']``); 0 disables it.
        use_mask_camera: restrict the occupancy losses to the voxels of ``loss_mask_key``.
        loss_mask_key: batch key of that visibility mask: ``'mask_camera'`` (seen now) or
            ``'mask_camera_history'`` (seen now or in an aligned past input frame; the
            dataset builds it when ``num_history > 0``, ``occ.data.history_mask``).
        data_preprocessor: config (or module) of the preprocessor.
    """

    def __init__(self, backbone: dict, view_transform: dict, head: dict, neck: Optional[dict] = None,
                 temporal: Optional[dict] = None, collab: Optional[dict] = None, depth_loss_weight: float = 0.0,
                 use_mask_camera: bool = True, loss_mask_key: str = 'mask_camera',
                 data_preprocessor=None, init_cfg=None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='OccDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            # built here from occ's registry so it resolves without a default scope
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck) if neck is not None else None
        self.view_transform = MODELS.build(view_transform)
        self.temporal = MODELS.build(temporal) if temporal is not None else None
        self.collab = MODELS.build(collab) if collab is not None else None
        self.head = MODELS.build(head)
        self.depth_loss_weight = float(depth_loss_weight)
        self.use_mask_camera = bool(use_mask_camera)
        self.loss_mask_key = str(loss_mask_key)
        self._temporal_state = None

    # ------------------------------------------------------------ features
    def encode_bev(self, batch: dict) -> dict:
        """One frame's cameras to BEV: batch with ``imgs`` [B, N, 3, H, W] + calibration -> view transform dict."""
        imgs = batch['imgs']
        if imgs.dim() != 5:
            raise ValueError(f'batch["imgs"] must be [B, N, 3, H, W], got {tuple(imgs.shape)}')
        feats = self.backbone(imgs.flatten(0, 1))
        if self.neck is not None:
            feats = self.neck(feats)
        return self.view_transform(feats, batch)

    def neighbor_bevs(self, batch: dict, like: torch.Tensor) -> Optional[torch.Tensor]:
        """Each valid neighbour's BEV in its own frame, [B, K, C, X, Y].

        Invalid neighbours are not encoded (zeros); None when the batch has no neighbours.
        """
        nb = batch.get('neighbors')
        if not nb:
            return None
        return encode_valid_rows(nb, nb['valid'].bool(), self.encode_bev, like=like)

    def reset_temporal_state(self) -> None:
        """Forget the streaming memory (e.g. before evaluating another sequence set)."""
        self._temporal_state = None

    def forward_features(self, batch: dict) -> dict:
        """Batch -> dict(logits [B, 18, X, Y, Z], bev [B, C, X, Y], depth, [bytes_sent [B]], ...head outputs)."""
        vt = self.encode_bev(batch)
        bev = vt['bev']
        if self.temporal is not None:
            bev, self._temporal_state = self.temporal(bev, batch, bev_fn=self.encode_bev, state=self._temporal_state)
        out = {}
        if self.collab is not None:
            bev, out['bytes_sent'] = self.collab(bev, batch, self.neighbor_bevs(batch, bev))
        if self.training and getattr(self.head, 'uses_labels_in_forward', False) and 'voxel_semantics' in batch:
            key = self.loss_mask_key
            mask = batch[key].bool() if self.use_mask_camera and key in batch else None
            out.update(self.head(bev, voxel_semantics=batch['voxel_semantics'], mask=mask))
        else:
            out.update(self.head(bev))
        out['bev'] = bev
        if vt.get('depth') is not None:
            out['depth'] = vt['depth']
        return out

    # --------------------------------------------------------------- modes
    def forward(self, inputs: dict, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs)
        if mode == 'predict':
            return self.predict(inputs)
        if mode == 'tensor':
            return self.forward_features(inputs)
        raise ValueError(f"OccNet.forward: mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def loss(self, batch: dict) -> dict:
        for key in ('voxel_semantics',) + ((self.loss_mask_key,) if self.use_mask_camera else ()):
            if key not in batch:
                hint = (' (the dataset builds it when num_history or history_mask_frames > 0)'
                        if key == 'mask_camera_history' else '')
                raise KeyError(f'OccNet loss needs batch[{key!r}]{hint}; batch has {sorted(batch)}')
        out = self.forward_features(batch)
        mask = batch[self.loss_mask_key].bool() if self.use_mask_camera else None
        losses = self.head.loss(out, batch['voxel_semantics'], mask)
        if self.depth_loss_weight > 0:
            if batch.get('depth') is None:
                raise KeyError('OccNet: depth_loss_weight > 0 needs batch["depth"] (dataset load_depth=True)')
            if 'depth' not in out or not hasattr(self.view_transform, 'loss_depth'):
                raise ValueError(f'OccNet: depth_loss_weight > 0 but {type(self.view_transform).__name__} '
                                 'predicts no depth')
            losses['loss_depth'] = self.depth_loss_weight * self.view_transform.loss_depth(out['depth'], batch['depth'])
        if 'bytes_sent' in out:
            losses['bytes_sent'] = out['bytes_sent'].float().mean().detach()   # logged, not a loss
        return losses

    @torch.no_grad()
    def predict(self, batch: dict) -> list:
        out = self.forward_features(batch)
        sem = out['logits'].argmax(1).to(torch.uint8).cpu().numpy()
        tokens = batch.get('sample_token') or [''] * sem.shape[0]
        preds = []
        for i in range(sem.shape[0]):
            p = {'sample_token': tokens[i], 'semantics': sem[i]}
            if 'bytes_sent' in out:
                p['bytes_sent'] = float(out['bytes_sent'][i])
            preds.append(p)
        return preds
