"""Motion IoU (FGFA): how fast a ground-truth object moves, and its slow / medium / fast category.

For each ground-truth box, the motion IoU is the mean IoU with the same track's boxes in frames
t-10 .. t+10 (t itself excluded; fewer frames at the ends of a track). Categories: fast below 0.7,
medium 0.7 to 0.9, slow above 0.9. A box whose track appears in no neighbouring frame counts as slow.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

MOTION_WINDOW = 10
FAST_BELOW = 0.7
SLOW_ABOVE = 0.9


def motion_iou(frames: np.ndarray, track_ids: np.ndarray, boxes: np.ndarray, window: int = MOTION_WINDOW) -> np.ndarray:
    """Per-box motion IoU.

    frames (N,) frame index of each box, track_ids (N,), boxes (N, 4) as (x0, y0, x1, y1) -> (N,) float64.
    """
    frames = np.asarray(frames, np.int64)
    track_ids = np.asarray(track_ids, np.int64)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not (len(frames) == len(track_ids) == len(boxes)):
        raise ValueError("frames, track_ids and boxes must have the same length")
    out = np.ones(len(boxes), np.float64)
    for track in np.unique(track_ids):
        idx = np.flatnonzero(track_ids == track)
        t = frames[idx]
        iou = box_iou(torch.from_numpy(boxes[idx]), torch.from_numpy(boxes[idx])).numpy()  # (n, n)
        near = (np.abs(t[:, None] - t[None, :]) <= window) & (t[:, None] != t[None, :])
        counts = near.sum(1)
        sums = (iou * near).sum(1)
        out[idx] = np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)
    return out


def motion_category(miou: np.ndarray) -> np.ndarray:
    """Motion IoU -> category name per box ('slow', 'medium' or 'fast')."""
    miou = np.asarray(miou)
    return np.where(miou > SLOW_ABOVE, "slow", np.where(miou < FAST_BELOW, "fast", "medium"))
