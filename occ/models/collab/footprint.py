"""Merged tokens that carry their footprint, so the receiver unmerges them onto their own cells.

ToMe's unmerge copies a merged token's value back to every token that went into it. A plain
merged message (``tome``) cannot do that: the receiver only gets the size-weighted mean position
and a size, and spreads the value as one blob around that point. Here each merged token also
sends its *footprint*: the bounding box of its member cells and a bit mask of which cells inside
that box are members. The receiver's codec expands every token into one size-1 token per member
cell, at that cell's centre, with the token's value, i.e. exactly ToMe's unmerge.

Wire format (``FootprintCodec``): the ordinary token message of message.py (without sizes: a
size is the mask's popcount), then a trailer

    FOOT_HEADER  b'OCFP', box itemsize (uint8: 1 or 2), centre of cell (0, 0) x, y and the cell
                 size (float32, metres in the sender's frame)
    boxes        uint8|uint16 [n, 4]: i0, j0, w, h (first cell and extent of the bounding box)
    masks        for each token in order, ceil(w * h / 8) bytes: bit k (little bit order) set when
                 cell (i0 + k // h, j0 + k % h) is a member (row-major over the box)

so a token of 4 cells in a 2x2 box costs 4 + 1 bytes more (uint8 boxes) and 2 bytes less (no size).
The compressor plans the token count with the exact byte count of its footprints (variable
length), so the message never exceeds the budget.

Decoded order: token by token, member cells in raster order; ``FootprintToMeCompressor`` puts
its features in that order in ``Payload.feat`` so the training straight-through estimate lines
up with what the receiver decodes.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import torch

from .codec import WireCodec
from .message import HEADER, Message, MessageError, _QUANT_NAMES, decode, encode_tokens, message_nbytes
from .registry import CODECS, COMPRESSORS
from .select import topk_by_confidence
from .stages import Compressor, Payload
from .tome import merge_to

FOOT_MAGIC = b'OCFP'
FOOT_HEADER = struct.Struct('<4sBfff')


# --------------------------------------------------------------------------- pure functions
def footprints(cells: torch.Tensor, assign: torch.Tensor, y_cells: int, m: int):
    """Bounding boxes and member masks of merged tokens.

    Args:
        cells: [N] long raster indices (``i * Y + j``) of the merged cells.
        assign: [N] long, merged token of each cell (values in ``range(m)``, each used).
        y_cells: Y, the grid's second size.
        m: number of merged tokens.
    Returns:
        boxes int64 [m, 4] (i0, j0, w, h), masks uint8 [sum ceil(w*h/8)] (token after token,
        bit k little-endian = cell (i0 + k // h, j0 + k % h)), order long [N]: the cells sorted
        token by token in raster order (the decoded order).
    """
    cells, assign = cells.detach().cpu().long(), assign.detach().cpu().long()
    i, j = cells // y_cells, cells % y_cells
    big = torch.iinfo(torch.long).max
    i0 = torch.full((m,), big).scatter_reduce(0, assign, i, 'amin')
    j0 = torch.full((m,), big).scatter_reduce(0, assign, j, 'amin')
    i1 = torch.full((m,), -1).scatter_reduce(0, assign, i, 'amax')
    j1 = torch.full((m,), -1).scatter_reduce(0, assign, j, 'amax')
    w, h = i1 - i0 + 1, j1 - j0 + 1
    nbytes = (w * h + 7) // 8
    start = torch.cumsum(nbytes, 0) - nbytes
    bit = (i - i0[assign]) * h[assign] + (j - j0[assign])
    masks = np.zeros(int(nbytes.sum()), np.uint8)
    np.bitwise_or.at(masks, (start[assign] + bit // 8).numpy(), (1 << (bit % 8)).to(torch.uint8).numpy())
    order = torch.argsort(assign * (int(cells.max()) + 1 if cells.numel() else 1) + cells, stable=True)
    return torch.stack([i0, j0, w, h], 1), masks, order


def unmerge_cells(boxes: np.ndarray, masks: np.ndarray, source: str = 'message'):
    """The member cells of each token from its footprint (the inverse of ``footprints``).

    Args:
        boxes: int [n, 4] (i0, j0, w, h); masks: uint8 [sum ceil(w*h/8)].
    Returns:
        token int64 [M] (which token each member cell belongs to, token by token), i, j int64 [M]
        (the cell, raster order within a token). Raises MessageError on a malformed footprint.
    """
    boxes = boxes.astype(np.int64)
    n = boxes.shape[0]
    w, h = boxes[:, 2], boxes[:, 3]
    if n and (w.min() < 1 or h.min() < 1):
        raise MessageError(f'{source}: footprint box with zero extent')
    nbytes = (w * h + 7) // 8
    if int(nbytes.sum()) != masks.size:
        raise MessageError(f'{source}: footprint masks hold {masks.size} bytes, boxes need {int(nbytes.sum())}')
    bits = np.unpackbits(masks, bitorder='little').astype(bool)
    token_of_bit = np.repeat(np.arange(n), 8 * nbytes)
    local = np.arange(bits.size) - np.repeat(8 * (np.cumsum(nbytes) - nbytes), 8 * nbytes)
    inside = local < (w * h)[token_of_bit]
    if (bits & ~inside).any():
        raise MessageError(f'{source}: footprint padding bits set')
    token, k = token_of_bit[bits], local[bits]
    if n and np.bincount(token, minlength=n).min() == 0:
        raise MessageError(f'{source}: a footprint with no member cell')
    return token, boxes[token, 0] + k // h[token], boxes[token, 1] + k % h[token]


# --------------------------------------------------------------------------- payload and codec
@dataclass
class FootprintPayload(Payload):
    """Merged tokens with footprints.

    ``feat`` [M, C] is the merged features repeated on every member cell in the decoded order
    (with gradient, for the straight-through estimate); ``token_feat`` [n, C] and ``pos`` [n, 2]
    are what goes on the wire; ``boxes`` [n, 4] / ``masks`` and ``grid`` (centre of cell (0, 0)
    x, y and the cell size, metres) are the footprints.
    """

    token_feat: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    masks: np.ndarray | None = None
    grid: tuple = (0.0, 0.0, 0.0)


@CODECS.register_module()
class FootprintCodec(WireCodec):
    """``WireCodec`` plus a footprint trailer for ``FootprintPayload`` (module docstring).

    Messages of every other payload are byte for byte those of ``WireCodec``; so are the
    decoded messages of a footprint payload except that each merged token is unmerged onto its
    member cells (size 1 each, at the cell centres).
    """

    @staticmethod
    def box_itemsize(largest: int) -> int:
        """Bytes per box entry when no entry (first cell index or extent) exceeds ``largest``."""
        return 1 if largest <= 255 else 2

    def footprint_message_nbytes(self, channels: int, boxes: torch.Tensor) -> int:
        """Exact length of the footprint message of ``len(boxes)`` tokens with these boxes [n, 4]."""
        n = boxes.shape[0]
        masks = int(((boxes[:, 2] * boxes[:, 3] + 7) // 8).sum()) if n else 0
        item = self.box_itemsize(int(boxes.max()) if n else 0)
        return message_nbytes('tokens', self.quant, channels, n) + FOOT_HEADER.size + 4 * n * item + masks

    def encode(self, payload: Payload, pose: tuple, pc_range) -> bytes:
        if not isinstance(payload, FootprintPayload):
            return super().encode(payload, pose, pc_range)
        boxes = payload.boxes.detach().cpu().numpy()
        item = self.box_itemsize(int(boxes.max()) if boxes.size else 0)
        head = encode_tokens(payload.token_feat, payload.pos, None, pose, self.quant)
        trailer = FOOT_HEADER.pack(FOOT_MAGIC, item, *(float(v) for v in payload.grid))
        return head + trailer + boxes.astype('<u1' if item == 1 else '<u2').tobytes() + payload.masks.tobytes()

    def decode(self, data: bytes, source: str = 'message') -> Message:
        if len(data) < HEADER.size:
            return decode(data, source)          # names the problem
        head = HEADER.unpack_from(data, 0)
        kind_c, quant_c, flags, c, n = head[2], head[3], head[4], head[5], head[8]
        if kind_c != 0 or quant_c not in _QUANT_NAMES:   # dense or unknown: the plain decoder
            return decode(data, source)
        base_len = message_nbytes('tokens', _QUANT_NAMES[quant_c], c, n, bool(flags & 1),
                                  4 if flags & 2 else 2)
        if len(data) <= base_len:
            return decode(data, source)
        msg = decode(data[:base_len], source)
        if len(data) < base_len + FOOT_HEADER.size:
            raise MessageError(f'{source}: {len(data) - base_len} trailing bytes, not a footprint trailer')
        magic, item, x00, y00, cell = FOOT_HEADER.unpack_from(data, base_len)
        if magic != FOOT_MAGIC or item not in (1, 2):
            raise MessageError(f'{source}: bad footprint trailer {magic!r} (item size {item})')
        if not (cell > 0 and math.isfinite(cell) and math.isfinite(x00) and math.isfinite(y00)):
            raise MessageError(f'{source}: footprint grid with cell size {cell}')
        off = base_len + FOOT_HEADER.size
        if len(data) < off + 4 * n * item:
            raise MessageError(f'{source}: footprint trailer shorter than its {n} boxes')
        boxes = np.frombuffer(data, '<u1' if item == 1 else '<u2', 4 * n, off).reshape(n, 4)
        masks = np.frombuffer(data, np.uint8, len(data) - off - 4 * n * item, off + 4 * n * item)
        token, i, j = unmerge_cells(boxes, masks, source)
        pos = torch.from_numpy(np.stack([x00 + i * cell, y00 + j * cell], 1).astype(np.float32))
        return Message(kind='tokens', quant=msg.quant, feat=msg.feat[torch.from_numpy(token)], pos=pos,
                       size=torch.ones(token.size), pose=msg.pose, grid=msg.grid, pos_unit=msg.pos_unit,
                       nbytes=len(data))

    def __repr__(self) -> str:
        return f'FootprintCodec(quant={self.quant!r})'


# --------------------------------------------------------------------------- compressor
@COMPRESSORS.register_module(name='tome_fp')
class FootprintToMeCompressor(Compressor):
    """ToMe inside the ``cells_per_token * n`` most confident cells, each token sent with its footprint.

    The selection and merging are those of ``ToMeCompressor(cells_per_token=...)``; the count ``n``
    is planned with the exact byte count of the footprints: a first guess from ``guess_mask_bytes``
    per token, then, while the message is too long, fewer tokens (from the measured mean
    footprint) merged again from the selected cells. Needs ``FootprintCodec``.

    Args:
        cells_per_token: merged cells per token that fits (>= 1).
        merge_radius: metres, as ToMe's (first-round matching radius).
        guess_mask_bytes: first guess of mask bytes per token (2: a box of up to 4x4 cells).
    """

    def __init__(self, cells_per_token: float = 4.0, merge_radius: float = 4.0, guess_mask_bytes: int = 2):
        super().__init__()
        if cells_per_token < 1:
            raise ValueError(f'FootprintToMeCompressor: cells_per_token must be >= 1, got {cells_per_token}')
        self.cells_per_token, self.merge_radius = float(cells_per_token), float(merge_radius)
        self.guess_mask_bytes = int(guess_mask_bytes)

    def forward(self, bev, feat, pos, score, budget_bytes, codec, gen):
        if not hasattr(codec, 'footprint_message_nbytes'):
            raise ValueError(f'FootprintToMeCompressor needs a codec that sends footprints '
                             f"(codec=dict(type='FootprintCodec')), got {codec!r}")
        c, num = feat.shape[1], feat.shape[0]
        x_cells, y_cells = bev.shape[1], bev.shape[2]
        n_plain = codec.max_tokens(budget_bytes, c, has_sizes=False)
        if n_plain == 0:
            return None
        if n_plain >= num:                  # every cell fits as it is: nothing to merge
            return Payload(feat=feat, pos=pos)
        fixed = codec.footprint_message_nbytes(c, torch.zeros(0, 4, dtype=torch.long))
        # bytes of one token without its mask, boxes sized for the grid (an upper bound)
        largest = torch.tensor([[max(x_cells, y_cells)] * 4])
        per_token = codec.footprint_message_nbytes(c, largest) - fixed - int(largest[0, 2] * largest[0, 3] + 7) // 8
        n = int((budget_bytes - fixed) // (per_token + self.guess_mask_bytes))
        if n < 1:
            return None
        keep = topk_by_confidence(score, math.ceil(self.cells_per_token * n))
        merged = merge_to(feat[keep], pos[keep], n, radius=self.merge_radius)
        assign = merged['assign']
        while True:
            m = merged['feat'].shape[0]
            boxes, masks, order = footprints(keep, assign, y_cells, m)
            if codec.footprint_message_nbytes(c, boxes) <= budget_bytes:
                break
            # Too long: fewer tokens, planned from the measured mean mask, by merging the merged
            # tokens further (size-weighted means compose exactly; far cheaper than starting over).
            n = min(m - 1, int((budget_bytes - fixed) // (per_token + masks.size / m)))
            if n < 1:
                return None
            merged = merge_to(merged['feat'], merged['pos'], n, size=merged['size'],
                              radius=self.merge_radius * math.sqrt(keep.numel() / m))
            assign = merged['assign'][assign]
        cell = float(pos[y_cells, 0] - pos[0, 0]) if x_cells > 1 else float(pos[1, 1] - pos[0, 1])
        token_of_cell = assign[order.to(assign.device)]
        return FootprintPayload(feat=merged['feat'][token_of_cell], pos=merged['pos'], token_feat=merged['feat'],
                                boxes=boxes, masks=masks, grid=(float(pos[0, 0]), float(pos[0, 1]), cell))

    def extra_repr(self) -> str:
        return f'cells_per_token={self.cells_per_token}, merge_radius={self.merge_radius}'
