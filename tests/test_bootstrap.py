"""Bootstrap intervals over videos: the resampling distribution of a known statistic, resampling by video
(not frame), paired differences, NaN resamples, and agreement with evaluate_vid's point estimates."""

import itertools
import math

import numpy as np
import pytest

from featflow.evaluation.bootstrap import (
    Difference,
    bootstrap_difference,
    bootstrap_distribution,
    bootstrap_interval,
    miou_difference,
    miou_interval,
    resample_videos,
    vid_map_difference,
    vid_map_differences,
    vid_map_intervals,
    vid_map_stat,
)
from featflow.evaluation.segmentation import ConfusionMatrix
from featflow.evaluation.vid_map import (
    CATEGORIES,
    ap_per_class,
    ap_per_class_resampled,
    evaluate_vid,
    per_video_outcomes,
    rank_outcomes,
)
from featflow.structures import Detections, VideoGroundTruth

OBJECT, FAR = (0, 0, 99, 99), (300, 300, 399, 399)


def test_mean_over_videos_matches_the_exact_bootstrap_distribution():
    # three videos with values 0, 1, 10: the 27 equally likely draws give the exact distribution of the mean
    x = np.array([0.0, 1.0, 10.0])
    mean = lambda videos: x[videos].mean()  # noqa: E731
    exact: dict[float, float] = {}
    for draw in itertools.product(range(3), repeat=3):
        exact[round(x[list(draw)].mean(), 9)] = exact.get(round(x[list(draw)].mean(), 9), 0) + 1 / 27
    values = bootstrap_distribution(mean, 3, samples=4000, seed=1)
    for value, p in exact.items():  # each frequency within 4 binomial standard deviations
        freq = np.mean(np.isclose(values, value))
        assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / 4000), (value, freq, p)
    # P(mean = 0) = P(mean = 10) = 1/27 > 2.5%: the 95% interval runs from 0 to 10 exactly
    interval = bootstrap_interval(mean, 3, samples=4000, seed=1)
    assert (interval.value, interval.ci_low, interval.ci_high, interval.samples) == (pytest.approx(11 / 3), 0, 10, 4000)
    # many videos: the bootstrap distribution of a mean has the sample mean and std(x) / sqrt(V) (ddof 0)
    x = np.random.default_rng(0).exponential(1.0, 40)
    values = bootstrap_distribution(mean, 40, samples=4000, seed=2)
    assert values.mean() == pytest.approx(x.mean(), abs=3 * x.std() / math.sqrt(40 * 4000))
    assert values.std() == pytest.approx(x.std() / math.sqrt(40), rel=0.06)
    # a seed fixes the draws
    assert np.array_equal(resample_videos(5, 10, seed=3), resample_videos(5, 10, seed=3))
    assert not np.array_equal(resample_videos(5, 10, seed=3), resample_videos(5, 10, seed=4))


def one_object_videos(hits: list[bool], frames: int, copies: int = 1):
    """Per video, a still class-1 object in every frame and, in every frame, one detection of the video's
    own score: on the object (a hit) or far from it. All frames of a video are identical."""
    truth, detections = [], []
    for _ in range(copies):
        for v, hit in enumerate(hits):
            box = [np.array([OBJECT], float)] * frames
            truth.append(VideoGroundTruth(tuple(box), (np.array([1]),) * frames, (np.array([0]),) * frames))
            det = Detections(np.array([OBJECT if hit else FAR], np.float32), [0.9 - 0.05 * v], [1])
            detections.append([det] * frames)
    return detections, truth


def test_resampling_is_by_video():
    hits = [True, False, True, True, False, True, False, True]
    width = {}
    for frames, copies in ((1, 1), (5, 1), (1, 4)):
        det, truth = one_object_videos(hits, frames, copies)
        interval = vid_map_intervals(det, truth, 1, samples=400, seed=0)["all"]
        assert interval.value == pytest.approx(100 * evaluate_vid(det, truth, 1).map)
        width[frames, copies] = interval.ci_high - interval.ci_low
    # five identical frames per video carry no more information than one: the interval does not shrink (it
    # would by about sqrt(5) if frames were resampled)
    assert width[5, 1] == pytest.approx(width[1, 1]) and width[1, 1] > 10
    # four times the videos: about half the width (1 / sqrt(4))
    assert 0.3 < width[1, 4] / width[1, 1] < 0.75


