"""Box IoU in the ImageNet VID convention, and motion IoU (FGFA): how fast a ground-truth object moves,
and its slow / medium / fast category.

Boxes are (x1, y1, x2, y2) with x2 / y2 the last pixel covered, so a box is x2 - x1 + 1 pixels wide and
two boxes intersect over min(x2) - max(x1) + 1 pixels (the ILSVRC devkit's convention). A box one pixel
wide (x1 == x2) thus has area h, not 0, and its IoU is finite.

The motion IoU of a ground-truth box in frame t is the mean IoU with the same track's boxes in frames
t-10 .. t+10 (t itself excluded; fewer frames at the ends of a track or across gaps). A box whose track
appears in no frame of that window gets motion IoU 0, as FGFA's evaluation reads the motion-IoU file
(an empty entry there becomes 0), so it counts as fast. Categories: fast below 0.7, medium 0.7 to 0.9,
slow above 0.9.
"""

from __future__ import annotations

import numpy as np

MOTION_WINDOW = 10
FAST_BELOW = 0.7
SLOW_ABOVE = 0.9
LONE_BOX_MOTION_IOU = 0.0  # a box without a neighbour in the window (FGFA's reader turns it into 0)


def box_iou_vid(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU with the +1 pixel convention: a (n, 4), b (m, 4) -> (n, m) float64."""
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None, :]  # (n, 1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)[None, :, :]  # (1, m, 4)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1, 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1, 0, None)
    inter = iw * ih  # (n, m)
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)  # (n, 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)  # (1, m)
    return inter / (area_a + area_b - inter)


def motion_iou(frames: np.ndarray, track_ids: np.ndarray, boxes: np.ndarray, window: int = MOTION_WINDOW) -> np.ndarray:
    """Per-box motion IoU.

    frames (N,) frame index of each box, track_ids (N,), boxes (N, 4) as (x1, y1, x2, y2), inclusive
    pixels -> (N,) float64 in [0, 1].
    """
    frames = np.asarray(frames, np.int64).reshape(-1)
    track_ids = np.asarray(track_ids, np.int64).reshape(-1)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not (len(frames) == len(track_ids) == len(boxes)):
        raise ValueError("frames, track_ids and boxes must have the same length")
    out = np.full(len(boxes), LONE_BOX_MOTION_IOU, np.float64)
    for track in np.unique(track_ids):
        idx = np.flatnonzero(track_ids == track)
        t = frames[idx]
        iou = box_iou_vid(boxes[idx], boxes[idx])  # (n, n)
        near = (np.abs(t[:, None] - t[None, :]) <= window) & (t[:, None] != t[None, :])  # (n, n)
        counts = near.sum(1)
        sums = np.where(near, iou, 0.0).sum(1)
        out[idx] = np.where(counts > 0, sums / np.maximum(counts, 1), LONE_BOX_MOTION_IOU)
    return out


def motion_category(miou: np.ndarray) -> np.ndarray:
    """Motion IoU -> category name per box ('slow', 'medium' or 'fast')."""
    miou = np.asarray(miou)
    return np.where(miou > SLOW_ABOVE, "slow", np.where(miou < FAST_BELOW, "fast", "medium"))
