"""The invisible watermark: invisible (PSNR), readable after JPEG 75 / 0.5x resize / a crop, and silent
on unmarked images (watermark.py)."""

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

from lightning_gans.synthesis import watermark as wm

SHA = "3fa9c2d1" + "0" * 56


@pytest.fixture(scope="module")
def photo():
    return np.asarray(Image.fromarray(data.astronaut()).resize((256, 256), Image.LANCZOS))


def psnr(a, b):
    return 10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2))


def jpeg(a, q):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf).convert("RGB"))


def test_payload_layout():
    bits = wm.payload_bits(SHA)
    raw = np.packbits(bits.astype(np.uint8)).tobytes()
    assert raw[:3] == b"SYN" and raw[3:7] == bytes.fromhex("3fa9c2d1") and len(bits) == wm.NBITS
    assert wm.payload_string(SHA) == "synthetic:3fa9c2d1"


def test_embed_invisible_and_survives_jpeg75(photo):
    marked = wm.embed(photo, SHA)
    assert marked.dtype == np.uint8 and marked.shape == photo.shape
    assert 38 <= psnr(marked, photo) < 60  # changed, but not visibly
    for img in (marked, jpeg(marked, 75)):
        d = wm.detect(img)
        assert d.found and d.payload == "synthetic:3fa9c2d1", d
    other = wm.detect(wm.embed(photo, "77" * 32))
    assert other.found and other.payload == "synthetic:77777777"


def test_survives_half_resize_and_crop(photo):
    marked = Image.fromarray(wm.embed(photo, SHA))
    half = np.asarray(marked.resize((128, 128), Image.BICUBIC).resize((256, 256), Image.BICUBIC))
    assert wm.detect(half).payload == "synthetic:3fa9c2d1"
    cropped = np.asarray(marked)[13:243, 7:250]  # the grid shifts: found by the offset search
    assert wm.detect(cropped, search=False).found is False
    assert wm.detect(cropped).payload == "synthetic:3fa9c2d1"


def test_unmarked_images_not_flagged(photo):
    for img in (photo, jpeg(photo, 75), np.asarray(Image.fromarray(data.chelsea()).resize((256, 256)))):
        d = wm.detect(img)
        assert not d.found and d.payload is None


def test_small_images_left_alone():
    small = (np.random.RandomState(0).rand(128, 200, 3) * 255).astype(np.uint8)
    assert np.array_equal(wm.embed(small, SHA), small)
