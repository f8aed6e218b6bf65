"""ImageNet VID mAP: hand-computed APs, the small-box threshold, motion categories under FGFA's rules (cross-class
overlaps, fractional false positives), motion IoU, results files, and a cross-check against pycocotools."""

import json
import math

import numpy as np
import pytest

from featflow.data.formats.vid import VID_CLASSES, VidAnnotation, VidObject
from featflow.evaluation.motion_iou import box_iou_vid, motion_category, motion_iou
from featflow.evaluation.vid_map import (
    ap_per_class,
    average_precision,
    evaluate_vid,
    ground_truth_from_annotations,
    motion_categories,
    per_video_outcomes,
    rank_outcomes,
    read_frame_ids,
    read_vid_results,
    write_vid_results,
)
from featflow.structures import Detections, VideoGroundTruth


def truth(frames: list[list[tuple]]) -> VideoGroundTruth:
    """frames: per frame, (label, track, (x1, y1, x2, y2)) per object."""
    return VideoGroundTruth(tuple(np.array([o[2] for o in f], float).reshape(-1, 4) for f in frames),
                            tuple(np.array([o[0] for o in f], int) for f in frames),
                            tuple(np.array([o[1] for o in f], int) for f in frames))


def dets(objects: list[tuple]) -> Detections:
    """objects: (label, score, (x1, y1, x2, y2)) per detection."""
    return Detections(np.array([o[2] for o in objects], np.float32).reshape(-1, 4), [o[1] for o in objects],
                      [o[0] for o in objects]) if objects else Detections.empty()


A, B = (0, 0, 99, 99), (200, 200, 299, 299)


def test_hand_computed_ap():
    gt = [truth([[(1, 0, A)], [(1, 1, B)]])]
    # ranked: 0.9 TP on A, 0.8 duplicate on A (FP: A is taken), 0.7 TP on B
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> made monotone 1, 2/3, 2/3 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    det = [[dets([(1, 0.9, A), (1, 0.8, (2, 2, 99, 99))]), dets([(1, 0.7, (0 + 200, 5 + 200, 99 + 200, 99 + 200))])]]
    result = evaluate_vid(det, gt, num_classes=1)
    assert result.map == pytest.approx(5 / 6) and result.ap_per_class["all"][0] == pytest.approx(5 / 6)
    # a FP (on nothing) ranked first instead: precision 0, 1/2, 2/3 -> 2/3 at both recall steps -> AP = 2/3
    det = [[dets([(1, 0.9, A), (1, 0.95, (300, 0, 399, 99))]), dets([(1, 0.7, B)])]]
    assert evaluate_vid(det, gt, 1).map == pytest.approx(2 / 3)
    # two classes: class 2 has one GT found after one FP of its class (AP 1/2); mAP = (5/6 + 1/2) / 2
    gt = [truth([[(1, 0, A), (2, 2, B)], [(1, 1, B)]])]
    det = [[dets([(1, 0.9, A), (1, 0.8, A), (2, 0.6, A), (2, 0.5, B)]), dets([(1, 0.7, B)])]]
    result = evaluate_vid(det, gt, 2)
    assert result.ap_per_class["all"] == pytest.approx([5 / 6, 1 / 2]) and result.map == pytest.approx(2 / 3)
    # greedy matching: the best detection takes the GT it overlaps most, the next one the other GT
    close = [(1, 0, (0, 0, 99, 99)), (1, 1, (30, 0, 129, 99))]
    det = [[dets([(1, 0.9, (10, 0, 109, 99)), (1, 0.8, (25, 0, 124, 99))])]]
    assert evaluate_vid(det, [truth([close])], 1).map == pytest.approx(1.0)
    assert average_precision(np.array([True, False, True]), 4) == pytest.approx(1 / 4 + 1 / 4 * 2 / 3)


def test_small_boxes_get_a_looser_threshold():
    small = (0, 0, 9, 9)  # 10 x 10: threshold 100 / (20 * 20) = 0.25
    assert evaluate_vid([[dets([(1, 0.9, (0, 0, 9, 2))])]], [truth([[(1, 0, small)]])], 1).map == 1.0  # IoU 30/100
    assert evaluate_vid([[dets([(1, 0.9, (0, 0, 4, 4))])]], [truth([[(1, 0, small)]])], 1).map == 1.0  # 0.25: >=
    assert evaluate_vid([[dets([(1, 0.9, (0, 0, 9, 1))])]], [truth([[(1, 0, small)]])], 1).map == 0.0  # 0.2
    assert evaluate_vid([[dets([(1, 0.9, (0, 0, 99, 29))])]], [truth([[(1, 0, A)]])], 1).map == 0.0  # 0.3 < 0.5
    assert evaluate_vid([[dets([(1, 0.9, (0, 0, 99, 49))])]], [truth([[(1, 0, A)]])], 1).map == 1.0  # 0.5


