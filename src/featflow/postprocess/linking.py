"""What the box post-processing methods share: IoU and per-class NMS in the VID box convention, and the
linking of a video's detections into max-score paths across frames (Seq-NMS, tubelet rescoring).

featflow boxes cover pixels x1..x2, y1..y2 inclusive (``featflow.structures``); torchvision's box ops
take x2, y2 one past the last pixel, so boxes go through :func:`pixel_boxes` before reaching them.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import batched_nms, box_iou

from featflow.structures import Detections, VideoDetections

_NO_INDEX = np.zeros(0, np.int64)


def pixel_boxes(boxes: np.ndarray) -> torch.Tensor:
    """(n, 4) featflow boxes -> the same pixels as torchvision boxes (x2, y2 exclusive)."""
    out = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4)).clone()
    out[:, 2:] += 1
    return out


def overlapping_pairs(a: Detections, b: Detections, min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j) of the same-class pairs of a detection of ``a`` and one of ``b`` with IoU >= min_iou."""
    pairs = [(_NO_INDEX, _NO_INDEX)]
    for label in np.intersect1d(a.labels, b.labels):  # IoU within each class only: cheaper than all pairs
        ia, ib = np.flatnonzero(a.labels == label), np.flatnonzero(b.labels == label)
        i, j = np.nonzero(box_iou(pixel_boxes(a.boxes[ia]), pixel_boxes(b.boxes[ib])).numpy() >= min_iou)
        pairs.append((ia[i], ib[j]))
    i, j = map(np.concatenate, zip(*pairs))
    return i, j


def nms_per_class(dets: Detections, iou: float, max_per_frame: int) -> Detections:
    """Per-class NMS of one frame, then the ``max_per_frame`` best by score (highest first)."""
    if not len(dets):
        return dets
    keep = batched_nms(pixel_boxes(dets.boxes), torch.as_tensor(dets.scores), torch.as_tensor(dets.labels), iou)
    return dets.select(keep[:max_per_frame].numpy())


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component id of each of n nodes of the undirected graph with edges (a, b)."""
    root = np.arange(n)
    while True:
        ra, rb = root[a], root[b]
        if (ra == rb).all():
            return root
        np.minimum.at(root, np.maximum(ra, rb), np.minimum(ra, rb))  # hook roots onto smaller roots
        while (root[root] != root).any():
            root = root[root]


def max_score_paths(video: VideoDetections, link_iou: float, suppress_iou: float | None = None) -> list[np.ndarray]:
    """Greedy Seq-NMS linking: the path id of each detection, per frame (-1: suppressed).

    Detections of consecutive frames link when they have the same class and IoU >= ``link_iou``. Repeatedly,
    the path with the largest score sum (found by dynamic programming over the frames) is taken out of the
    video; with ``suppress_iou``, the detections overlapping a path box in its frame with IoU >= suppress_iou
    are removed as well (path id -1). It goes on until no detection is left, so without suppression every
    detection ends up on exactly one path (a path may be a single detection).

    Efficiency: paths and suppressions never leave a connected component of the graph of the remaining
    detections' link and suppression edges, so each round takes the best path of every component at once
    (the same result as one path at a time); components split as detections are taken out.
    """
    if not video:
        return []
    sizes = np.array([len(d) for d in video], np.int64)
    start = np.concatenate([[0], np.cumsum(sizes)])
    n = int(start[-1])
    path = np.full(n, -1, np.int64)
    scores = np.concatenate([d.scores for d in video]).astype(np.float64)
    # (i, j) flat indices, in frame order: i links to j in the next frame / i suppresses j in its frame
    links, sups = [(_NO_INDEX, _NO_INDEX)], [(_NO_INDEX, _NO_INDEX)]
    for t, dets in enumerate(video):
        if t + 1 < len(video):
            i, j = overlapping_pairs(dets, video[t + 1], link_iou)
            links.append((i + start[t], j + start[t + 1]))
        if suppress_iou is not None:
            i, j = overlapping_pairs(dets, dets, suppress_iou)
            sups.append((i + start[t], j + start[t]))
    (src, dst), (sup_a, sup_b) = (map(np.concatenate, zip(*e)) for e in (links, sups))
    frame = np.repeat(np.arange(len(video)), sizes)
    alive = np.ones(n, bool)
    next_id = 0
    while alive.any():
        live, live_sup = alive[src] & alive[dst], alive[sup_a] & alive[sup_b]
        s_live, d_live = src[live], dst[live]
        comp = _components(n, np.concatenate([s_live, sup_a[live_sup]]), np.concatenate([d_live, sup_b[live_sup]]))
        # forward DP: acc = best score sum of a path ending at each detection, back = its predecessor
        acc = np.where(alive, scores, -np.inf)
        back = np.full(n, -1, np.int64)
        best = np.full(n, -np.inf)  # best predecessor sum; each frame writes only its own detections
        bounds = np.searchsorted(frame[d_live], np.arange(len(video) + 1))
        for t in np.unique(frame[d_live]):
            s, d = s_live[bounds[t]:bounds[t + 1]], d_live[bounds[t]:bounds[t + 1]]
            prior = acc[s]
            np.maximum.at(best, d, prior)
            won = prior == best[d]
            back[d[won]] = s[won]
            acc[d] = scores[d] + best[d]
        # each component's best path end, then all of them backtracked together
        idx = np.flatnonzero(alive)
        idx = idx[np.lexsort((-acc[idx], comp[idx]))]
        ends = idx[np.r_[True, comp[idx[1:]] != comp[idx[:-1]]]]
        on_path = np.zeros(n, bool)
        cur, ids = ends, next_id + np.arange(len(ends))
        while len(cur):
            path[cur], on_path[cur] = ids, True
            prev = back[cur]
            cur, ids = prev[prev >= 0], ids[prev >= 0]
        next_id += len(ends)
        alive &= ~on_path
        alive[sup_b[on_path[sup_a]]] = False
    return np.split(path, start[1:-1])


def path_mean_scores(video: VideoDetections, paths: list[np.ndarray]) -> VideoDetections:
    """The detections on a path (id >= 0), each rescored to the mean of its path's scores in ``video``."""
    if not video:
        return []
    ids = np.concatenate(paths)
    on = ids >= 0
    flat = np.concatenate([d.scores for d in video]).astype(np.float64)
    mean = np.bincount(ids[on], flat[on]) / np.maximum(np.bincount(ids[on]), 1)
    return [Detections(d.boxes[p >= 0], mean[p[p >= 0]], d.labels[p >= 0]) for d, p in zip(video, paths)]
