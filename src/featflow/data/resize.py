"""The papers' input scaling of real frames: one factor per frame, so that its shorter side becomes ``short`` unless
that makes the longer side exceed ``long`` (ImageNet VID and DET: 600 and 1000, the released code's ``SCALES``).

The image is resized by that factor (bilinear, to the rounded size) and its boxes are multiplied by it; detections
on the resized frame are divided by it (and clipped to the frame) to come back in the original image's pixels, where
evaluation compares them with the annotations.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from featflow.errors import FeatflowError
from featflow.structures import Detections


@dataclass(frozen=True)
class Resize:
    short: int  # the shorter side's target
    long: int  # the longer side's limit

    def __post_init__(self) -> None:
        if not 1 <= self.short <= self.long:
            raise FeatflowError(f"a resize needs 1 <= shorter side <= longer side, got {self.short}, {self.long}")

    @classmethod
    def from_size(cls, size: tuple[int, int]) -> "Resize":
        """A config's ``data.size`` (H, W) read as (shorter side, longest longer side): (600, 1000) is the papers'."""
        return cls(min(size), max(size))

    def scale(self, height: int, width: int) -> float:
        """The factor for an image of ``height`` x ``width``."""
        return min(self.short / min(height, width), self.long / max(height, width))

    def image(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """(H, W, 3) -> (the resized image, its factor)."""
        scale = self.scale(*image.shape[:2])
        return resize_image(image, scale), scale


def resized_shape(height: int, width: int, scale: float) -> tuple[int, int]:
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: np.ndarray, scale: float, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) uint8 -> (round(H * scale), round(W * scale), 3), bilinear; ``shape`` (h, w) overrides the size
    (a reference frame resized to its current frame's). A factor of 1 returns the image itself."""
    height, width = shape or resized_shape(*image.shape[:2], scale)
    if (height, width) == image.shape[:2]:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def scale_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """(n, 4) boxes in the original image's pixels -> in the resized image's (float32)."""
    return (np.asarray(boxes, np.float64) * scale).astype(np.float32)


def boxes_to_original(boxes: np.ndarray, scale: float, height: int | None = None,
                      width: int | None = None) -> np.ndarray:
    """(n, 4) boxes on an image resized by ``scale`` -> in the original image's pixels (float32); clipped to its
    ``height`` x ``width`` when given (inclusive pixels: x in 0..width-1)."""
    out = np.asarray(boxes, np.float64).reshape(-1, 4) / scale
    if width is not None:
        out[:, 0::2] = out[:, 0::2].clip(0, width - 1)
    if height is not None:
        out[:, 1::2] = out[:, 1::2].clip(0, height - 1)
    return out.astype(np.float32)


class ResizedStream:
    """Frames resized for a model as they stream through it, and its detections brought back: ``frames(frames)``
    yields each frame resized (``resize``; None: as it is) and keeps its factor and original size until
    ``to_original(index, detections)`` takes them back (streams may answer late: FGFA offline, K frames)."""

    def __init__(self, resize: Resize | None) -> None:
        self.resize = resize
        self.pending: dict[int, tuple[float, int, int]] = {}  # frame index -> (factor, height, width)

    def frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for index, image in enumerate(frames):
            height, width = image.shape[:2]
            scale = 1.0 if self.resize is None else self.resize.scale(height, width)
            self.pending[index] = (scale, height, width)
            yield resize_image(image, scale)

    def to_original(self, index: int, detections: Detections) -> Detections:
        """Frame ``index``'s detections on its resized frame -> in its original pixels (clipped to it)."""
        scale, height, width = self.pending.pop(index)
        if scale == 1.0:
            return detections
        return Detections(boxes_to_original(detections.boxes, scale, height, width), detections.scores,
                          detections.labels)
