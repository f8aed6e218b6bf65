"""Tubelet rescoring (after T-CNN, Kang et al. 2017): link detections into tubelets and score each tubelet's
boxes by the tubelet's mean score."""

from __future__ import annotations

from featflow.postprocess.linking import max_score_paths, nms_per_class, path_mean_scores
from featflow.structures import VideoDetections


def tubelet_rescoring(video: VideoDetections, link_iou: float = 0.5, nms_iou: float = 0.3,
                      max_per_frame: int = 300) -> VideoDetections:
    """Every detection rescored to the mean score of its tubelet, then per-frame per-class NMS.

    Tubelets are the max-score paths of Seq-NMS's linking (same class, IoU >= ``link_iou`` between
    consecutive frames, best score sum first), without its suppression or score floor: every detection
    lies on exactly one tubelet, and a detection linked to nothing (a one-frame tubelet) keeps its score.
    Duplicates form parallel tubelets, which the final NMS at ``nms_iou`` resolves.
    """
    rescored = path_mean_scores(video, max_score_paths(video, link_iou))
    return [nms_per_class(d, nms_iou, max_per_frame) for d in rescored]