def test_motion_categories_and_the_ignore_rule():
    still = (0, 0, 49, 49)
    moving = [(100 + 40 * t, 100, 149 + 40 * t, 149) for t in range(5)]  # 40 px a frame: motion IoU < 0.7
    gt = [truth([[(1, 0, still), (1, 1, moving[t])] for t in range(5)])]
    only_still = [[dets([(1, 0.9, still)]) for _ in range(5)]]
    result = evaluate_vid(only_still, gt, 1)
    assert result.num_gt == {"all": 10, "slow": 5, "medium": 0, "fast": 5}
    assert (result.slow, result.fast, result.map) == (1.0, 0.0, 0.5)
    assert math.isnan(result.medium) and math.isnan(result.ap_per_class["medium"][0])
    # add better-scored detections of the moving object, and in frame 0 a loose box on it (IoU 0.4, unmatched):
    # in 'slow' they look at ignored GT and are dropped, so slow stays 1.0; in 'fast' the loose box is a FP
    # ranked first (precision 1/2 .. 5/6 -> AP 5/6); overall it ranks first of 11 with 10 TPs -> AP 10/11
    both = [[dets([(1, 0.9, still), (1, 0.95, moving[t])] + [(1, 0.99, (100, 100, 149, 119))] * (t == 0))
             for t in range(5)]]
    result = evaluate_vid(both, gt, 1)
    assert result.slow == 1.0
    assert result.fast == pytest.approx(5 / 6) and result.map == pytest.approx(10 / 11)
    # a FP nearer the kept GT than the ignored one stays a FP in 'slow'
    near_still = [[dets([(1, 0.99, (0, 0, 49, 19))] * (t == 0) + [(1, 0.9, still)]) for t in range(5)]]
    assert evaluate_vid(near_still, gt, 1).slow == pytest.approx(5 / 6)
    assert json.loads(json.dumps(result.to_json()))["medium"] is None


# Motion-category cases. S is a still object (motion IoU 1: slow); a 100 x 100 box moving 50 px between two
# frames overlaps its other position over 50 x 100 of a 150 x 100 union: motion IoU 1/3 (fast).
S, FAR = (0, 0, 99, 99), (500, 500, 599, 599)


def moving(x: int, t: int) -> tuple:
    """A 100 x 100 box starting at column x that moves 50 px per frame, in frame t."""
    return (x + 50 * t, 0, x + 99 + 50 * t, 99)


def test_unmatched_detection_on_an_object_of_another_class_is_dropped():
    # The case: a still class-1 object (slow) and a moving class-2 object (fast), two frames
    gt = [truth([[(1, 0, S), (2, 1, moving(200, t))] for t in range(2)])]
    assert [list(c) for c in motion_categories(gt[0])] == [["slow", "fast"]] * 2
    # frame 0: a class-1 detection on the class-2 object (0.9, unmatched: wrong class) and one on S (0.8)
    det = [[dets([(1, 0.9, moving(200, 0)), (1, 0.8, S)]), dets([])]]
    result = evaluate_vid(det, gt, num_classes=2)
    # slow, class 1: 2 positives (S in both frames). The 0.9 detection overlaps the class-2 object (out of
    # 'slow') with IoU 1 and S (in 'slow') with IoU 0, so it is dropped; the 0.8 one is a TP: precision 1 up
    # to recall 1/2 -> AP = 1/2 * 1 = 0.5. (Comparing overlaps only within class 1 made it a FP: precision
    # 0, 1/2 at recall 0, 1/2 -> AP 0.25.) Class 2 has no slow ground truth, so slow mAP = 0.5.
    assert result.ap_per_class["slow"][0] == pytest.approx(0.5) and result.slow == pytest.approx(0.5)
    assert math.isnan(result.ap_per_class["slow"][1])
    # all, class 1: FP then TP of 2 positives -> 1/2 * 1/2 = 0.25; class 2 is never detected: 0 -> mAP 0.125
    assert result.ap_per_class["all"] == pytest.approx([0.25, 0.0]) and result.map == pytest.approx(0.125)
    # fast: only class 2 has ground truth, never detected
    assert result.fast == 0.0 and math.isnan(result.ap_per_class["fast"][0])