def test_identical_methods_differ_by_exactly_zero():
    det, truth = one_object_videos([True, False, True], frames=3)  # still objects: all of them slow
    diffs = vid_map_differences(det, det, truth, 1, samples=50)
    assert diffs["all"] == diffs["slow"] == Difference(0.0, 0.0, 0.0, 50)
    # no ground truth in 'medium' and 'fast': no mAP in any resample, NaN
    assert diffs["fast"].samples == 0 and math.isnan(diffs["fast"].delta) and math.isnan(diffs["medium"].ci_low)
    conf = np.random.default_rng(0).integers(0, 50, (6, 4, 4))
    assert miou_difference(conf, conf, samples=50) == Difference(0.0, 0.0, 0.0, 50)
    assert miou_difference(conf, conf, samples=50).to_json() == {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_nan_resamples_are_left_out():
    # the metric exists only when video 0 is drawn (as a category present in one video only)
    stat = lambda videos: 1.0 if (videos == 0).any() else math.nan  # noqa: E731
    interval = bootstrap_interval(stat, 4, samples=1000, seed=0)
    # P(video 0 drawn) = 1 - (3/4)^4 = 0.68
    assert (interval.ci_low, interval.ci_high) == (1.0, 1.0) and 620 < interval.samples < 740
    never = bootstrap_interval(lambda videos: math.nan, 3, samples=10)
    assert never.samples == 0 and math.isnan(never.ci_low) and never.to_json()["ci_high"] is None


def random_videos(rng: np.random.Generator, num_videos: int, num_classes: int):
    """Videos with still, medium and fast objects, and noisy detections of two methods (b the better)."""
    truth, dets_a, dets_b = [], [], []
    for _ in range(num_videos):
        n = int(rng.integers(1, 4))
        start, size = rng.uniform(0, 300, (n, 2)), rng.uniform(30, 120, (n, 2))
        speed = rng.choice([0.0, 3.0, 15.0], (n, 1)) * rng.normal(0, 1, (n, 2))
        labels = rng.integers(1, num_classes + 1, n)
        boxes = [np.round(np.concatenate([start + speed * t, start + speed * t + size], 1)) for t in range(8)]
        truth.append(VideoGroundTruth(tuple(boxes), (labels,) * 8, (np.arange(n),) * 8))
        for dets, noise in ((dets_a, 25.0), (dets_b, 8.0)):
            video = []
            for b in boxes:
                noisy = b + rng.normal(0, noise, b.shape)
                noisy[:, 2:] = np.maximum(noisy[:, 2:], noisy[:, :2])
                extra = rng.uniform(0, 300, (2, 4)) + [0, 0, 60, 60]  # false positives
                video.append(Detections(np.concatenate([noisy, extra]), rng.random(n + 2),
                                        np.concatenate([labels, rng.integers(1, num_classes + 1, 2)])))
            dets.append(video)
    return truth, dets_a, dets_b


def test_vid_map_difference_matches_evaluate_vid():
    truth, dets_a, dets_b = random_videos(np.random.default_rng(0), 6, 3)
    a, b = evaluate_vid(dets_a, truth, 3), evaluate_vid(dets_b, truth, 3)
    assert a.num_gt["slow"] and a.num_gt["fast"]
    diffs = vid_map_differences(dets_a, dets_b, truth, 3, samples=100, seed=0)
    for category in CATEGORIES:
        key = "map" if category == "all" else category
        expected = 100 * (getattr(b, key) - getattr(a, key))
        assert diffs[category].delta == pytest.approx(expected, nan_ok=True)
        if diffs[category].samples:
            assert diffs[category].ci_low <= diffs[category].ci_high
    assert diffs["all"].delta > 0 and diffs["all"].samples == 100
    single = vid_map_difference(dets_a, dets_b, truth, 3, category="fast", samples=100, seed=0)
    assert single == diffs["fast"]  # the same resamples, category by category
    assert vid_map_intervals(dets_b, truth, 3, samples=20)["slow"].value == pytest.approx(100 * b.slow, nan_ok=True)
    # segmentation: per-video confusion matrices summed, mIoU as ConfusionMatrix computes it
    rng = np.random.default_rng(1)
    conf_a, conf_b = rng.integers(0, 40, (5, 3, 3)), rng.integers(0, 40, (5, 3, 3))
    miou = []
    for conf in (conf_a, conf_b):
        cm = ConfusionMatrix(3)
        cm.matrix = conf.sum(0)
        miou.append(100 * cm.miou())
    assert miou_difference(conf_a, conf_b, samples=100).delta == pytest.approx(miou[1] - miou[0])
    assert miou_interval(conf_a, samples=100).value == pytest.approx(miou[0])
    plain = bootstrap_difference(lambda v: 0.0, lambda v: float(len(v)), 4, samples=10)
    assert (plain.delta, plain.ci_low, plain.ci_high) == (4.0, 4.0, 4.0)


def test_resampled_ap_equals_ap_per_class_row_by_row():
    # random videos with fractional false positives (motion categories, frames without truth) and videos
    # drawn 0, 1 or several times: the batched AP of the bootstrap must be the per-row AP exactly
    truth, dets, _ = random_videos(np.random.default_rng(3), 8, 3)
    truth.append(VideoGroundTruth((np.zeros((0, 4)),) * 2, (np.zeros(0, int),) * 2, (np.zeros(0, int),) * 2))
    dets.append([Detections(np.array([[0, 0, 50, 50]], np.float32), [0.99], [1])] * 2)
    ranked = rank_outcomes(per_video_outcomes(dets, truth, 3), 3)
    counts = np.random.default_rng(4).integers(0, 3, (40, len(truth))).astype(float)
    counts[0] = 0.0  # nothing drawn: every class NaN
    for category in CATEGORIES:
        batched = ap_per_class_resampled(ranked, category, counts)
        rows = np.stack([ap_per_class(ranked, category, c) for c in counts])
        np.testing.assert_allclose(batched, rows, atol=1e-12, equal_nan=True)
    # the stats the intervals use take the batched path and give the per-row values
    stat = vid_map_stat(ranked, "fast")
    videos = resample_videos(len(truth), 25, seed=5)
    np.testing.assert_allclose(stat.batch(videos), [stat(v) for v in videos], atol=1e-9, equal_nan=True)


def test_differences_over_any_split_of_the_boxes():
    truth, dets_a, dets_b = random_videos(np.random.default_rng(0), 6, 3)
    groups = [[np.where(np.arange(len(labels)) % 2 == 0, "first", "other") for labels in t.labels] for t in truth]
    diffs = vid_map_differences(dets_a, dets_b, truth, 3, samples=50, groups=groups, names=("first", "other"))
    assert set(diffs) == {"all", "first", "other"}
    ranked = [rank_outcomes(per_video_outcomes(d, truth, 3, groups, ("first", "other")), 3) for d in (dets_a, dets_b)]
    expected = 100 * (np.nanmean(ap_per_class(ranked[1], "first")) - np.nanmean(ap_per_class(ranked[0], "first")))
    assert diffs["first"].delta == pytest.approx(expected)
    assert diffs["all"] == vid_map_differences(dets_a, dets_b, truth, 3, samples=50)["all"]  # 'all' ignores groups


def test_miou_over_key_offsets_averages_each_offsets_miou():
    rng = np.random.default_rng(7)
    frame, dff = rng.integers(0, 40, (1, 6, 3, 3)), rng.integers(0, 40, (4, 6, 3, 3))  # 1 and 4 key offsets
    expected = []
    for conf in (frame, dff):
        per_offset = []
        for offset in conf:
            cm = ConfusionMatrix(3)
            cm.matrix = offset.sum(0)
            per_offset.append(100 * cm.miou())
        expected.append(np.mean(per_offset))
    diff = miou_difference(frame, dff, samples=200, seed=1)
    assert diff.delta == pytest.approx(expected[1] - expected[0]) and diff.ci_low <= diff.delta <= diff.ci_high
    assert miou_interval(frame[0], samples=20).value == pytest.approx(expected[0])  # (V, C, C) is one offset
    with pytest.raises(ValueError, match="different videos"):
        miou_difference(frame[:, :5], dff)
