"""Photo decoding to 8-bit sRGB: modes, bit depths, alpha, EXIF, and every failure as a reason
(lightning_gans.data.faces.decode)."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from skimage import data

from lightning_gans.data.faces import decode
from lightning_gans.data.faces.decode import DecodeError, decode_image


def png16(a: np.ndarray) -> bytes:
    """A 16-bit PNG (grey [H, W] or RGB [H, W, 3] uint16), which PIL cannot write in colour."""
    a = a if a.ndim == 3 else a[..., None]
    h, w, c = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2}[c], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw))
            + _chunk(b"IEND", b""))


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_bomb(w: int, h: int) -> bytes:
    """A small PNG whose header claims w x h pixels: a decompression bomb (only the first row
    of data is there; a decoder that trusted the header would allocate w * h * 3 bytes)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    row = zlib.compress(b"\x00" * (1 + 3 * w))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", row)
            + _chunk(b"IEND", b""))


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def exif_rotated_jpeg(upright: Image.Image) -> bytes:
    """JPEG storing the photo turned 90 deg left, tagged orientation 6 ("rotate right to view")."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif)


def _mae(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean())


ASTRO = Image.fromarray(data.astronaut())


@pytest.mark.parametrize("fmt, kw", [("PNG", {}), ("WEBP", {"lossless": True}), ("BMP", {}),
                                     ("TIFF", {}), ("GIF", {})])
def test_formats_decode_to_rgb(fmt, kw):
    img = decode_image(encode(ASTRO, fmt, **kw))
    assert img.mode == "RGB" and img.size == (512, 512)
    # GIF quantizes to 256 colours; the others are lossless.
    assert _mae(img, ASTRO) < (8 if fmt == "GIF" else 1e-9)


def test_cmyk_jpeg_keeps_colours():
    img = decode_image(encode(ASTRO.convert("CMYK"), "JPEG", quality=95))
    assert img.mode == "RGB" and _mae(img, ASTRO) < 4


def test_16bit_is_scaled_not_clipped():
    grey = np.full((16, 16), 40000, np.uint16)
    grey[0, 0] = 65535
    out = np.asarray(decode_image(png16(grey)))
    assert out[1, 1].tolist() == [156, 156, 156]  # 40000 / 257; PIL's convert("L") gives 255
    assert out[0, 0].tolist() == [255, 255, 255]
    rgb = np.stack([np.full((16, 16), v, np.uint16) for v in (40000, 1000, 65535)], axis=2)
    # PIL keeps the high byte of 16-bit colour: within 1 of v / 257, never clipped.
    np.testing.assert_allclose(np.asarray(decode_image(png16(rgb)))[3, 3],
                               [40000 / 257, 1000 / 257, 255], atol=1)


def test_float_tiff_in_unit_range():
    f = Image.fromarray(np.full((16, 16), 0.5, np.float32))
    assert np.asarray(decode_image(encode(f, "TIFF")))[0, 0].tolist() == [128, 128, 128]


def test_alpha_is_composited_over_white():
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 1] = 255  # green everywhere, but...
    rgba[:8, :, 3] = 0  # ...invisible in the top half
    rgba[8:, :, 3] = 128  # half visible below
    out = np.asarray(decode_image(encode(Image.fromarray(rgba), "PNG")))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[12, 0].tolist() == [127, 255, 127]


def test_palette_transparency_is_white():
    p = Image.new("P", (16, 16), 1)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.paste(0, (0, 0, 8, 16))
    out = np.asarray(decode_image(encode(p, "PNG", transparency=0)))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 15].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied():
    img = decode_image(exif_rotated_jpeg(ASTRO))
    assert img.size == (512, 512) and _mae(img, ASTRO) < 3
    # The stored pixels really are turned: ignoring EXIF would give a very different picture.
    assert _mae(Image.open(io.BytesIO(exif_rotated_jpeg(ASTRO))).convert("RGB"), ASTRO) > 30


@pytest.mark.parametrize("payload, reason", [
    (b"", decode.EMPTY),
    (b"hello, I am a text file named .jpg\n", decode.NOT_IMAGE),
    (encode(ASTRO, "JPEG")[:4000], decode.CORRUPT),
    (encode(ASTRO, "PNG")[:5000], decode.CORRUPT),
    (png_bomb(40000, 40000), decode.TOO_LARGE),
    (encode(Image.new("RGB", (4, 4)), "PNG"), decode.TOO_SMALL),
])
def test_failures_have_reasons(payload, reason):
    with pytest.raises(DecodeError) as e:
        decode_image(payload)
    assert e.value.reason == reason