def test_a_tie_is_a_fractional_false_positive():
    # S (slow, class 1) and two moving class-2 objects (fast) in two frames
    gt = [truth([[(1, 0, S), (2, 1, moving(200, t)), (2, 2, moving(400, t))] for t in range(2)])]
    assert [list(c) for c in motion_categories(gt[0])] == [["slow", "fast", "fast"]] * 2
    # frame 0: a class-1 detection far from everything (0.9), one on S (0.8); frame 1: one on S (0.7)
    det = [[dets([(1, 0.9, FAR), (1, 0.8, S)]), dets([(1, 0.7, S)])]]
    result = evaluate_vid(det, gt, num_classes=2)
    # slow, class 1: the far detection overlaps boxes in and out of 'slow' equally (0 = 0): a FP of weight
    # 2/3, the frame's share of boxes out of 'slow'. Ranked: FP 2/3, TP, TP of 2 positives:
    # precision 0, 1 / (1 + 2/3) = 3/5, 2 / (2 + 2/3) = 3/4 at recall 0, 1/2, 1 -> AP = 1/2 * 3/4 + 1/2 * 3/4 = 3/4
    assert result.ap_per_class["slow"][0] == pytest.approx(3 / 4)
    # all: a full FP: precision 0, 1/2, 2/3 -> AP = 2/3 (as it was in 'slow' before the tie rule)
    assert result.ap_per_class["all"][0] == pytest.approx(2 / 3)
    # no tie where the frame has no box out of the category (the empty side counts as overlap -1): with
    # only S in the frame, the far detection is a full FP in 'slow' (a tie would weigh 0/1 and drop it):
    # FP, TP, TP -> 2/3, not 1
    only_still = [truth([[(1, 0, S)]] * 2)]
    det = [[dets([(1, 0.95, FAR), (1, 0.9, S)]), dets([(1, 0.8, S)])]]
    assert evaluate_vid(det, only_still, 1).slow == pytest.approx(2 / 3)


def test_any_split_of_the_boxes_is_scored_by_the_motion_rules():
    # the tie case above, with the still object in group "seen" and the moving ones in "hidden"
    gt = [truth([[(1, 0, S), (2, 1, moving(200, t)), (2, 2, moving(400, t))] for t in range(2)])]
    det = [[dets([(1, 0.9, FAR), (1, 0.8, S)]), dets([(1, 0.7, S)])]]
    groups = [[np.array(["seen", "hidden", "hidden"])] * 2]
    ranked = rank_outcomes(per_video_outcomes(det, gt, 2, groups, ("seen", "hidden")), 2)
    assert ranked.categories == ("all", "seen", "hidden")
    # "seen" is "slow" there: the far detection ties, a FP of weight 2/3 -> AP 3/4
    assert ap_per_class(ranked, "seen")[0] == pytest.approx(3 / 4)
    assert ap_per_class(ranked, "all")[0] == pytest.approx(2 / 3)
    # the motion split given as groups reproduces evaluate_vid exactly
    motion = [motion_categories(g) for g in gt]
    by_groups = rank_outcomes(per_video_outcomes(det, gt, 2, motion, ("slow", "medium", "fast")), 2)
    reference = evaluate_vid(det, gt, 2)
    for category in ("all", "slow", "fast"):
        np.testing.assert_allclose(ap_per_class(by_groups, category), reference.ap_per_class[category])
    with pytest.raises(ValueError, match="one of"):
        per_video_outcomes(det, gt, 2, [[np.array(["seen", "gone", "hidden"])] * 2], ("seen", "hidden"))
    with pytest.raises(ValueError, match="not 'all'"):
        per_video_outcomes(det, gt, 2, groups, ("all", "seen"))
    with pytest.raises(ValueError, match="category must be one of"):
        ap_per_class(ranked, "slow")


def test_a_frame_without_truth_weighs_by_the_data_sets_share():
    # video 0: S (slow, class 1) and two moving class-2 objects (fast) in two frames: 6 boxes, 2 of them slow
    # (share 1/3) and 4 fast (share 2/3); video 1: one frame without ground truth
    gt = [truth([[(1, 0, S), (2, 1, moving(200, t)), (2, 2, moving(400, t))] for t in range(2)]), truth([[]])]
    assert [list(c) for c in motion_categories(gt[0])] == [["slow", "fast", "fast"]] * 2
    det = [[dets([(1, 0.9, S), (2, 0.9, moving(200, 0))]), dets([(1, 0.8, S)])],
           [dets([(1, 0.95, S), (2, 0.95, FAR)])]]  # video 1: a class-1 and a class-2 detection, ranked first
    result = evaluate_vid(det, gt, num_classes=2)
    # slow, class 1: the video-1 detection is a FP of weight 1/3 (the data set's share of slow boxes), then
    # 2 TPs of 2 positives: precision 0, 1 / (4/3) = 3/4, 2 / (7/3) = 6/7 at recall 0, 1/2, 1 -> AP = 6/7
    assert result.ap_per_class["slow"][0] == pytest.approx(6 / 7)
    # fast, class 2: a FP of weight 2/3 (the share of fast boxes), then 1 TP of 4 positives: precision 3/5
    # at recall 1/4 -> AP = 1/4 * 3/5 = 3/20
    assert result.ap_per_class["fast"][1] == pytest.approx(3 / 20)
    # all: full FPs. Class 1: precision 0, 1/2, 2/3 -> 2/3; class 2: 1/2 at recall 1/4 -> 1/8
    assert result.ap_per_class["all"] == pytest.approx([2 / 3, 1 / 8])


