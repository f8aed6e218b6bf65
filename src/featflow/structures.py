"""Data that flows between detection methods, box post-processing and evaluation.

Boxes follow the ImageNet VID annotation convention everywhere in featflow: (x1, y1, x2, y2) in image
pixels of the frame, with x2 / y2 the last pixel covered (so a box is x2 - x1 + 1 pixels wide, as the
VID evaluation counts it). Class labels are the 1-based class indices of the dataset's class map
(``devkit/data/map_vid.txt`` order); 0 is never a detection label (it is the background).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """The detections of one frame: boxes (n, 4) float32, scores (n,) float32, labels (n,) int64."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, np.float32).reshape(-1)
        labels = np.asarray(self.labels, np.int64).reshape(-1)
        if not (len(boxes) == len(scores) == len(labels)):
            raise ValueError(f"boxes, scores and labels differ in length: {len(boxes)}, {len(scores)}, {len(labels)}")
        if len(labels) and labels.min() < 1:
            raise ValueError("detection labels are 1-based class indices; got a label below 1")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def select(self, keep: np.ndarray) -> "Detections":
        """The detections at ``keep`` (indices or a boolean mask)."""
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])

    @classmethod
    def concat(cls, parts: list["Detections"]) -> "Detections":
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.boxes for p in parts]), np.concatenate([p.scores for p in parts]),
                   np.concatenate([p.labels for p in parts]))


#: The detections of a video, one entry per frame in frame order.
VideoDetections = list[Detections]
