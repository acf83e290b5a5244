"""The message one agent sends: a real byte string, whose length is the bandwidth.

Layout (little-endian), a fixed header then arrays:

    header  HEADER (see below): magic, version, kind, quant, flags, C, X, Y, n,
            sender pose (x, y float64 metres in the global frame, yaw float32 rad),
            BEV geometry (x_min, y_min, cell size) and the position unit
    scale   float32 [C]            only for int8: per-channel scale
    feat    [n, C] fp32 | fp16 | int8 (int8 value * scale = feature)
    pos     int16 [n, 2]           token kind only: x, y in units of ``pos_unit`` metres
    size    uint16|uint32 [n]      token kind only, when any size != 1 (flag bit 0; bit 1 = uint32)

``kind`` is ``tokens`` (a list of tokens with positions: selection, merging)
or ``dense`` (the whole BEV grid in raster order, positions implied by the
header geometry: full sharing). Everything the receiver needs to place a
token is inside the message; nothing travels out of band.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import torch

MAGIC = b'OCCM'
VERSION = 1
HEADER = struct.Struct('<4sBBBBHHHIddfffff')
KINDS = {'tokens': 0, 'dense': 1}
QUANTS = {'fp32': 0, 'fp16': 1, 'int8': 2}
_FEAT_BYTES = {'fp32': 4, 'fp16': 2, 'int8': 1}
_KIND_NAMES = {v: k for k, v in KINDS.items()}
_QUANT_NAMES = {v: k for k, v in QUANTS.items()}
FLAG_SIZES = 1
FLAG_SIZES_U32 = 2
POS_UNIT = 0.01          # metres per int16 step: +-327 m at 1 cm
INT16_MAX = 32767


class MessageError(ValueError):
    """A received byte string is not a valid occ collaboration message."""


@dataclass
class Message:
    """A decoded message. Tensors are float32 on CPU (the receiver moves them)."""

    kind: str
    quant: str
    feat: torch.Tensor          # [n, C]
    pos: torch.Tensor           # [n, 2] metres in the sender's frame (dense: cell centres)
    size: torch.Tensor          # [n]
    pose: tuple                 # (x, y, yaw) of the sender in the global frame
    grid: tuple                 # (X, Y, x_min, y_min, cell) for dense; (0, 0, 0, 0, 0) for tokens
    pos_unit: float
    nbytes: int


def size_dtype_for(max_size: int) -> np.dtype:
    """Integer type for token sizes up to ``max_size`` (a map's cell count bounds every size)."""
    return np.dtype('<u2') if max_size <= np.iinfo(np.uint16).max else np.dtype('<u4')


def message_nbytes(kind: str, quant: str, channels: int, n: int, has_sizes: bool = False,
                   size_itemsize: int = 2) -> int:
    """Exact length in bytes of a message (what ``encode_*`` produces)."""
    _check_quant(quant)
    nbytes = HEADER.size + n * channels * _FEAT_BYTES[quant]
    if quant == 'int8':
        nbytes += 4 * channels
    if kind == 'tokens':
        nbytes += n * 4 + (n * size_itemsize if has_sizes else 0)
    elif kind != 'dense':
        raise ValueError(f'unknown message kind {kind!r}; expected one of {sorted(KINDS)}')
    return nbytes


def max_tokens_for_budget(budget: int, channels: int, quant: str, has_sizes: bool,
                          size_itemsize: int = 2) -> int:
    """Largest n with ``message_nbytes('tokens', ...) <= budget`` (0 when not even one token fits)."""
    fixed = message_nbytes('tokens', quant, channels, 0)
    per = message_nbytes('tokens', quant, channels, 1, has_sizes, size_itemsize) - fixed
    if budget < fixed + per:
        return 0
    return int((budget - fixed) // per)


def _check_quant(quant: str) -> None:
    if quant not in QUANTS:
        raise ValueError(f'unknown quantisation {quant!r}; expected one of {sorted(QUANTS)}')


def quantise(feat: np.ndarray, quant: str) -> tuple[bytes, bytes]:
    """Features [n, C] float32 -> (scale bytes, feature bytes).

    int8 uses a symmetric per-channel scale ``max|f_c| / 127``; round-to-nearest
    then bounds the error by ``scale_c / 2`` per element.
    """
    _check_quant(quant)
    feat = np.ascontiguousarray(feat, dtype=np.float32)
    if quant == 'fp32':
        return b'', feat.astype('<f4').tobytes()
    if quant == 'fp16':
        # Saturate instead of overflowing to inf (the receiver rejects non-finite values).
        return b'', np.clip(feat, -65504.0, 65504.0).astype('<f2').tobytes()
    amax = np.abs(feat).max(axis=0) if feat.shape[0] else np.zeros(feat.shape[1], np.float32)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype('<f4')
    q = np.clip(np.rint(feat / scale), -127, 127).astype('<i1')
    return scale.tobytes(), q.tobytes()


def _pose_tuple(pose) -> tuple:
    x, y, yaw = (float(v) for v in pose)
    return x, y, yaw


def encode_tokens(feat: torch.Tensor, pos: torch.Tensor, size: torch.Tensor | None, pose,
                  quant: str = 'fp16') -> bytes:
    """Serialise tokens.

    Args:
        feat: [n, C]; pos: [n, 2] metres (sender frame); size: [n] or None (all ones).
        pose: sender (x, y, yaw) in the global frame, as the sender believes it.
    Sizes are sent as uint16 unless one exceeds 65535 (then uint32), so a message is never
    longer than ``message_nbytes`` with the itemsize ``size_dtype_for(num_cells)`` plans for.
    """
    _check_quant(quant)
    feat_np = feat.detach().float().cpu().numpy()
    pos_np = pos.detach().double().cpu().numpy()
    n, c = feat_np.shape
    if pos_np.shape != (n, 2):
        raise ValueError(f'encode_tokens: pos must be [{n}, 2], got {pos_np.shape}')
    flags = 0
    size_bytes = b''
    if size is not None:
        size_np = np.rint(size.detach().double().cpu().numpy())
        if size_np.shape != (n,) or (size_np < 1).any():
            raise ValueError(f'encode_tokens: size must be [{n}] with values >= 1')
        if (size_np != 1).any():
            sdt = size_dtype_for(int(size_np.max()))
            if size_np.max() > np.iinfo(sdt).max:
                raise ValueError(f'encode_tokens: size {size_np.max()} does not fit {sdt}')
            flags |= FLAG_SIZES | (FLAG_SIZES_U32 if sdt.itemsize == 4 else 0)
            size_bytes = size_np.astype(sdt).tobytes()
    # A fixed 1 cm unit unless a position is beyond +-327 m: then stretch the unit to fit.
    amax = float(np.abs(pos_np).max()) if n else 0.0
    pos_unit = max(POS_UNIT, amax / INT16_MAX * (1 + 1e-6))
    pos_q = np.clip(np.rint(pos_np / pos_unit), -INT16_MAX, INT16_MAX).astype('<i2')
    scale_b, feat_b = quantise(feat_np, quant)
    x, y, yaw = _pose_tuple(pose)
    head = HEADER.pack(MAGIC, VERSION, KINDS['tokens'], QUANTS[quant], flags, c, 0, 0, n,
                       x, y, yaw, 0.0, 0.0, 0.0, pos_unit)
    return head + scale_b + feat_b + pos_q.tobytes() + size_bytes


def encode_dense(bev: torch.Tensor, pose, pc_range, quant: str = 'fp32') -> bytes:
    """Serialise a whole BEV map [C, X, Y] (full sharing); positions are implied by the grid."""
    _check_quant(quant)
    c, x_cells, y_cells = bev.shape
    x_min, y_min = float(pc_range[0]), float(pc_range[1])
    x_max = float(pc_range[3] if len(pc_range) == 6 else pc_range[2])
    y_max = float(pc_range[4] if len(pc_range) == 6 else pc_range[3])
    cell_x, cell_y = (x_max - x_min) / x_cells, (y_max - y_min) / y_cells
    if not math.isclose(cell_x, cell_y, rel_tol=1e-6):
        raise ValueError(f'encode_dense: BEV cells must be square, got {cell_x} x {cell_y} m')
    feat_np = bev.detach().float().cpu().reshape(c, -1).t().numpy()
    scale_b, feat_b = quantise(feat_np, quant)
    x, y, yaw = _pose_tuple(pose)
    head = HEADER.pack(MAGIC, VERSION, KINDS['dense'], QUANTS[quant], 0, c, x_cells, y_cells,
                       x_cells * y_cells, x, y, yaw, x_min, y_min, cell_x, 0.0)
    return head + scale_b + feat_b


def decode(data: bytes, source: str = 'message') -> Message:
    """Parse a message; raises MessageError naming ``source`` and the problem."""
    from .tokens import bev_cell_centres
    if len(data) < HEADER.size:
        raise MessageError(f'{source}: {len(data)} bytes, shorter than the {HEADER.size}-byte header')
    (magic, version, kind_c, quant_c, flags, c, x_cells, y_cells, n,
     px, py, pyaw, x_min, y_min, cell, pos_unit) = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise MessageError(f'{source}: bad magic {magic!r}, expected {MAGIC!r}')
    if version != VERSION:
        raise MessageError(f'{source}: version {version}, this decoder reads {VERSION}')
    if kind_c not in _KIND_NAMES or quant_c not in _QUANT_NAMES:
        raise MessageError(f'{source}: unknown kind {kind_c} or quantisation {quant_c}')
    kind, quant = _KIND_NAMES[kind_c], _QUANT_NAMES[quant_c]
    if kind == 'dense' and n != x_cells * y_cells:
        raise MessageError(f'{source}: dense message with n={n} for a {x_cells}x{y_cells} grid')
    size_item = 4 if flags & FLAG_SIZES_U32 else 2
    expect = message_nbytes(kind, quant, c, n, bool(flags & FLAG_SIZES), size_item)
    if len(data) != expect:
        raise MessageError(f'{source}: {len(data)} bytes, header says {expect} '
                           f'({kind}, {quant}, C={c}, n={n})')
    off = HEADER.size
    if quant == 'int8':
        scale = np.frombuffer(data, '<f4', c, off)
        off += 4 * c
        feat = np.frombuffer(data, '<i1', n * c, off).reshape(n, c).astype(np.float32) * scale
        off += n * c
    else:
        dt = '<f4' if quant == 'fp32' else '<f2'
        feat = np.frombuffer(data, dt, n * c, off).reshape(n, c).astype(np.float32)
        off += n * c * np.dtype(dt).itemsize
    if kind == 'tokens':
        pos = np.frombuffer(data, '<i2', n * 2, off).reshape(n, 2).astype(np.float64) * pos_unit
        off += n * 4
        if flags & FLAG_SIZES:
            size = np.frombuffer(data, '<u4' if size_item == 4 else '<u2', n, off).astype(np.float32)
            if n and size.min() < 1:
                raise MessageError(f'{source}: token size 0')
        else:
            size = np.ones(n, np.float32)
        pos_t = torch.from_numpy(pos.astype(np.float32))
        grid = (0, 0, 0.0, 0.0, 0.0)
    else:
        if not (cell > 0 and math.isfinite(cell)):
            raise MessageError(f'{source}: dense message with cell size {cell}')
        rng = (x_min, y_min, x_min + x_cells * cell, y_min + y_cells * cell)
        pos_t = bev_cell_centres(x_cells, y_cells, rng)
        size = np.ones(n, np.float32)
        grid = (x_cells, y_cells, x_min, y_min, cell)
    if not np.isfinite(feat).all():
        raise MessageError(f'{source}: non-finite feature values')
    return Message(kind=kind, quant=quant, feat=torch.from_numpy(np.ascontiguousarray(feat)),
                   pos=pos_t, size=torch.from_numpy(size), pose=(px, py, pyaw), grid=grid,
                   pos_unit=pos_unit, nbytes=len(data))
