"""Bootstrap intervals over videos for the reports' metrics and for the differences between two methods.

A resample draws V videos with replacement from the V evaluated videos: videos, not frames, because the
frames of one video are strongly correlated and resampling them would understate the spread. A
difference between two methods is paired: in each resample both are scored on the same drawn videos, and
the difference is b - a (b the method, a the baseline). Intervals are percentile intervals of the
resampled values; draws come from ``numpy.random.default_rng(seed)``, so a seed fixes the result.

VID detection mAP ranks the detections of all videos together, so it is no mean over videos and every
resample is scored anew, but without redoing the matching: each detection's outcome (true positive,
false-positive weight, per category) and each video's positives are computed once
(``vid_map.per_video_outcomes``) and ranked once (``vid_map.rank_outcomes``); a resample is then a count
per video (how often it was drawn), and ``vid_map.ap_per_class`` weighs each detection and positive by
its video's count. This is the AP of the drawn videos' detections concatenated and re-ranked: the copies
of a detection sit together in the ranking, and the precision between copies never exceeds the one
after the last copy, so it cannot change VOC's precision envelope. (Equal scores in different videos
may be ordered differently than a literal concatenation would order them.) The point estimate, every
video once, is exactly ``evaluate_vid``'s.

The false-positive weight of a detection in a frame without ground truth is the evaluated set's share of
ground-truth boxes in the category; every resample keeps the shares of the full evaluated set (they
describe the data set, for which a resample stands in) rather than recomputing them per resample.

Segmentation mIoU: per-video confusion matrices (V, C, C); a resample sums the drawn videos' matrices
(with repetition) and takes mIoU as ``ConfusionMatrix.miou`` does. Under the DFF protocol (O, V, C, C):
per key offset, and the mean over offsets of each offset's mIoU.

NaN: as in the point metrics, a class without ground truth in a resample (detection) or absent from truth
and predictions (segmentation) drops out of that resample's mean. A resample whose metric is NaN
altogether (e.g. no ground truth of a motion category among the drawn videos) is left out of the
percentiles: the interval is over the finite resamples, and ``samples`` says how many there were (NaN
bounds when there were none).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from featflow.evaluation.segmentation import ConfusionMatrix
from featflow.evaluation.vid_map import (
    CATEGORIES,
    MOTIONS,
    RankedOutcomes,
    ap_per_class,
    ap_per_class_resampled,
    mean_ap,
    per_video_outcomes,
    rank_outcomes,
)
from featflow.structures import VideoDetections, VideoGroundTruth

#: A metric of a multiset of videos: the drawn video indices (V,) int64, with repetition -> the metric. A stat
#: may also offer ``batch``: drawn videos (S, V) -> (S,) the same metrics at once (``vid_map_stat`` does).
Stat = Callable[[np.ndarray], float]

SAMPLES = 1000
LEVEL = 0.95
POINTS = 100.0  # the reports' unit: percent


def _num(x: float) -> float | None:
    """NaN -> None, for strict JSON."""
    return None if math.isnan(x) else float(x)


@dataclass(frozen=True)
class Interval:
    """A metric (every video once) with its bootstrap percentile interval over ``samples`` finite resamples."""

    value: float
    ci_low: float
    ci_high: float
    samples: int

    def to_json(self) -> dict:
        return {"value": _num(self.value), "ci_low": _num(self.ci_low), "ci_high": _num(self.ci_high)}


@dataclass(frozen=True)
class Difference:
    """b - a (every video once) with its paired bootstrap percentile interval over ``samples`` finite
    resamples."""

    delta: float
    ci_low: float
    ci_high: float
    samples: int

    def to_json(self) -> dict:
        return {"delta": _num(self.delta), "ci_low": _num(self.ci_low), "ci_high": _num(self.ci_high)}


def resample_videos(num_videos: int, samples: int = SAMPLES, seed: int = 0) -> np.ndarray:
    """The drawn videos of each resample: (samples, num_videos) int64 indices, with replacement."""
    if num_videos < 1 or samples < 1:
        raise ValueError(f"need at least one video and one resample; got {num_videos} videos, {samples} resamples")
    return np.random.default_rng(seed).integers(0, num_videos, (samples, num_videos))


def _values(stats: Sequence[Stat], videos: np.ndarray) -> np.ndarray:
    """Each stat of each row of drawn videos: videos (S, V) -> (S, len(stats)) float64."""
    columns = [np.asarray(stat.batch(videos), np.float64) if hasattr(stat, "batch") else
               np.array([float(stat(row)) for row in videos], np.float64) for stat in stats]
    return np.stack(columns, 1) if columns else np.zeros((len(videos), 0))


def _draw_counts(videos: np.ndarray, num_videos: int) -> np.ndarray:
    """How often each video is drawn in each resample: videos (S, V') -> (S, num_videos) float64."""
    videos = np.atleast_2d(videos)
    counts = np.zeros((len(videos), num_videos))
    np.add.at(counts, (np.repeat(np.arange(len(videos)), videos.shape[1]), videos.reshape(-1)), 1.0)
    return counts


def bootstrap_distribution(stat: Stat, num_videos: int, samples: int = SAMPLES, seed: int = 0) -> np.ndarray:
    """The metric of each resample (samples,), NaN included; ``bootstrap_interval`` summarises it."""
    return _values([stat], resample_videos(num_videos, samples, seed))[:, 0]


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float, int]:
    """The central ``level`` percentile interval of the finite ``values`` (S,), and how many there are."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    finite = values[np.isfinite(values)]
    if not len(finite):
        return math.nan, math.nan, 0
    low, high = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high), len(finite)


def _intervals(stats: Sequence[Stat], num_videos: int, samples: int, seed: int, level: float) -> list[Interval]:
    values = _values(stats, resample_videos(num_videos, samples, seed))  # (S, m)
    point = [float(stat(np.arange(num_videos))) for stat in stats]
    return [Interval(p, *_percentiles(values[:, j], level)) for j, p in enumerate(point)]


def _differences(pairs: Sequence[tuple[Stat, Stat]], num_videos: int, samples: int, seed: int,
                 level: float) -> list[Difference]:
    """Paired: both stats of a pair see the same drawn videos in every resample."""
    videos = resample_videos(num_videos, samples, seed)
    a = _values([p[0] for p in pairs], videos)  # (S, m)
    b = _values([p[1] for p in pairs], videos)
    everything = np.arange(num_videos)
    point = [float(stat_b(everything)) - float(stat_a(everything)) for stat_a, stat_b in pairs]
    return [Difference(p, *_percentiles(b[:, j] - a[:, j], level)) for j, p in enumerate(point)]


def bootstrap_interval(stat: Stat, num_videos: int, samples: int = SAMPLES, seed: int = 0,
                       level: float = LEVEL) -> Interval:
    """A metric over videos with its bootstrap percentile interval (in the stat's units)."""
    return _intervals([stat], num_videos, samples, seed, level)[0]


def bootstrap_difference(stat_a: Stat, stat_b: Stat, num_videos: int, samples: int = SAMPLES, seed: int = 0,
                         level: float = LEVEL) -> Difference:
    """stat_b - stat_a over the same videos, with its paired bootstrap percentile interval."""
    return _differences([(stat_a, stat_b)], num_videos, samples, seed, level)[0]


# ---- VID detection mAP ----------------------------------------------------------------------------------


def _ranked(detections: list[VideoDetections], ground_truth: list[VideoGroundTruth], num_classes: int,
            groups: Sequence[Sequence[np.ndarray]] | None = None, names: Sequence[str] = MOTIONS) -> RankedOutcomes:
    """One method's detections ranked once; the data-set shares are those of the full ground truth (the
    same for every method)."""
    return rank_outcomes(per_video_outcomes(detections, ground_truth, num_classes, groups, names), num_classes)


def vid_map_stat(ranked: RankedOutcomes, category: str = "all", scale: float = POINTS) -> Stat:
    """The mAP of ``category`` (times ``scale``) of the drawn videos of a ranking."""
    if category not in ranked.categories:
        raise ValueError(f"category must be one of {ranked.categories}; got {category!r}")

    def stat(videos: np.ndarray) -> float:
        counts = np.bincount(videos, minlength=ranked.num_videos)  # (V,) how often each video was drawn
        return scale * mean_ap(ap_per_class(ranked, category, counts))

    def batch(videos: np.ndarray) -> np.ndarray:
        ap = ap_per_class_resampled(ranked, category, _draw_counts(videos, ranked.num_videos))  # (S, classes)
        finite = np.isfinite(ap)
        sums = np.where(finite, ap, 0.0).sum(1)
        n = finite.sum(1)
        return scale * np.divide(sums, n, out=np.full(len(ap), math.nan), where=n > 0)

    stat.batch = batch  # type: ignore[attr-defined]
    return stat


def vid_map_differences(dets_a: list[VideoDetections], dets_b: list[VideoDetections],
                        ground_truth: list[VideoGroundTruth], num_classes: int, samples: int = SAMPLES,
                        seed: int = 0, level: float = LEVEL, scale: float = POINTS,
                        categories: Sequence[str] | None = None,
                        groups: Sequence[Sequence[np.ndarray]] | None = None,
                        names: Sequence[str] = MOTIONS) -> dict[str, Difference]:
    """Per category, mAP(b) - mAP(a) in points (``scale``) with its paired bootstrap interval over videos;
    all categories see the same resamples. Categories: 'all' and the motion categories, or with ``groups``
    (per video and frame, each ground-truth box's group) 'all' and ``names``; ``categories`` picks some."""
    a, b = (_ranked(d, ground_truth, num_classes, groups, names) for d in (dets_a, dets_b))
    categories = a.categories if categories is None else tuple(categories)
    pairs = [(vid_map_stat(a, c, scale), vid_map_stat(b, c, scale)) for c in categories]
    return dict(zip(categories, _differences(pairs, len(ground_truth), samples, seed, level)))


def vid_map_difference(dets_a: list[VideoDetections], dets_b: list[VideoDetections],
                       ground_truth: list[VideoGroundTruth], num_classes: int, category: str = "all",
                       samples: int = SAMPLES, seed: int = 0, level: float = LEVEL,
                       scale: float = POINTS) -> Difference:
    """mAP(b) - mAP(a) of one category in points (``scale``) with its paired bootstrap interval over videos."""
    return vid_map_differences(dets_a, dets_b, ground_truth, num_classes, samples, seed, level, scale,
                               (category,))[category]


def vid_map_intervals(detections: list[VideoDetections], ground_truth: list[VideoGroundTruth], num_classes: int,
                      samples: int = SAMPLES, seed: int = 0, level: float = LEVEL,
                      scale: float = POINTS) -> dict[str, Interval]:
    """Per category of CATEGORIES, the mAP in points (``scale``) with its bootstrap interval over videos."""
    ranked = _ranked(detections, ground_truth, num_classes)
    stats = [vid_map_stat(ranked, c, scale) for c in CATEGORIES]
    return dict(zip(CATEGORIES, _intervals(stats, len(ground_truth), samples, seed, level)))


# ---- segmentation mIoU ----------------------------------------------------------------------------------


def _miou(matrix: np.ndarray) -> float:
    """mIoU of a (C, C) [truth, prediction] confusion matrix, by ConfusionMatrix's rule."""
    cm = ConfusionMatrix(len(matrix))
    cm.matrix = matrix
    return cm.miou()


def _confusions(confusion: np.ndarray) -> np.ndarray:
    """Per-video confusion matrices as (O, V, C, C): (V, C, C) is one offset."""
    confusion = np.asarray(confusion, np.int64)
    if confusion.ndim == 3:
        confusion = confusion[None]
    if confusion.ndim != 4 or confusion.shape[2] != confusion.shape[3]:
        raise ValueError(f"expected per-video confusion matrices (V, C, C) or per offset (O, V, C, C); "
                         f"got shape {confusion.shape}")
    return confusion


def miou_stat(confusion: np.ndarray, scale: float = POINTS) -> Stat:
    """The mIoU (times ``scale``) of the drawn videos' summed confusion matrices; confusion (V, C, C), or
    (O, V, C, C) for the DFF protocol's mean over O key offsets of each offset's mIoU."""
    confusion = _confusions(confusion)
    num_offsets, num_videos, num_classes = confusion.shape[:3]
    flat = confusion.reshape(num_offsets, num_videos, -1)  # (O, V, C * C)

    def stat(videos: np.ndarray) -> float:
        counts = np.bincount(videos, minlength=num_videos)  # (V,)
        return scale * float(np.mean([_miou((counts @ f).reshape(num_classes, num_classes)) for f in flat]))

    return stat


def miou_difference(conf_a: np.ndarray, conf_b: np.ndarray, samples: int = SAMPLES, seed: int = 0,
                    level: float = LEVEL, scale: float = POINTS) -> Difference:
    """mIoU(b) - mIoU(a) in points (``scale``) with its paired bootstrap interval over videos; conf_a and
    conf_b (V, C, C), or per key offset (O, V, C, C), are the two methods' per-video confusion matrices on
    the same videos (their offset counts may differ: per-frame has one)."""
    a, b = _confusions(conf_a), _confusions(conf_b)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"confusion matrices of different videos or classes: {a.shape} and {b.shape}")
    return bootstrap_difference(miou_stat(a, scale), miou_stat(b, scale), a.shape[1], samples, seed, level)


def miou_interval(confusion: np.ndarray, samples: int = SAMPLES, seed: int = 0, level: float = LEVEL,
                  scale: float = POINTS) -> Interval:
    """The mIoU in points (``scale``) with its bootstrap interval over videos; confusion (V, C, C) or
    (O, V, C, C)."""
    confusion = _confusions(confusion)
    return bootstrap_interval(miou_stat(confusion, scale), confusion.shape[1], samples, seed, level)
