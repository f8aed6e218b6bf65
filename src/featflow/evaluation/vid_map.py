"""ImageNet VID detection mAP, overall and per motion category (slow / medium / fast), following the
ILSVRC devkit and FGFA's motion evaluation (``imagenet_vid_eval_motion.py``).

Matching (the same in every category): boxes in the inclusive-pixel convention (``box_iou_vid``); a
ground-truth box of size w x h is hit at IoU >= min(0.5, w*h / ((w+10) * (h+10))), so small objects get
a looser threshold. In each frame the detections, in score order, greedily take the not yet taken ground
truth of their class with the highest IoU that reaches that box's threshold. AP per class is VOC
all-point AP over the detections of all frames of all videos ranked by score (precision
tp / (tp + fp), recall tp / positives, both cumulative); mAP averages it over the classes that have
ground truth in the category.

A motion category (by ``motion_iou``) keeps its own ground-truth boxes as positives; the others are out of
the category. Per frame, each detection is then
- matched to ground truth in the category: a true positive;
- matched to ground truth out of the category: dropped (neither true nor false positive);
- unmatched: compared by IoU with every ground-truth box of the frame, of any class. With ``inside`` its
  best IoU with boxes in the category and ``outside`` with boxes out of it (-1 where there is no such
  box), it is a false positive of weight 1 when inside > outside, dropped when outside > inside, and on a
  tie a fractional false positive: in a frame with ground truth (both sets present, e.g. zero overlap
  with everything) the weight is the frame's share of boxes out of the category; in a frame without
  ground truth it is the share of all ground-truth boxes of the evaluated data set that are in the
  category (``category_shares``). Note the asymmetry, which is FGFA's: the share out of the category in
  a frame with ground truth, the share in it in a frame without.
For 'all' every box is in the category, so every unmatched detection is a full false positive: the plain
VID mAP. One detail differs from FGFA: its motion ranges [0, 0.7], [0.7, 0.9], [0.9, 1] share their ends,
so a box with motion IoU exactly 0.7 or 0.9 counts in two categories there; here it is medium only
(``motion_category``).

The same rules score any other split of the ground-truth boxes into named groups (``groups`` and
``names`` of ``per_video_outcomes``): a group plays a motion category's part, so a report can ask, for
example, how well objects are found in frames where their appearance is deteriorated.

The evaluation runs in two steps that the bootstrap (``featflow.evaluation.bootstrap``) shares: each
video's detections get their outcomes once (``per_video_outcomes``), then any multiset of videos is
ranked and scored (``rank_outcomes``, ``vid_result`` with per-video counts).

Results files hold one detection per line, ``frame_id class_index score x1 y1 x2 y2``, with the 1-based
frame ids of ``ImageSets/VID/VID_val_frames.txt``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featflow.data.formats.vid import VidAnnotation, read_frame_list
from featflow.errors import FeatflowError
from featflow.evaluation.motion_iou import box_iou_vid, motion_category, motion_iou
from featflow.structures import Detections, VideoDetections, VideoGroundTruth
from featflow.utils.io import write_text

IOU_THRESHOLD = 0.5
PIXEL_TOLERANCE = 10
MOTIONS = ("slow", "medium", "fast")
CATEGORIES = ("all",) + MOTIONS


def motion_categories(truth: VideoGroundTruth) -> list[np.ndarray]:
    """Per frame of a video, the motion category ('slow' / 'medium' / 'fast') of each ground-truth box (n,)."""
    frames = np.concatenate([np.full(len(x), t) for t, x in enumerate(truth.labels)] + [np.zeros(0, int)])
    flat = motion_category(motion_iou(frames, np.concatenate((np.zeros(0, np.int64),) + truth.track_ids),
                                      np.concatenate((np.zeros((0, 4)),) + truth.boxes)))
    return np.split(flat, np.cumsum([len(x) for x in truth.labels])[:-1]) if len(truth) else []


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
            raise FeatflowError(f"{ann.folder}/{ann.filename}: unknown classes {sorted(unknown)}")
        boxes.append(np.array([o.box for o in ann.objects], np.float64).reshape(-1, 4))
        labels.append(np.array([class_index[o.name] for o in ann.objects], np.int64))
        tracks.append(np.array([o.track_id for o in ann.objects], np.int64))
    return VideoGroundTruth(tuple(boxes), tuple(labels), tuple(tracks))


def iou_thresholds(boxes: np.ndarray) -> np.ndarray:
    """The devkit's per-box IoU threshold, min(0.5, w*h / ((w+10)(h+10))): boxes (m, 4) -> (m,)."""
    w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    return np.minimum(IOU_THRESHOLD, w * h / ((w + PIXEL_TOLERANCE) * (h + PIXEL_TOLERANCE)))


