"""Seq-NMS (Han et al. 2016): rescore detections along the max-score paths through a video, suppress their
duplicates, then per-frame NMS. Works on any method's raw per-frame detections."""

from __future__ import annotations

from featflow.postprocess.linking import max_score_paths, nms_per_class, path_mean_scores
from featflow.structures import VideoDetections


def seq_nms(video: VideoDetections, link_iou: float = 0.5, suppress_iou: float = 0.3, min_score: float = 0.01,
            nms_iou: float = 0.3, max_per_frame: int = 300) -> VideoDetections:
    """Seq-NMS per class per video.

    Detections scoring below ``min_score`` are dropped first. Then, repeatedly: same-class detections of
    consecutive frames with IoU >= ``link_iou`` are linked, the path with the largest score sum is found by
    dynamic programming, its detections are rescored to the path's mean score and taken out, and the
    detections overlapping a path box in its frame with IoU >= ``suppress_iou`` are removed; until no
    detection is left. Every path's mean is thus >= min_score (dropping low scores up front rather than
    stopping at the first path whose mean falls below it: the path with the largest sum may be a long
    low-scoring one, behind which short high-scoring paths would be lost). A lone detection is a path of its
    own and keeps its score. Finally per-frame per-class NMS at ``nms_iou`` and the ``max_per_frame`` best.
    """
    kept = [d.select(d.scores >= min_score) for d in video]
    rescored = path_mean_scores(kept, max_score_paths(kept, link_iou, suppress_iou))
    return [nms_per_class(d, nms_iou, max_per_frame) for d in rescored]
