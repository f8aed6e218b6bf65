import numpy as np
import pytest
import torch

from featflow.data.references import ReferenceSampling
from featflow.data.segmentation_clips import SyntheticSegmentationClips
from featflow.data.synthetic import NUM_CLASSES, SynthConfig
from featflow.errors import FeatflowError
from featflow.evaluation.flow_metrics import end_point_error, error_by_displacement, evaluate_flow, held_out_pairs
from featflow.evaluation.motion_iou import motion_category, motion_iou
from featflow.evaluation.segmentation import ConfusionMatrix
from featflow.methods.segmentation import VideoSegmenter
from featflow.modeling.shallow_flow import DISFlow, FarnebackFlow, zero_flow


def test_confusion_matrix_iou_by_hand():
    cm = ConfusionMatrix(3)
    truth = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 1]])
    cm.update(pred, truth)
    # class 0: TP 1, FP 1 (a 2 called 0), FN 1 (a 0 called 1) -> 1/3; class 1: TP 3, FP 1, FN 0 -> 3/4;
    # class 2: TP 1, FN 1 -> 1/2; the ignored pixel counts nowhere
    np.testing.assert_allclose(cm.iou(), [1 / 3, 3 / 4, 1 / 2])
    assert cm.miou() == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert cm.matrix.sum() == 7


def test_confusion_matrix_absent_classes_and_errors():
    cm = ConfusionMatrix(4)
    cm.update(np.array([0, 1]), np.array([0, 1]))
    assert np.isnan(cm.iou()[2:]).all() and cm.miou() == 1.0
    with pytest.raises(ValueError, match="labels must be"):
        cm.update(np.array([5]), np.array([0]))
    with pytest.raises(ValueError, match="differ in shape"):
        cm.update(np.zeros(3), np.zeros(4))


def test_motion_iou_of_known_motions():
    # a box from column t to column t + 10 moving 1 px per frame: 11 pixels wide in the VID convention (x2 is
    # the last pixel, as the evaluation counts it; this test used to assume 10), so its IoU with the box k
    # frames away is (11 - k) / (11 + k)
    frames = np.arange(21)
    boxes = np.stack([frames, np.zeros(21), frames + 10, np.full(21, 10)], 1).astype(float)
    miou = motion_iou(frames, np.zeros(21, int), boxes)
    expected_middle = np.mean([(11 - k) / (11 + k) for k in range(1, 11)])
    assert miou[10] == pytest.approx(expected_middle)
    assert miou[0] == pytest.approx(np.mean([(11 - k) / (11 + k) for k in range(1, 11)]))
    # a still box is slow (a lonely box is fast: tests/test_vid_eval.py); categories follow the thresholds
    still = motion_iou(np.arange(5), np.ones(5, int), np.tile([0, 0, 10, 10], (5, 1)))
    assert np.allclose(still, 1.0)
    assert list(motion_category(np.array([0.95, 0.8, 0.5, 0.9, 0.7]))) == ["slow", "medium", "fast", "medium", "medium"]


def test_per_frame_segmenter_shapes():
    model = VideoSegmenter(NUM_CLASSES, "resnet18", channels=16)
    logits = model(torch.rand(2, 3, 50, 70) * 255)
    assert logits.shape == (2, NUM_CLASSES, 50, 70)


def test_segmentation_clips_are_deterministic():
    config = SynthConfig(height=32, width=48, num_frames=6)
    a = SyntheticSegmentationClips(config, 5, ReferenceSampling(1, -3, 0), seed=2)
    b = SyntheticSegmentationClips(config, 5, ReferenceSampling(1, -3, 0), seed=2)
    for i in (0, 4):
        assert all(torch.equal(a[i][k], b[i][k]) for k in ("current", "references", "label", "same"))
    assert a[0]["label"].dtype == torch.int64 and int(a[0]["label"].max()) < NUM_CLASSES
    assert a[0]["references"].shape == (1, 3, 32, 48)
    interleaved = SyntheticSegmentationClips(config, 16, seed=2, frames_per_video=2, videos_in_flight=4)
    assert [interleaved.video_of(i) for i in range(12)] == [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7]
    assert torch.equal(interleaved[5]["current"], SyntheticSegmentationClips(
        config, 16, seed=2, frames_per_video=2, videos_in_flight=4)[5]["current"])  # order-free
    frames = SyntheticSegmentationClips(config, 4, seed=2)  # no references: per-frame samples
    assert all(frames[i]["references"].shape == (0, 3, 32, 48) and frames[i]["same"].shape == (0,) for i in range(4))
    with pytest.raises(FeatflowError, match="videos of 6 frames cannot hold reference offsets -3..3"):
        SyntheticSegmentationClips(config, 4, ReferenceSampling(2, -3, 3))


def test_reference_sampling_keeps_every_reference_inside_the_video():
    dff, fgfa = ReferenceSampling(1, -4, 0), ReferenceSampling(2, -3, 3)
    assert dff.current_range(10) == (4, 10) and fgfa.current_range(10) == (3, 7)
    assert ReferenceSampling(0).current_range(10) == (0, 10)
    assert not fgfa.fits(6) and fgfa.current_range(6) == (0, 6)  # too short: the whole video, references clipped
    rng = np.random.default_rng(0)
    for _ in range(50):
        current = int(rng.integers(*fgfa.current_range(10)))
        refs = fgfa.draw(rng, current, 10)
        assert len(refs) == 2 and all(0 <= r < 10 and abs(r - current) <= 3 for r in refs)


def test_flow_estimators_beat_zero_flow_on_synthetic_pairs():
    pairs = held_out_pairs(SynthConfig(height=96, width=160), 4, seed=1)
    zero = evaluate_flow(zero_flow, pairs)
    for estimator in (DISFlow("medium"), FarnebackFlow()):
        score = evaluate_flow(estimator, pairs)
        assert score.epe < zero.epe and score.seconds_per_pair > 0
    assert end_point_error(pairs[0].flow, pairs[0].flow) == 0.0
    with pytest.raises(ValueError, match="differ in size"):
        DISFlow()(pairs[0].current, pairs[0].current[:10])
    with pytest.raises(ValueError, match="preset"):
        DISFlow("slowest")


def test_error_by_displacement_shows_a_flow_that_stops_short():
    truth = np.zeros((4, 10, 2), np.float32)
    truth[:, :5, 0] = -4.0  # small motion on the left half
    truth[:, 5:, 0] = -40.0  # large motion on the right half
    pred = np.clip(truth, -10, None)  # a flow that never predicts more than 10 px
    bins = error_by_displacement(pred, truth, (0, 16, 64))
    assert [(b.low, b.high, b.share) for b in bins] == [(0, 16, 0.5), (16, 64, 0.5)]
    assert bins[0].epe == 0 and bins[0].predicted == pytest.approx(4) and bins[0].true == pytest.approx(4)
    assert bins[1].epe == pytest.approx(30) and bins[1].predicted == pytest.approx(10) and bins[1].true == 40
    mask = np.zeros((4, 10), bool)
    mask[:, :5] = True
    assert len(error_by_displacement(pred, truth, (0, 16, 64), mask)) == 1  # empty bins are left out
    with pytest.raises(ValueError, match="edges must rise"):
        error_by_displacement(pred, truth, (16, 0))
