"""MTCNN (own implementation, facenet-pytorch's weight files) on the astronaut portrait
(lightning_gans.data.faces.mtcnn)."""

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from lightning_gans.data.faces import mtcnn
from lightning_gans.errors import DataError
from lightning_gans.pretrained.weights import MTCNN_INSTALL, resolve_mtcnn_weights

try:
    WEIGHTS = resolve_mtcnn_weights()
except DataError:
    WEIGHTS = None
pytestmark = pytest.mark.skipif(WEIGHTS is None, reason=f"no MTCNN weights: {MTCNN_INSTALL}")

# Hand-marked on skimage.data.astronaut() (see test_faces_align.py): iris centres, nose tip,
# mouth corners, image-left first; the face spans about x 180-268, y 60-175.
MARKED = np.array([(203.0, 101.5), (245.5, 102.5), (224.0, 126.0), (203.0, 140.0), (244.5, 141.0)])


@pytest.fixture(scope="module")
def detector():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as prepare-faces runs it; restored for the other test modules
    yield mtcnn.MTCNN()
    torch.set_num_threads(threads)


def test_weights_are_plain_state_dicts():
    state = torch.load(WEIGHTS / "onet.pt", map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and state["dense6_3.weight"].shape == (10, 256)


def test_finds_the_astronaut_and_her_landmarks(detector):
    found = detector.detect(data.astronaut())
    best = max(found, key=lambda d: d.score)
    assert best.score > 0.99
    x1, y1, x2, y2 = best.box
    assert 165 < x1 < 195 and 45 < y1 < 75 and 255 < x2 < 280 and 160 < y2 < 190
    err = np.hypot(*(best.landmarks - MARKED).T)
    assert err.max() < 4.0, err  # nose tip is the loosest (~3 px: MTCNN marks it lower)
    # Anything else it reports is weak (a patch on the suit), never a confident face.
    assert all(d.score < 0.9 for d in found if d is not best)


def test_mirrored_photo_mirrors_the_landmarks(detector):
    flipped = np.ascontiguousarray(data.astronaut()[:, ::-1])
    best = max(detector.detect(flipped), key=lambda d: d.score)
    # Still image-left first: the mirrored right eye (x 511 - 245.5) comes first.
    expected = MARKED[[1, 0, 2, 4, 3]] * (-1, 1) + (511, 0)
    assert np.hypot(*(best.landmarks - expected).T).max() < 4.5


def test_no_face_in_a_cup_of_coffee(detector):
    assert [d for d in detector.detect(data.coffee()) if d.score > 0.9] == []


def test_refine_on_full_resolution_matches_direct_detection(detector):
    big = Image.fromarray(data.astronaut()).resize((1536, 1536), Image.Resampling.LANCZOS)
    small = big.resize((512, 512), Image.Resampling.BOX)
    d = max(detector.detect(small), key=lambda d: d.score)
    _, lm = detector.refine(big, (d.box[None] + 0.5) * 3 - 0.5)
    assert np.hypot(*(lm[0] - ((MARKED + 0.5) * 3 - 0.5)).T).max() < 3 * 4.0
