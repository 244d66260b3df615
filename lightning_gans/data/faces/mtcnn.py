"""MTCNN face detector with 5 landmarks (Zhang, Zhang, Li, Qiao, IEEE SPL 2016), own implementation.

The P-, R- and O-Net weights are the MIT-licensed `pnet.pt / rnet.pt / onet.pt` state dicts that
ship inside the `facenet-pytorch` 2.6.0 wheel (converted from the authors' Caffe models). We only
read those files (weights-only, checkpoint.load_tensors): facenet-pytorch's code pins an old torch
and imports torchvision, so it is never imported. Install the weights: `pip install --no-deps
facenet-pytorch==2.6.0`, or point $LG_MTCNN_WEIGHTS at a folder holding them
(pretrained.weights.resolve_mtcnn_weights finds them).

Landmarks: [left eye, right eye, nose tip, left mouth corner, right mouth corner] as (x, y) in
pixel-index coordinates (pixel centres on integers); "left" is image-left (the subject's right).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ...checkpoint import load_tensors
from ...errors import DataError
from ...pretrained.weights import resolve_mtcnn_weights


@dataclass
class Detection:
    """One face: box [x1, y1, x2, y2] (pixels), score in [0, 1], landmarks [5, 2] (x, y)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray


class PNet(nn.Module):
    """Proposal net: fully convolutional, a 12x12 window per output cell at stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not face
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box regression

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_1(x).softmax(1)[:, 1], self.conv4_2(x)  # [N, H, W], [N, 4, H, W]


def _caffe_flatten(x: torch.Tensor) -> torch.Tensor:
    # The Caffe models were trained on transposed (column-major) images, so the dense layers
    # expect features flattened in (W, H, C) order.
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class RNet(nn.Module):
    """Refine net on 24x24 crops: face score and box regression."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_caffe_flatten(self.prelu3(self.conv3(x)))))
        return self.dense5_1(x).softmax(1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output net on 48x48 crops: face score, box regression, 5 landmarks (x1..x5, y1..y5)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_caffe_flatten(self.prelu4(self.conv4(x)))))
        return self.dense6_1(x).softmax(1)[:, 1], self.dense6_2(x), self.dense6_3(x)


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, by_min: bool = False
         ) -> np.ndarray:
    """Greedy non-maximum suppression; overlap is IoU, or intersection/min-area if `by_min`."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order, keep = np.argsort(-scores, kind="stable"), []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = iw * ih
        denom = np.minimum(area[i], area[rest]) if by_min else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply the nets' box offsets, which are in units of the box's width/height."""
    wh = boxes[:, 2:4] - boxes[:, 0:2] + 1
    return boxes + reg * np.concatenate([wh, wh], axis=1)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (the nets see square crops)."""
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    side = wh.max(axis=1, keepdims=True)
    x1y1 = boxes[:, 0:2] + wh * 0.5 - side * 0.5
    return np.concatenate([x1y1, x1y1 + side], axis=1)


class MTCNN(nn.Module):
    """The three-stage cascade. `detect(image)` -> list of `Detection`, best score first."""

    def __init__(self, weights_dir: str | Path | None = None) -> None:
        super().__init__()
        folder = Path(weights_dir) if weights_dir is not None else resolve_mtcnn_weights()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for name, net in (("pnet", self.pnet), ("rnet", self.rnet), ("onet", self.onet)):
            # Plain state dicts of tensors: weights_only refuses anything that would run code.
            state = load_tensors(folder / f"{name}.pt", "MTCNN weights file", error=DataError)
            net.load_state_dict(state)
        self.eval().requires_grad_(False)

    @staticmethod
    def _to_input(a: np.ndarray) -> torch.Tensor:
        """uint8 [..., H, W, 3] -> float [N, 3, H, W] in the range the Caffe models know."""
        x = torch.from_numpy(np.asarray(a, dtype=np.float32)).sub_(127.5).mul_(0.0078125)
        return x.reshape(-1, *a.shape[-3:]).permute(0, 3, 1, 2)

    def _crops(self, img: Image.Image, boxes: np.ndarray, size: int) -> torch.Tensor:
        """Square crops [N, 3, size, size]; parts outside the image are black (as in the paper).

        PIL's crop fills outside pixels with 0 and its BOX resize is area averaging, like the
        reference implementation's, at a fraction of the cost of per-crop torch calls.
        """
        x1y1 = np.trunc(boxes[:, 0:2]).astype(np.int64)
        x2y2 = np.trunc(boxes[:, 2:4]).astype(np.int64) + 1
        crops = [np.asarray(img.crop((a, b, c, d)).resize((size, size), Image.Resampling.BOX))
                 for (a, b), (c, d) in zip(x1y1.tolist(), x2y2.tolist())]
        return self._to_input(np.stack(crops))

    @torch.inference_mode()
    def detect(
        self,
        image: np.ndarray | Image.Image,
        min_size: float = 20.0,  # smallest face (box side, pixels) the pyramid looks for
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),  # P-, R-, O-Net score cuts
        factor: float = 0.709,  # pyramid step: sqrt(0.5), two levels per octave
    ) -> list[Detection]:
        """Faces in an RGB image (uint8 [H, W, 3] or PIL), best score first."""
        img = image if isinstance(image, Image.Image) else Image.fromarray(image)
        assert img.mode == "RGB", img.mode
        w, h = img.size

        # Stage 1: P-Net over an image pyramid; a 12 px window at scale s sees a 12/s px face.
        scale, found = 12.0 / max(min_size, 12.0), []
        while min(h, w) * scale >= 12:
            level = img.resize((int(np.ceil(w * scale)), int(np.ceil(h * scale))),
                               Image.Resampling.BOX)
            prob, reg = self.pnet(self._to_input(np.asarray(level)))
            prob, reg = prob[0].numpy(), reg[0].numpy()
            ys, xs = np.nonzero(prob >= thresholds[0])
            if ys.size:
                x1y1 = np.stack([xs, ys], 1) * 2.0 / scale
                boxes = np.concatenate([x1y1, x1y1 + 12.0 / scale - 1], 1)
                scores = prob[ys, xs]
                keep = _nms(boxes, scores, 0.5)
                offsets = reg[:, ys, xs].T
                found.append(np.concatenate([boxes, scores[:, None], offsets], 1)[keep])
            scale *= factor
        if not found:
            return []
        cand = np.concatenate(found)
        cand = cand[_nms(cand[:, :4], cand[:, 4], 0.7)]
        boxes = _square(_regress(cand[:, :4], cand[:, 5:9]))

        # Stage 2: R-Net rejects most false positives and refines the boxes.
        prob, reg = self.rnet(self._crops(img, boxes, 24))
        ok = (prob > thresholds[1]).numpy()
        boxes, scores, reg = boxes[ok], prob.double().numpy()[ok], reg.double().numpy()[ok]
        if not len(boxes):
            return []
        keep = _nms(boxes, scores, 0.7)
        boxes = _square(_regress(boxes[keep], reg[keep]))

        # Stage 3: O-Net gives the final score, box and landmarks.
        scores, boxes, lm = self._onet(img, boxes)
        ok = scores > thresholds[2]
        boxes, scores, lm = boxes[ok], scores[ok], lm[ok]
        keep = _nms(boxes, scores, 0.7, by_min=True) if len(boxes) else []
        return [Detection(boxes[i], float(scores[i]), lm[i]) for i in keep]

    def _onet(self, img: Image.Image, boxes: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """O-Net on square `boxes` [N, 4]: scores, regressed boxes [N, 4], landmarks [N, 5, 2]."""
        if not len(boxes):
            return np.zeros(0), np.zeros((0, 4)), np.zeros((0, 5, 2))
        prob, reg, marks = (t.double().numpy() for t in self.onet(self._crops(img, boxes, 48)))
        origin = np.trunc(boxes[:, 0:2])  # landmarks are fractions of the integer crop O-Net saw
        side = np.trunc(boxes[:, 2:4]) - origin + 1
        lm = np.stack([marks[:, :5], marks[:, 5:]], axis=2) * side[:, None, :] + origin[:, None, :]
        return prob, _regress(boxes, reg), lm

    @torch.inference_mode()
    def refine(self, image: np.ndarray | Image.Image, boxes: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """O-Net again on full-resolution crops of `boxes` [N, 4] found on a downscaled copy:
        (scores [N], landmarks [N, 5, 2]) as precise as detecting at full size, far cheaper."""
        img = image if isinstance(image, Image.Image) else Image.fromarray(image)
        scores, _, lm = self._onet(img, _square(np.asarray(boxes, dtype=np.float64)))
        return scores, lm