def test_motion_iou_of_thin_and_lone_boxes():
    # a one-pixel-wide box (x1 == x2) is 1 x 10 pixels: finite IoU (it was 0/0 = NaN, and a NaN motion IoU
    # fell into 'medium')
    thin = np.array([[10, 0, 10, 9], [10, 0, 10, 9], [11, 0, 11, 9]], float)  # frames 0, 1, 2; moves 1 px last
    assert box_iou_vid(thin[:1], thin).tolist() == [[1.0, 1.0, 0.0]]
    # frame 0: IoU 1 with frame 1, 0 with frame 2 -> 1/2; frame 1 likewise; frame 2: 0 and 0 -> 0
    assert motion_iou(np.arange(3), np.zeros(3, int), thin).tolist() == [0.5, 0.5, 0.0]
    # a box without a neighbour in t-10..t+10 gets motion IoU 0 (fast), as FGFA reads its motion-IoU file:
    # track 1 appears once; track 2 at frames 0 and 11 (11 apart); track 3 at frames 0 and 10 (10 apart: near)
    frames, tracks = np.array([0, 0, 11, 0, 10]), np.array([1, 2, 2, 3, 3])
    miou = motion_iou(frames, tracks, np.tile([0, 0, 9, 9], (5, 1)))
    assert miou.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert list(motion_category(miou)) == ["fast", "fast", "fast", "slow", "slow"]


def test_empty_frames_missing_detections_and_classes_without_truth():
    gt = [truth([[], [(1, 0, A)], []]), truth([])]
    # frame 0: a class-1 FP on a frame without GT (ranked first); class 2 has detections but no GT
    det = [[dets([(1, 0.9, A), (2, 0.99, A)]), dets([(1, 0.8, A), (2, 0.5, B)]), dets([])], []]
    result = evaluate_vid(det, gt, num_classes=3)
    assert result.ap_per_class["all"][0] == pytest.approx(0.5)
    assert np.isnan(result.ap_per_class["all"][1:]).all() and result.map == pytest.approx(0.5)
    nothing = evaluate_vid([[dets([])] * 3, []], gt, 3)
    # the only box has no neighbour in frames t-10..t+10: motion IoU 0, so it is fast (FGFA's rule; featflow
    # used to call it slow), and 'slow' has no ground truth at all
    assert nothing.map == 0.0 and nothing.fast == 0.0 and math.isnan(nothing.slow) and nothing.num_gt["all"] == 1
    empty = evaluate_vid([], [], 30)
    assert math.isnan(empty.map) and empty.num_gt == {"all": 0, "slow": 0, "medium": 0, "fast": 0}
    with pytest.raises(ValueError, match="videos"):
        evaluate_vid(det, gt[:1], 3)
    with pytest.raises(ValueError, match="frames"):
        evaluate_vid([det[0][:2], []], gt, 3)
    with pytest.raises(ValueError, match="num_classes"):
        evaluate_vid(det, gt, 1)


def test_ground_truth_from_annotations():
    index = {wnid: i for i, (wnid, _) in enumerate(VID_CLASSES, 1)}
    anns = [VidAnnotation("v", f"{t:06d}", 320, 240, (VidObject(3, "n02691156", (1, 2, 30, 40)),)) for t in range(2)]
    gt = ground_truth_from_annotations(anns + [VidAnnotation("v", "000002", 320, 240)], index)
    assert len(gt) == 3 and gt.labels[0].tolist() == [1] and gt.track_ids[1].tolist() == [3]
    assert gt.boxes[1].tolist() == [[1, 2, 30, 40]] and gt.boxes[2].shape == (0, 4)
    with pytest.raises(ValueError, match="unknown"):
        ground_truth_from_annotations([VidAnnotation("v", "0", 1, 1, (VidObject(0, "n0", (0, 0, 1, 1)),))], index)