def _match(det: Detections, iou: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Greedy matching in one frame: the ground-truth index each detection takes, -1 for none (n,).

    iou (n, m) with every ground-truth box; a detection may take a box of its class only."""
    hits = (det.labels[:, None] == labels[None, :]) & (iou >= thresholds[None, :])  # (n, m)
    matched = np.full(len(det), -1)
    taken = np.zeros(len(labels), bool)
    order = np.argsort(-det.scores, kind="stable")
    for i in order[hits[order].any(1)]:  # in score order; most detections hit nothing and need no loop
        free = np.where(hits[i] & ~taken, iou[i], -1.0)
        j = int(free.argmax())
        if free[j] >= 0:
            matched[i], taken[j] = j, True
    return matched


def _frame_outcomes(det: Detections, boxes: np.ndarray, labels: np.ndarray,
                    kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame with ground truth: per category, the detections' true positives (C, n) bool and
    false-positive weights (C, n) float64; kept (C, m) says which boxes are in each category."""
    iou = box_iou_vid(det.boxes, boxes)  # (n, m), boxes of every class
    matched = _match(det, iou, labels, iou_thresholds(boxes))
    has = matched >= 0
    tp = has[None, :] & kept[:, np.maximum(matched, 0)]  # (C, n); matched out of the category: dropped
    inside = np.stack([iou[:, k].max(1, initial=-1.0) for k in kept])  # (C, n); -1: no box in the category
    outside = np.stack([iou[:, ~k].max(1, initial=-1.0) for k in kept])  # (C, n); -1: none out of it
    tie = (~kept).mean(1, keepdims=True)  # (C, 1) the frame's share of boxes out of the category
    fp = np.where(inside > outside, 1.0, np.where(inside < outside, 0.0, tie))
    fp[:, has] = 0.0
    return tp, fp


@dataclass(frozen=True)
class VideoOutcomes:
    """What each detection of one video counts for in each category ('all', then the groups: by default
    CATEGORIES), before any ranking.

    A detection in a frame without ground truth (``no_truth``) has fp 0 here: its weight, the data set's
    share of boxes in the category, is filled in by ``rank_outcomes`` once the data set is known."""

    scores: np.ndarray  # (n,) float32, the detections of all frames in frame order
    labels: np.ndarray  # (n,) int64
    tp: np.ndarray  # (C, n) bool: a true positive in categories[c]
    fp: np.ndarray  # (C, n) float64: false-positive weight in categories[c]
    no_truth: np.ndarray  # (n,) bool: in a frame without ground truth
    positives: np.ndarray  # (C, num_classes + 1) int64: ground-truth boxes per category and class (0 unused)
    categories: tuple[str, ...] = CATEGORIES  # what the first axis of tp, fp and positives counts


def _categories(names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(names)
    if not names or "all" in names or len(set(names)) != len(names):
        raise ValueError(f"group names must be distinct, at least one, and not 'all'; got {names}")
    return ("all",) + names


def video_outcomes(video: VideoDetections, truth: VideoGroundTruth, num_classes: int,
                   groups: Sequence[np.ndarray] | None = None, names: Sequence[str] = MOTIONS) -> VideoOutcomes:
    """The outcomes of one video's detections (per frame) against its ground truth (same frames).

    groups: per frame, the group (one of ``names``) of each ground-truth box (m,); default: the motion
    categories (``motion_categories``)."""
    if len(video) != len(truth):
        raise ValueError(f"{len(video)} frames of detections, {len(truth)} of ground truth")
    categories = _categories(names)
    if groups is None:
        if categories != CATEGORIES:
            raise ValueError(f"groups {names} need their per-box assignment (groups)")
        groups = motion_categories(truth)
    if len(groups) != len(truth):
        raise ValueError(f"groups cover {len(groups)} frames, the ground truth {len(truth)}")
    size = len(categories)
    tps, fps, no_truth = [np.zeros((size, 0), bool)], [np.zeros((size, 0))], []
    kept_all = [np.zeros((size, 0), bool)]
    for t, (det, boxes, gt, group) in enumerate(zip(video, truth.boxes, truth.labels, groups)):
        for what, lab in (("detection", det.labels), ("ground-truth", gt)):
            if len(lab) and lab.max() > num_classes:
                raise ValueError(f"frame {t}: {what} label {lab.max()} > num_classes = {num_classes}")
        group = np.asarray(group)
        if len(group) != len(gt) or not np.isin(group, categories[1:]).all():
            raise ValueError(f"frame {t}: {len(gt)} ground-truth boxes need a group each, one of {categories[1:]}")
        kept = np.stack([np.ones(len(gt), bool) if c == "all" else group == c for c in categories])  # (C, m)
        if len(gt) and len(det):
            tp, fp = _frame_outcomes(det, boxes, gt, kept)
        else:
            tp, fp = np.zeros((size, len(det)), bool), np.zeros((size, len(det)))
        tps.append(tp)
        fps.append(fp)
        no_truth.append(np.full(len(det), not len(gt)))
        kept_all.append(kept)
    gt_labels = np.concatenate((np.zeros(0, np.int64),) + truth.labels)
    kept = np.concatenate(kept_all, 1)  # (C, boxes of the video)
    positives = np.stack([np.bincount(gt_labels[k], minlength=num_classes + 1) for k in kept])
    return VideoOutcomes(np.concatenate([np.zeros(0, np.float32)] + [d.scores for d in video]),
                         np.concatenate([np.zeros(0, np.int64)] + [d.labels for d in video]),
                         np.concatenate(tps, 1), np.concatenate(fps, 1), np.concatenate([np.zeros(0, bool)] + no_truth),
                         positives.astype(np.int64), categories)


def per_video_outcomes(detections: list[VideoDetections], ground_truth: list[VideoGroundTruth],
                       num_classes: int, groups: Sequence[Sequence[np.ndarray]] | None = None,
                       names: Sequence[str] = MOTIONS) -> list[VideoOutcomes]:
    """``video_outcomes`` of each video; detections and ground truth cover the same videos and frames.
    groups: per video and frame, each ground-truth box's group (one of ``names``); default: motion."""
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} videos of detections for {len(ground_truth)} videos of ground truth")
    if groups is not None and len(groups) != len(ground_truth):
        raise ValueError(f"groups cover {len(groups)} videos, the ground truth {len(ground_truth)}")
    out = []
    for v, (video, truth) in enumerate(zip(detections, ground_truth)):
        try:
            out.append(video_outcomes(video, truth, num_classes, None if groups is None else groups[v], names))
        except ValueError as err:
            raise ValueError(f"video {v}: {err}") from None
    return out


def _shared_categories(outcomes: Sequence[VideoOutcomes]) -> tuple[str, ...]:
    categories = {o.categories for o in outcomes}
    if len(categories) > 1:
        raise ValueError(f"videos scored in different groups: {sorted(categories)}")
    return categories.pop() if categories else CATEGORIES


def category_shares(outcomes: Sequence[VideoOutcomes]) -> np.ndarray:
    """(C,) the share of the ground-truth boxes of these videos in each category ('all' first, then the
    groups: CATEGORIES by default); 1 for 'all', and 1 for every category when there is no ground truth
    at all, where no AP is defined anyway."""
    size = len(_shared_categories(outcomes))
    per_category = np.sum([o.positives.sum(1) for o in outcomes], 0) if outcomes else np.zeros(size)
    total = per_category[0]
    return per_category / total if total else np.ones(size)


@dataclass(frozen=True)
class RankedOutcomes:
    """The detections of a list of videos in one ranking, grouped by class: class k's detections, best
    first, lie in [bounds[k], bounds[k + 1]). Equal scores keep the order of the videos, frames and
    detections."""

    video: np.ndarray  # (n,) int64: the video of each detection
    tp: np.ndarray  # (C, n) bool
    fp: np.ndarray  # (C, n) float64, the weights of detections in frames without ground truth filled in
    bounds: np.ndarray  # (num_classes + 2,) int64
    positives: np.ndarray  # (V, C, num_classes + 1) int64: ground-truth boxes per video, category and class
    categories: tuple[str, ...] = CATEGORIES  # what the category axes count

    @property
    def num_videos(self) -> int:
        return len(self.positives)

    @property
    def num_classes(self) -> int:
        return self.positives.shape[2] - 1


def rank_outcomes(outcomes: Sequence[VideoOutcomes], num_classes: int,
                  shares: np.ndarray | None = None) -> RankedOutcomes:
    """Rank the detections of ``outcomes`` once. ``shares`` (4,): the share of ground-truth boxes in each
    category, the false-positive weight of a detection in a frame without ground truth; default: the
    shares of these videos (``category_shares``)."""
    categories = _shared_categories(outcomes)
    shares = category_shares(outcomes) if shares is None else np.asarray(shares, np.float64)
    scores = np.concatenate([np.zeros(0, np.float32)] + [o.scores for o in outcomes])
    labels = np.concatenate([np.zeros(0, np.int64)] + [o.labels for o in outcomes])
    video = np.concatenate([np.zeros(0, np.int64)] + [np.full(len(o.scores), v) for v, o in enumerate(outcomes)])
    tp = np.concatenate([np.zeros((len(categories), 0), bool)] + [o.tp for o in outcomes], 1)
    fp = np.concatenate([np.zeros((len(categories), 0))] + [o.fp for o in outcomes], 1)
    no_truth = np.concatenate([np.zeros(0, bool)] + [o.no_truth for o in outcomes])
    fp = np.where(no_truth[None, :], shares[:, None], fp)  # (C, n)
    order = np.lexsort((-scores, labels))  # by class, then best first; stable, so ties keep their order
    bounds = np.searchsorted(labels[order], np.arange(num_classes + 2))
    positives = np.stack([o.positives for o in outcomes]) if outcomes else np.zeros(
        (0, len(categories), num_classes + 1), np.int64)
    return RankedOutcomes(video[order], tp[:, order], fp[:, order], bounds, positives, categories)


def average_precision(tp: np.ndarray, num_positives: float, fp: np.ndarray | None = None) -> float:
    """VOC all-point AP of ranked detections (best first) out of ``num_positives`` objects.

    tp (n,): the true positives each detection counts, as bool flags or weights (a video the bootstrap
    draws twice counts twice); fp (n,): false-positive weights, fractional under the motion-category rules
    (default: each detection that is no true positive is one false positive). Entries that count neither
    (weight 0) leave precision and recall as they are, so they are skipped."""
    tp = np.asarray(tp, np.float64).reshape(-1)
    fp = (tp == 0).astype(np.float64) if fp is None else np.asarray(fp, np.float64).reshape(-1)
    if len(tp) != len(fp):
        raise ValueError(f"{len(tp)} true-positive and {len(fp)} false-positive weights")
    keep = (tp > 0) | (fp > 0)
    hits, false = np.cumsum(tp[keep]), np.cumsum(fp[keep])
    recall = np.concatenate([[0.0], hits / num_positives, [1.0]])
    precision = np.concatenate([[0.0], hits / (hits + false), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the best precision at this recall or more
    step = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[step + 1] - recall[step]) * precision[step + 1]))


