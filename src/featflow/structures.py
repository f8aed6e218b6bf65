"""Data that flows between data sets, detection methods, box post-processing and evaluation: one detections type
(``Detections``, per frame) and one ground-truth type (``GroundTruth`` per frame, ``VideoGroundTruth`` per video).

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


def _checked_truth(boxes: np.ndarray, labels: np.ndarray, track_ids: np.ndarray, dtype: type
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frame's ground truth as arrays of the right shapes and types, or ValueError saying what is wrong."""
    boxes = np.asarray(boxes, dtype).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    tracks = np.asarray(track_ids, np.int64).reshape(-1)
    if not (len(boxes) == len(labels) == len(tracks)):
        raise ValueError(f"{len(boxes)} boxes, {len(labels)} labels and {len(tracks)} track ids")
    if len(labels) and labels.min() < 1:
        raise ValueError(f"ground-truth labels are 1-based class indices; got {labels.min()}")
    return boxes, labels, tracks


@dataclass(frozen=True)
class GroundTruth:
    """The ground truth of one frame: boxes (n, 4) float32, labels (n,) int64 (1-based classes) and track ids
    (n,) int64 (the same object keeps its id across frames: motion categories follow it)."""

    boxes: np.ndarray
    labels: np.ndarray
    track_ids: np.ndarray

    def __post_init__(self) -> None:
        boxes, labels, tracks = _checked_truth(self.boxes, self.labels, self.track_ids, np.float32)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "track_ids", tracks)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class VideoGroundTruth:
    """The ground truth of one video, one entry per frame: boxes (n, 4) float64, labels (n,) int64 (1-based
    classes) and track ids (n,) int64 (for the motion IoU). ``from_frames`` builds it from ``GroundTruth``s."""

    boxes: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray, ...]
    track_ids: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if not (len(self.boxes) == len(self.labels) == len(self.track_ids)):
            raise ValueError(f"boxes, labels and track ids cover different numbers of frames: "
                             f"{len(self.boxes)}, {len(self.labels)}, {len(self.track_ids)}")
        frames = []
        for t, parts in enumerate(zip(self.boxes, self.labels, self.track_ids)):
            try:
                frames.append(_checked_truth(*parts, np.float64))
            except ValueError as err:
                raise ValueError(f"frame {t}: {err}") from None
        object.__setattr__(self, "boxes", tuple(f[0] for f in frames))
        object.__setattr__(self, "labels", tuple(f[1] for f in frames))
        object.__setattr__(self, "track_ids", tuple(f[2] for f in frames))

    @classmethod
    def from_frames(cls, frames: "list[GroundTruth] | tuple[GroundTruth, ...]") -> "VideoGroundTruth":
        return cls(tuple(f.boxes for f in frames), tuple(f.labels for f in frames),
                   tuple(f.track_ids for f in frames))

    def __len__(self) -> int:
        return len(self.boxes)


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