def test_results_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    video = lambda n: [Detections(rng.uniform(0, 500, (k, 4)), rng.random(k), rng.integers(1, 31, k))  # noqa: E731
                       for k in rng.integers(0, 4, n)]
    det = [video(3), video(2)]
    (tmp_path / "frames.txt").write_text("".join(f"val/ILSVRC2015_val_{v:08d}/{t:06d} {1 + 3 * v + t}\n"
                                                 for v, n in enumerate((3, 2)) for t in range(n)))
    ids = read_frame_ids(tmp_path / "frames.txt")
    assert ids == {"ILSVRC2015_val_00000000": [1, 2, 3], "ILSVRC2015_val_00000001": [4, 5]}
    write_vid_results(tmp_path / "results.txt", det, list(ids.values()))
    back = read_vid_results(tmp_path / "results.txt", list(ids.values()))
    assert [len(v) for v in back] == [3, 2]
    for a, b in zip(sum(det, []), sum(back, [])):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
        assert np.array_equal(a.labels, b.labels)
    lines = (tmp_path / "results.txt").read_text().splitlines()
    (tmp_path / "bad.txt").write_text("\n".join(lines[:1] + ["4 1 0.5 1 2 3"]) + "\n")
    with pytest.raises(ValueError, match=r"bad.txt:2:"):
        read_vid_results(tmp_path / "bad.txt", list(ids.values()))
    (tmp_path / "bad.txt").write_text("9 1 0.5 1 2 3 4\n")
    with pytest.raises(ValueError, match=r"bad.txt:1:.*frame id 9"):
        read_vid_results(tmp_path / "bad.txt", list(ids.values()))
    with pytest.raises(ValueError, match="frame ids"):
        write_vid_results(tmp_path / "results.txt", det, [[1, 2, 3], [4]])


def test_matches_pycocotools_ap50_on_large_boxes():
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    num_classes, frames = 3, 40
    gt_frames, det_frames, images, anns, results = [], [], [], [], []
    for t in range(frames):
        xy = rng.uniform(0, 400, (rng.integers(1, 5), 2))
        boxes = np.round(np.concatenate([xy, xy + rng.uniform(50, 200, xy.shape)], 1))
        labels = rng.integers(1, num_classes + 1, len(boxes))
        gt_frames.append([(int(k), i, tuple(b)) for i, (k, b) in enumerate(zip(labels, boxes))])
        # per frame: jittered copies of some GT (large jitter: some miss, some duplicate) and 2 random boxes
        picks = rng.integers(0, len(boxes), len(boxes) + 2)
        xy = rng.uniform(0, 400, (2, 2))
        noisy = np.concatenate([boxes[picks] + rng.normal(0, 12, (len(picks), 4)),
                                np.concatenate([xy, xy + rng.uniform(50, 200, xy.shape)], 1)])
        noisy[:, 2:] = np.maximum(noisy[:, 2:], noisy[:, :2] + 1)
        noisy_labels = np.concatenate([labels[picks], rng.integers(1, num_classes + 1, 2)])
        det_frames.append(dets([(int(k), s, tuple(b)) for k, s, b in zip(noisy_labels, rng.random(len(noisy)), noisy)]))
        images.append({"id": t, "width": 640, "height": 480})
        for k, b in zip(labels, boxes):  # COCO's w = x2 - x1 + 1 makes its IoU the +1 convention's exactly
            w, h = b[2] - b[0] + 1, b[3] - b[1] + 1
            anns.append({"id": len(anns) + 1, "image_id": t, "category_id": int(k), "bbox": [b[0], b[1], w, h],
                         "area": w * h, "iscrowd": 0})
        d = det_frames[-1]
        for k, s, b in zip(d.labels, d.scores, d.boxes.astype(float)):
            results.append({"image_id": t, "category_id": int(k), "score": float(s),
                            "bbox": [b[0], b[1], b[2] - b[0] + 1, b[3] - b[1] + 1]})
    ours = evaluate_vid([det_frames], [truth(gt_frames)], num_classes)

    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": k} for k in range(1, num_classes + 1)]}
    coco.createIndex()
    evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
    evaluator.params.iouThrs = np.array([0.5])
    evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ["all"]
    evaluator.params.maxDets = [1000]
    evaluator.evaluate()
    evaluator.accumulate()
    coco_ap = evaluator.eval["precision"][0, :, :, 0, 0].mean(0)  # (classes,): 101-point interpolated
    assert np.all(ours.ap_per_class["all"] > 0.3)
    assert ours.ap_per_class["all"] == pytest.approx(coco_ap, abs=0.01)
