"""An invisible watermark in the pixels: a 64-bit payload ("synthetic" tag + checkpoint hash bytes).

Why our own and not the `invisible-watermark` package: that package pulls opencv-python (the GUI
build, libGL), onnx/onnxruntime and its own torch pin for the RivaGAN mode, and its dwtDct mode is
documented as not robust to resizing, which is the re-encode every social network applies. This is
the same family of method (DWT + block DCT), made to survive a 0.5x resize and JPEG 50:

- luma only, on the Haar LL band (2x2 means): a 0.5x downscale keeps exactly that band;
- 8x8 block DCT of LL, `len(SLOTS)` low-frequency coefficients per block, each carrying one bit
  by dither-modulated quantisation (QIM, step STEP): detection is blind and the host image does
  not interfere (unlike additive spread spectrum);
- bits are laid out in a 4x4-block tile (64 px in the image) repeated over the whole picture, so
  every bit is voted on by many coefficients (soft decoding), and a crop only shifts the phase;
  `detect` searches the 16 px grid offset and the tile phase when the aligned read fails;
- payload = b"SYN" + 4 bytes of the checkpoint sha256 + CRC-8; a read counts as found only when
  the tag (<= 1 bit error over 24) and the CRC both match, so unmarked images are not flagged.

Needs only numpy and scipy (scikit-image already depends on it). Outputs smaller than MIN_SIZE
(256 px) get no watermark: too few blocks for a reliable read; the manifest says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.fft import dctn, idctn

MIN_SIZE = 256
TAG = b"SYN"
STEP = 24.0  # QIM step in LL-DCT units (orthonormal DCT of 2x2 means): PSNR ~40 dB
SLOTS = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1), (2, 2))
TILE = 4  # tile of TILE x TILE blocks = 64 x 64 image pixels
NBITS = 64
SEARCH_SIZE = 512  # shifted-grid reads look at this much of a large image
_BLOCK = 8  # LL block size (16 image pixels)


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def payload_bits(model_sha256: str) -> np.ndarray:
    """The 64 bits embedded for a checkpoint: tag, first 4 hash bytes, CRC-8 of those bytes."""
    h = bytes.fromhex((model_sha256 or "0" * 8)[:8].ljust(8, "0"))
    raw = TAG + h + bytes([_crc8(h)])
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8)).astype(np.int64)


def payload_string(model_sha256: str) -> str:
    """How `detect` reports the payload embedded for this checkpoint."""
    return "synthetic:" + (model_sha256 or "0" * 8)[:8].ljust(8, "0").lower()


def _bit_map() -> np.ndarray:
    """bit index of each (tile row, tile col, slot): a fixed shuffle, every bit twice per tile."""
    n = TILE * TILE * len(SLOTS)
    order = np.random.RandomState(20).permutation(n) % NBITS
    return order.reshape(TILE, TILE, len(SLOTS))


_MAP = _bit_map()
_SY = np.array([s[0] for s in SLOTS])
_SX = np.array([s[1] for s in SLOTS])


def _luma(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float64)
    if x.ndim == 2:
        return x
    if x.shape[-1] == 1:
        return x[..., 0]
    return x[..., :3] @ np.array([0.299, 0.587, 0.114])


def _blocks(y: np.ndarray) -> np.ndarray:
    """luma [H, W] -> LL-DCT blocks [by, bx, 8, 8] of the whole 16 px blocks from the top left."""
    nby, nbx = y.shape[0] // (2 * _BLOCK), y.shape[1] // (2 * _BLOCK)
    y = y[: nby * 2 * _BLOCK, : nbx * 2 * _BLOCK]
    ll = y.reshape(nby * _BLOCK, 2, nbx * _BLOCK, 2).mean(axis=(1, 3))
    b = ll.reshape(nby, _BLOCK, nbx, _BLOCK).transpose(0, 2, 1, 3)
    return dctn(b, axes=(2, 3), norm="ortho")


def embed(rgb: np.ndarray, model_sha256: str) -> np.ndarray:
    """uint8 HxWxC (C = 1 or 3) -> the same image with the payload in its luma (uint8)."""
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIZE:
        return rgb
    bits = payload_bits(model_sha256)
    y = _luma(rgb)
    coef = _blocks(y)
    nby, nbx = coef.shape[:2]
    by, bx = np.meshgrid(np.arange(nby), np.arange(nbx), indexing="ij")
    b = bits[_MAP[by % TILE, bx % TILE]]  # [nby, nbx, slots]
    c = coef[:, :, _SY, _SX]
    d = b * (STEP / 2)
    new = np.round((c - d) / STEP) * STEP + d
    delta = np.zeros_like(coef)
    delta[:, :, _SY, _SX] = new - c
    dll = idctn(delta, axes=(2, 3), norm="ortho").transpose(0, 2, 1, 3).reshape(nby * _BLOCK, nbx * _BLOCK)
    dy = np.zeros((h, w))
    dy[: nby * 2 * _BLOCK, : nbx * 2 * _BLOCK] = np.repeat(np.repeat(dll, 2, axis=0), 2, axis=1)
    out = rgb.astype(np.float64) + (dy[..., None] if rgb.ndim == 3 else dy)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


@dataclass
class Detection:
    """What `detect` read: found only when tag and CRC check out."""

    found: bool
    payload: str | None  # "synthetic:<first 8 hex digits of the checkpoint sha256>"
    confidence: float  # mean |soft vote| of the best read, 0..1
    offset: tuple[int, int] = (0, 0)

    def as_dict(self) -> dict:
        return {"found": self.found, "payload": self.payload, "confidence": round(self.confidence, 3)}


def _soft(coef: np.ndarray) -> np.ndarray:
    """+1 near the bit-0 lattice, -1 near the bit-1 lattice, for each slot [by, bx, slots]."""
    return np.cos(2 * np.pi * coef[:, :, _SY, _SX] / STEP)


def _decode(soft: np.ndarray, phase: tuple[int, int]) -> tuple[np.ndarray, float]:
    nby, nbx = soft.shape[:2]
    by, bx = np.meshgrid(np.arange(nby) + phase[0], np.arange(nbx) + phase[1], indexing="ij")
    idx = _MAP[by % TILE, bx % TILE]
    votes = np.bincount(idx.ravel(), weights=soft.ravel(), minlength=NBITS)
    counts = np.bincount(idx.ravel(), minlength=NBITS)
    return (votes < 0).astype(np.int64), float(np.mean(np.abs(votes) / np.maximum(counts, 1)))


def _check(bits: np.ndarray) -> str | None:
    raw = np.packbits(bits.astype(np.uint8)).tobytes()
    tag_errors = int(np.sum(bits[:24] != np.unpackbits(np.frombuffer(TAG, dtype=np.uint8))))
    if tag_errors <= 1 and _crc8(raw[3:7]) == raw[7]:
        return "synthetic:" + raw[3:7].hex()
    return None


def detect(rgb: np.ndarray, search: bool = True) -> Detection:
    """Read the watermark of a uint8 image; `search` also tries shifted grids (crops)."""
    y = _luma(np.asarray(rgb))
    if min(y.shape) < 4 * _BLOCK:
        return Detection(False, None, 0.0)
    best = Detection(False, None, 0.0)
    offsets = [(0, 0)] + ([(oy, ox) for oy in range(16) for ox in range(16) if (oy, ox) != (0, 0)] if search else [])
    for oy, ox in offsets:
        # the aligned read uses the whole image; the shifted ones a 512 px corner (enough votes, bounded time)
        part = y[oy:, ox:] if (oy, ox) == (0, 0) else y[oy : oy + SEARCH_SIZE, ox : ox + SEARCH_SIZE]
        soft = _soft(_blocks(part))
        if soft.size == 0:
            continue
        phases = [(py, px) for py in range(TILE) for px in range(TILE)] if search else [(0, 0)]
        for phase in phases:
            bits, conf = _decode(soft, phase)
            payload = _check(bits)
            if payload is not None:
                return Detection(True, payload, conf, (oy, ox))
            if conf > best.confidence:
                best = Detection(False, None, conf, (oy, ox))
    return best
