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


def encode_labels(labels: np.ndarray) -> dict:
    """(H, W) class-id map -> run-length encoding in row-major order: ``{"size": [H, W], "values": [...],
    "counts": [...]}`` (run i is ``counts[i]`` pixels of class ``values[i]``); ``decode_labels`` inverts it."""
    if labels.ndim != 2:
        raise ValueError(f"expected an (H, W) label map, got shape {labels.shape}")
    flat = labels.reshape(-1)
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    counts = np.diff(np.r_[starts, flat.size])
    return {"size": list(labels.shape), "values": flat[starts].tolist(), "counts": counts.tolist()}


def decode_labels(rle: dict) -> np.ndarray:
    """``encode_labels``' output -> the (H, W) uint8 class-id map."""
    h, w = rle["size"]
    if sum(rle["counts"]) != h * w:
        raise ValueError(f"run lengths add up to {sum(rle['counts'])}, not {h}x{w}")
    return np.repeat(np.asarray(rle["values"], np.uint8), rle["counts"]).reshape(h, w)
