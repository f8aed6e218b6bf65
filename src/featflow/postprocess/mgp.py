"""Motion-guided propagation (MGP, T-CNN, Kang et al. 2017): copy each detection to its neighbouring
frames along the optical flow, so that a frame where the detector missed an object gets it from its
neighbours; then per-frame NMS."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from featflow.modeling.shallow_flow import DISFlow
from featflow.postprocess.linking import nms_per_class
from featflow.structures import Detections, VideoDetections

#: flows(src, dst) -> (H, W, 2) float displacement (dx, dy) in pixels of each pixel of frame src to frame
#: dst (forward flow: src(y, x) ~ dst(y + dy, x + dx)), or None for no motion.
FlowFn = Callable[[int, int], np.ndarray | None]


def move_boxes(boxes: np.ndarray, flow: np.ndarray | None) -> np.ndarray:
    """Shift each box by the mean flow over its pixels (the box clipped to the image); the moved box is
    clipped to the image too. ``flow`` None: the boxes unchanged."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if flow is None or not len(boxes):
        return boxes.copy()
    h, w = flow.shape[:2]
    integral = np.zeros((h + 1, w + 1, 2))
    integral[1:, 1:] = np.asarray(flow, np.float64).cumsum(0).cumsum(1)
    x0 = np.clip(np.round(boxes[:, 0]), 0, w - 1).astype(np.int64)
    y0 = np.clip(np.round(boxes[:, 1]), 0, h - 1).astype(np.int64)
    x1 = np.maximum(np.clip(np.round(boxes[:, 2]), 0, w - 1).astype(np.int64), x0) + 1  # one past the last pixel
    y1 = np.maximum(np.clip(np.round(boxes[:, 3]), 0, h - 1).astype(np.int64), y0) + 1
    total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    dx, dy = (total / ((x1 - x0) * (y1 - y0))[:, None]).T
    moved = boxes + np.stack([dx, dy, dx, dy], 1)
    return np.clip(moved, 0, [w - 1, h - 1, w - 1, h - 1]).astype(np.float32)


def motion_guided_propagation(video: VideoDetections, flows: FlowFn, window: int = 1, decay: float = 1.0,
                              nms_iou: float = 0.3, max_per_frame: int = 300) -> VideoDetections:
    """Each detection of frame t is also placed in frames t - window .. t + window, moved by
    ``move_boxes(boxes, flows(t, t + d))`` (one flow call per frame pair with detections), with its label and
    its score times ``decay ** |d|`` (1.0, the default, keeps the score as the original MGP does); then
    per-frame per-class NMS at ``nms_iou`` and the ``max_per_frame`` best."""
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    frames: list[list[Detections]] = [[d] for d in video]
    for t, dets in enumerate(video):
        if not len(dets):
            continue
        for dst in range(max(0, t - window), min(len(video), t + window + 1)):
            if dst != t:
                moved = move_boxes(dets.boxes, flows(t, dst))
                frames[dst].append(Detections(moved, dets.scores * decay ** abs(dst - t), dets.labels))
    return [nms_per_class(Detections.concat(parts), nms_iou, max_per_frame) for parts in frames]


def dis_flows(frames: Sequence[np.ndarray], preset: str = "medium") -> FlowFn:
    """``flows`` for MGP from OpenCV DIS on the video's (H, W, 3) uint8 RGB frames, computed on demand.

    ``DISFlow()(current, key)`` gives each current-frame pixel's displacement to the key frame
    (current(y, x) ~ key(y + dy, x + dx)), so flows(src, dst) = DISFlow()(frames[src], frames[dst]) is the
    forward flow src -> dst that MGP moves src's boxes along.
    """
    dis = DISFlow(preset)
    return lambda src, dst: dis(frames[src], frames[dst])