def ap_per_class(ranked: RankedOutcomes, category: str, counts: np.ndarray | None = None) -> np.ndarray:
    """(num_classes,) AP of classes 1..num_classes in ``category``; NaN for a class without ground truth
    there. counts (V,): how often each video is in the evaluated set (default once each; a bootstrap
    resample repeats some videos and leaves others out)."""
    if category not in ranked.categories:
        raise ValueError(f"category must be one of {ranked.categories}; got {category!r}")
    c = ranked.categories.index(category)
    counts = np.ones(ranked.num_videos) if counts is None else np.asarray(counts, np.float64)
    positives = counts @ ranked.positives[:, c, :]  # (num_classes + 1,)
    weight = counts[ranked.video]  # (n,) how often each detection is in the set
    ap = np.full(ranked.num_classes, np.nan)
    for k in np.flatnonzero(positives[1:] > 0) + 1:
        s = slice(ranked.bounds[k], ranked.bounds[k + 1])
        ap[k - 1] = average_precision(ranked.tp[c, s] * weight[s], positives[k], ranked.fp[c, s] * weight[s])
    return ap


def ap_per_class_resampled(ranked: RankedOutcomes, category: str, counts: np.ndarray) -> np.ndarray:
    """(S, num_classes) AP per class under each of S weightings of the videos, counts (S, V): row s is
    ``ap_per_class(ranked, category, counts[s])`` (to rounding), computed for all rows at once for the
    bootstrap.

    Why it can: VOC AP only needs the precision at the true positives (recall steps there, and after a
    true positive the precision falls until the next one, so the envelope is a maximum over true
    positives). At the i-th true positive of a class, hits and false positives so far are sums over
    videos of per-video running counts, H[i, v] and F[i, v] (computed once from the ranking); under a
    weighting they are counts @ H.T and counts @ F.T."""
    if category not in ranked.categories:
        raise ValueError(f"category must be one of {ranked.categories}; got {category!r}")
    c = ranked.categories.index(category)
    counts = np.asarray(counts, np.float64).reshape(-1, ranked.num_videos)  # (S, V)
    positives = counts @ ranked.positives[:, c, :]  # (S, num_classes + 1)
    ap = np.full((len(counts), ranked.num_classes), np.nan)
    for k in range(1, ranked.num_classes + 1):
        s = slice(ranked.bounds[k], ranked.bounds[k + 1])
        has = positives[:, k] > 0  # (S,)
        if not has.any():
            continue
        tp, fp, video = ranked.tp[c, s], ranked.fp[c, s], ranked.video[s]
        at = np.flatnonzero(tp)  # positions of the true positives in the class's ranking
        if not len(at):
            ap[has, k - 1] = 0.0
            continue
        running_hits = np.zeros((len(at), ranked.num_videos))  # (T, V)
        running_hits[np.arange(len(at)), video[at]] = 1.0
        running_false = np.zeros((len(at), ranked.num_videos))
        false_at = np.flatnonzero(fp > 0)
        segment = np.searchsorted(at, false_at)  # the first true positive each false positive precedes
        inside = segment < len(at)  # false positives after the last true positive change no precision there
        np.add.at(running_false, (segment[inside], video[false_at[inside]]), fp[false_at[inside]])
        hits = counts @ np.cumsum(running_hits, 0).T  # (S, T)
        false = counts @ np.cumsum(running_false, 0).T
        weight = counts[:, video[at]]  # (S, T) how often each true positive is in the set
        total = hits + false
        precision = np.divide(hits, total, out=np.zeros_like(hits), where=total > 0)
        envelope = np.maximum.accumulate(precision[:, ::-1], 1)[:, ::-1]
        ap[has, k - 1] = (weight * envelope).sum(1)[has] / positives[has, k]
    return ap


