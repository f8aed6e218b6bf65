"""ImageNet VID detection mAP, overall and per motion category (slow / medium / fast, as FGFA reports it).

Matching follows the ILSVRC devkit: boxes in the inclusive-pixel convention (a box is x2 - x1 + 1 wide,
and the intersection of two boxes min(x2) - max(x1) + 1 wide); a ground-truth box of size w x h is hit
at IoU >= min(0.5, w*h / ((w+10) * (h+10))), so small objects get a looser threshold. In each frame the
detections, in score order, greedily take the unmatched ground truth of their class with the highest
IoU that reaches that box's threshold. AP per class is VOC all-point AP over the detections of all
frames of all videos ranked by score; mAP averages it over the classes that have ground truth.

A motion category keeps only its ground-truth boxes (by ``motion_iou``); the others are ignored. The
matching itself does not change (it runs against all ground truth of the class), then:
- a detection matched to ignored ground truth is dropped (neither true nor false positive);
- an unmatched detection is dropped when its best IoU with ignored ground truth of its class is strictly
  higher than with kept ground truth of its class (it most likely looks at an ignored object);
- every other unmatched detection is a false positive.
With all ground truth kept this is the plain VID mAP.

Results files hold one detection per line, ``frame_id class_index score x1 y1 x2 y2``, with the 1-based
frame ids of ``ImageSets/VID/VID_val_frames.txt``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featflow.data.formats.vid import VidAnnotation
from featflow.evaluation.motion_iou import motion_category, motion_iou
from featflow.structures import Detections, VideoDetections
from featflow.utils.io import write_text

IOU_THRESHOLD = 0.5
PIXEL_TOLERANCE = 10
MOTIONS = ("slow", "medium", "fast")
CATEGORIES = ("all",) + MOTIONS
_TP, _FP, _DROPPED = 1, 0, -1


@dataclass(frozen=True)
class VideoGroundTruth:
    """The ground truth of one video, one entry per frame: boxes (n, 4) float64 in the inclusive-pixel
    convention, labels (n,) int64 (1-based classes) and track ids (n,) int64 (for the motion IoU)."""

    boxes: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray, ...]
    track_ids: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if not (len(self.boxes) == len(self.labels) == len(self.track_ids)):
            raise ValueError(f"boxes, labels and track ids cover different numbers of frames: "
                             f"{len(self.boxes)}, {len(self.labels)}, {len(self.track_ids)}")
        boxes = tuple(np.asarray(b, np.float64).reshape(-1, 4) for b in self.boxes)
        labels = tuple(np.asarray(x, np.int64).reshape(-1) for x in self.labels)
        tracks = tuple(np.asarray(x, np.int64).reshape(-1) for x in self.track_ids)
        for t, (b, lab, tr) in enumerate(zip(boxes, labels, tracks)):
            if not (len(b) == len(lab) == len(tr)):
                raise ValueError(f"frame {t}: {len(b)} boxes, {len(lab)} labels and {len(tr)} track ids")
            if len(lab) and lab.min() < 1:
                raise ValueError(f"frame {t}: ground-truth labels are 1-based class indices; got {lab.min()}")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "track_ids", tracks)

    def __len__(self) -> int:
        return len(self.boxes)

    def motion_categories(self) -> list[np.ndarray]:
        """Per frame, the motion category ('slow' / 'medium' / 'fast') of each box (n,)."""
        frames = np.concatenate([np.full(len(x), t) for t, x in enumerate(self.labels)] + [np.zeros(0, int)])
        flat = motion_category(motion_iou(frames, np.concatenate((np.zeros(0, np.int64),) + self.track_ids),
                                          np.concatenate((np.zeros((0, 4)),) + self.boxes)))
        return np.split(flat, np.cumsum([len(x) for x in self.labels])[:-1]) if len(self) else []


def ground_truth_from_annotations(annotations: list[VidAnnotation], class_index: dict[str, int]) -> VideoGroundTruth:
    """One video's ground truth from its per-frame annotations (in frame order); ``class_index`` maps a
    WordNet id to its 1-based class index."""
    folders = {a.folder for a in annotations}
    if len(folders) > 1:
        raise ValueError(f"annotations of several videos given as one: {sorted(folders)}")
    boxes, labels, tracks = [], [], []
    for ann in annotations:
        unknown = {o.name for o in ann.objects} - class_index.keys()
        if unknown:
            raise ValueError(f"{ann.folder}/{ann.filename}: unknown classes {sorted(unknown)}")
        boxes.append(np.array([o.box for o in ann.objects], np.float64).reshape(-1, 4))
        labels.append(np.array([class_index[o.name] for o in ann.objects], np.int64))
        tracks.append(np.array([o.track_id for o in ann.objects], np.int64))
    return VideoGroundTruth(tuple(boxes), tuple(labels), tuple(tracks))


def box_iou_vid(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU with the +1 pixel convention: a (n, 4), b (m, 4) -> (n, m)."""
    a, b = a[:, None, :].astype(np.float64), b[None, :, :].astype(np.float64)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1, 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1, 0, None)
    inter = iw * ih
    area = lambda x: (x[..., 2] - x[..., 0] + 1) * (x[..., 3] - x[..., 1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def iou_thresholds(boxes: np.ndarray) -> np.ndarray:
    """The devkit's per-box IoU threshold, min(0.5, w*h / ((w+10)(h+10))): boxes (m, 4) -> (m,)."""
    w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    return np.minimum(IOU_THRESHOLD, w * h / ((w + PIXEL_TOLERANCE) * (h + PIXEL_TOLERANCE)))


def _frame_outcomes(det: Detections, boxes: np.ndarray, labels: np.ndarray, motion: np.ndarray) -> np.ndarray:
    """The outcome of each detection of one frame in each of CATEGORIES: (4, n) of _TP / _FP / _DROPPED."""
    out = np.full((len(CATEGORIES), len(det)), _FP, np.int8)
    if not len(det) or not len(labels):
        return out
    iou = box_iou_vid(det.boxes, boxes) * (det.labels[:, None] == labels[None, :])  # (n, m); 0 across classes
    hits = iou >= iou_thresholds(boxes)[None, :]
    matched = np.full(len(det), -1)
    taken = np.zeros(len(labels), bool)
    order = np.argsort(-det.scores, kind="stable")
    for i in order[hits[order].any(1)]:  # in score order; most detections hit nothing and need no loop
        free = np.where(hits[i] & ~taken, iou[i], -1.0)
        j = int(free.argmax())
        if free[j] >= 0:
            matched[i], taken[j] = j, True
    has = matched >= 0
    for c, category in enumerate(CATEGORIES):
        kept = np.ones(len(labels), bool) if category == "all" else motion == category
        out[c, has] = np.where(kept[matched[has]], _TP, _DROPPED)
        closer_to_ignored = iou[:, ~kept].max(1, initial=0.0) > iou[:, kept].max(1, initial=0.0)
        out[c, ~has & closer_to_ignored] = _DROPPED
    return out


def average_precision(tp: np.ndarray, num_positives: int) -> float:
    """VOC all-point AP of ranked detections (best first): tp (n,) bool, out of ``num_positives`` objects."""
    tp = np.asarray(tp, bool)
    hits = np.cumsum(tp)
    recall = np.concatenate([[0.0], hits / num_positives, [1.0]])
    precision = np.concatenate([[0.0], hits / np.arange(1, len(tp) + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the best precision at this recall or more
    step = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[step + 1] - recall[step]) * precision[step + 1]))


@dataclass(frozen=True)
class VidResult:
    """mAP overall (``map``) and per motion category; ``ap_per_class[category]`` (num_classes,) holds the
    AP of classes 1..num_classes (NaN without ground truth in the category); ``num_gt[category]`` counts
    the ground-truth boxes. A mAP with no class to average (no ground truth at all) is NaN."""

    map: float
    slow: float
    medium: float
    fast: float
    ap_per_class: dict[str, np.ndarray]
    num_gt: dict[str, int]

    def to_json(self) -> dict:
        """A JSON-ready dict; NaN becomes None (strict JSON has no NaN)."""
        num = lambda x: None if math.isnan(x) else float(x)  # noqa: E731
        return {"map": num(self.map), "slow": num(self.slow), "medium": num(self.medium), "fast": num(self.fast),
                "ap_per_class": {k: [num(x) for x in v] for k, v in self.ap_per_class.items()},
                "num_gt": dict(self.num_gt)}


def evaluate_vid(detections: list[VideoDetections], ground_truth: list[VideoGroundTruth],
                 num_classes: int) -> VidResult:
    """VID mAP of ``detections`` (per video, per frame) against ``ground_truth`` (same videos and frames)."""
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} videos of detections for {len(ground_truth)} videos of ground truth")
    # per frame, then concatenated; the empty first entries make an evaluation of nothing well-defined
    scores, labels = [np.zeros(0, np.float32)], [np.zeros(0, np.int64)]
    outcomes = [np.zeros((len(CATEGORIES), 0), np.int8)]  # (4, n) per frame
    gt_labels, gt_motion = [np.zeros(0, np.int64)], [np.zeros(0, str)]
    for v, (video, truth) in enumerate(zip(detections, ground_truth)):
        if len(video) != len(truth):
            raise ValueError(f"video {v}: {len(video)} frames of detections, {len(truth)} of ground truth")
        motion = truth.motion_categories()
        for t, (det, boxes, gt, mo) in enumerate(zip(video, truth.boxes, truth.labels, motion)):
            for what, lab in (("detection", det.labels), ("ground-truth", gt)):
                if len(lab) and lab.max() > num_classes:
                    raise ValueError(f"video {v} frame {t}: {what} label {lab.max()} > num_classes = {num_classes}")
            scores.append(det.scores)
            labels.append(det.labels)
            outcomes.append(_frame_outcomes(det, boxes, gt, mo))
            gt_labels.append(gt)
            gt_motion.append(mo)
    order = np.argsort(-np.concatenate(scores), kind="stable")  # one ranking over all frames of all videos
    labels_ranked, outcomes_ranked = np.concatenate(labels)[order], np.concatenate(outcomes, 1)[:, order]
    all_gt, all_motion = np.concatenate(gt_labels), np.concatenate(gt_motion)
    ap: dict[str, np.ndarray] = {}
    num_gt: dict[str, int] = {}
    for c, category in enumerate(CATEGORIES):
        kept_gt = all_gt if category == "all" else all_gt[all_motion == category]
        num_gt[category] = len(kept_gt)
        positives = np.bincount(kept_gt, minlength=num_classes + 1)
        ap[category] = np.full(num_classes, np.nan)
        for k in np.flatnonzero(positives[1:]) + 1:
            outcome = outcomes_ranked[c, labels_ranked == k]
            ap[category][k - 1] = average_precision(outcome[outcome != _DROPPED] == _TP, int(positives[k]))
    means = {k: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan for k, v in ap.items()}
    return VidResult(means["all"], means["slow"], means["medium"], means["fast"], ap, num_gt)


def read_frame_ids(path: str | os.PathLike) -> dict[str, list[int]]:
    """``VID_val_frames.txt`` (``val/{video}/{frame} {id}`` lines) -> video folder -> its frame ids in the
    file's order. The folder is the video's path inside the split, as ``VidAnnotation.folder`` holds it."""
    path = Path(path)
    ids: dict[str, list[int]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0].count("/") < 2:
            raise ValueError(f"{path}:{n}: expected 'SPLIT/VIDEO/FRAME ID', got {line!r}")
        ids.setdefault(parts[0].split("/", 1)[1].rsplit("/", 1)[0], []).append(int(parts[1]))
    return ids


def _check_frame_ids(frame_ids: list[list[int]], counts: list[int]) -> None:
    if [len(f) for f in frame_ids] != counts:
        raise ValueError(f"frames per video {counts} differ from the frame ids given {[len(f) for f in frame_ids]}")


def write_vid_results(path: str | os.PathLike, detections: list[VideoDetections], frame_ids: list[list[int]]) -> None:
    """Write detections as a VID results file (atomically); ``frame_ids[v][t]`` is frame t of video v's id."""
    _check_frame_ids(frame_ids, [len(video) for video in detections])
    lines = []
    for video, ids in zip(detections, frame_ids):
        for det, fid in zip(video, ids):
            for label, score, box in zip(det.labels.tolist(), det.scores, det.boxes):
                lines.append(f"{fid} {label} {score} {' '.join(map(str, box))}\n")  # str(float32): exact, short
    write_text(path, "".join(lines))


def read_vid_results(path: str | os.PathLike, frame_ids: list[list[int]]) -> list[VideoDetections]:
    """Read a VID results file back into per-video, per-frame detections (frames without lines are empty)."""
    path = Path(path)
    where = {fid: (v, t) for v, ids in enumerate(frame_ids) for t, fid in enumerate(ids)}
    rows: list[list[list[tuple[int, float, list[float]]]]] = [[[] for _ in ids] for ids in frame_ids]
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 7:
                raise ValueError(f"{len(parts)} fields")
            fid, label, values = int(parts[0]), int(parts[1]), [float(x) for x in parts[2:]]
            if fid not in where:
                raise ValueError(f"frame id {fid} is not among the evaluated frames")
            if label < 1:
                raise ValueError(f"class index {label} (1-based)")
        except ValueError as err:
            raise ValueError(f"{path}:{n}: expected 'FRAME_ID CLASS SCORE X1 Y1 X2 Y2', got {line!r} ({err})") from None
        v, t = where[fid]
        rows[v][t].append((label, values[0], values[1:]))
    return [[Detections(np.array([r[2] for r in frame], np.float32), np.array([r[1] for r in frame], np.float32),
                        np.array([r[0] for r in frame], np.int64)) for frame in video] for video in rows]