def mean_ap(ap: np.ndarray) -> float:
    """The mean over the classes with an AP (ground truth); NaN when no class has one."""
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else math.nan


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


def vid_result(ranked: RankedOutcomes, counts: np.ndarray | None = None) -> VidResult:
    """The VidResult of the ranked videos, each counted ``counts[v]`` times (default once); motion
    categories only (other groups: ``ap_per_class``)."""
    if ranked.categories != CATEGORIES:
        raise ValueError(f"a VidResult holds the motion categories, not {ranked.categories}")
    counts = np.ones(ranked.num_videos) if counts is None else np.asarray(counts, np.float64)
    ap = {category: ap_per_class(ranked, category, counts) for category in CATEGORIES}
    boxes = counts @ ranked.positives.sum(2) if ranked.num_videos else np.zeros(len(CATEGORIES))  # (4,)
    num_gt = {category: int(round(float(n))) for category, n in zip(CATEGORIES, boxes)}
    means = {category: mean_ap(v) for category, v in ap.items()}
    return VidResult(means["all"], means["slow"], means["medium"], means["fast"], ap, num_gt)


def evaluate_vid(detections: list[VideoDetections], ground_truth: list[VideoGroundTruth],
                 num_classes: int) -> VidResult:
    """VID mAP of ``detections`` (per video, per frame) against ``ground_truth`` (same videos and frames)."""
    return vid_result(rank_outcomes(per_video_outcomes(detections, ground_truth, num_classes), num_classes))


def read_frame_ids(path: str | os.PathLike) -> dict[str, list[int]]:
    """``VID_val_frames.txt`` (``val/{video}/{frame} {id}`` lines) -> video folder -> its frame ids in the
    file's order. The folder is the video's path inside the split, as ``VidAnnotation.folder`` holds it."""
    ids: dict[str, list[int]] = {}
    for folder, _, frame_id in read_frame_list(path):
        ids.setdefault(folder, []).append(frame_id)
    return ids


def _check_frame_ids(frame_ids: list[list[int]], counts: list[int]) -> None:
    if [len(f) for f in frame_ids] != counts:
        raise FeatflowError(f"frames per video {counts} differ from the frame ids given {[len(f) for f in frame_ids]}")


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
            raise FeatflowError(f"{path}:{n}: expected 'FRAME_ID CLASS SCORE X1 Y1 X2 Y2', "
                                f"got {line!r} ({err})") from None
        v, t = where[fid]
        rows[v][t].append((label, values[0], values[1:]))
    return [[Detections(np.array([r[2] for r in frame], np.float32), np.array([r[1] for r in frame], np.float32),
                        np.array([r[0] for r in frame], np.int64)) for frame in video] for video in rows]
