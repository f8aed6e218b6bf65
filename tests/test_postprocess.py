import cv2
import numpy as np

from featflow.postprocess import dis_flows, motion_guided_propagation, move_boxes, seq_nms, tubelet_rescoring
from featflow.postprocess.linking import max_score_paths
from featflow.structures import Detections

BOX = [10, 10, 49, 49]  # 40 x 40 pixels (x2, y2 inclusive)


def dets(*rows) -> Detections:
    """rows of (x1, y1, x2, y2, score, label)."""
    if not rows:
        return Detections.empty()
    a = np.array(rows, np.float64)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int64))


def rows(d: Detections) -> list[tuple]:
    """A frame's detections as sorted (x1, y1, x2, y2, score, label) tuples, scores rounded."""
    return sorted((*map(float, b), round(float(s), 4), int(l)) for b, s, l in zip(d.boxes, d.scores, d.labels))


# ---- Seq-NMS ----

def test_seq_nms_rescores_the_path_suppresses_duplicates_keeps_lone_boxes():
    video = [dets((*BOX, 0.9, 1)),
             dets((*BOX, 0.9, 1), (22, 10, 61, 49, 0.85, 1)),  # duplicate, IoU 0.54 with the path box
             dets((*BOX, 0.2, 1), (200, 200, 239, 239, 0.6, 1)),  # blurred frame; a spurious lone box
             dets((*BOX, 0.9, 1)),
             dets((*BOX, 0.9, 1))]
    out = seq_nms(video)
    assert len(out) == 5
    path = (10.0, 10.0, 49.0, 49.0, 0.76, 1)  # (4 * 0.9 + 0.2) / 5
    # the duplicate is gone: were it left as a lone path (0.85), the final NMS would have kept it over the path box
    assert [rows(d) for d in out] == [[path], [path], [path, (200.0, 200.0, 239.0, 239.0, 0.6, 1)], [path], [path]]


def test_seq_nms_classes_are_independent():
    video = [dets((*BOX, 0.9, 1), (*BOX, 0.3, 2)), dets((*BOX, 0.2, 1), (*BOX, 0.6, 2))]
    out = seq_nms(video)
    for d in out:  # same boxes, different classes: neither links nor suppresses the other
        assert rows(d) == [(*map(float, BOX), 0.45, 2), (*map(float, BOX), 0.55, 1)]


def test_seq_nms_empty_frames_single_frame_min_score_and_cap():
    assert seq_nms([]) == []
    assert [len(d) for d in seq_nms([Detections.empty()] * 3)] == [0, 0, 0]
    # an empty frame breaks the path: each box is a path of its own and keeps its score
    out = seq_nms([dets((*BOX, 0.9, 1)), Detections.empty(), dets((*BOX, 0.3, 1))])
    assert [rows(d) for d in out] == [[(*map(float, BOX), 0.9, 1)], [], [(*map(float, BOX), 0.3, 1)]]
    # one frame: boxes below min_score go, the rest keep their scores; at most max_per_frame, the best first
    frame = dets(*[(100 * k, 0, 100 * k + 39, 39, s, 1) for k, s in enumerate([0.5, 0.005, 0.7, 0.2])])
    (only,) = seq_nms([frame], max_per_frame=2)
    np.testing.assert_allclose(only.scores, [0.7, 0.5])
    np.testing.assert_array_equal(only.boxes[:, 0], [200, 0])


def test_linking_without_suppression_puts_every_detection_on_one_path():
    video = [dets((*BOX, 0.9, 1), (22, 10, 61, 49, 0.8, 1)), dets((*BOX, 0.5, 1), (22, 10, 61, 49, 0.7, 1))]
    # best sum first: 0.9 -> 0.7 (both link, IoU >= 0.5), then 0.8 -> 0.5
    assert [p.tolist() for p in max_score_paths(video, 0.5)] == [[0, 1], [1, 0]]
    # with suppression the second path's boxes overlap the first's in their frames (IoU 0.54 >= 0.3): removed
    assert [p.tolist() for p in max_score_paths(video, 0.5, 0.3)] == [[0, -1], [-1, 0]]
    # VID boxes include their last pixel: 10 x 10 boxes 5 px apart overlap by 50 of 150 pixels, IoU 1/3 >= 0.3
    # (as x2-exclusive 9 x 9 boxes they would have IoU 36/126 < 0.3)
    tiny = [dets((0, 0, 9, 9, 0.9, 1), (5, 0, 14, 9, 0.8, 1))]
    assert [p.tolist() for p in max_score_paths(tiny, 0.5, 0.3)] == [[0, -1]]


# ---- motion-guided propagation ----

def shift_flows(dx_per_frame: float, height: int = 100, width: int = 200):
    """A scene moving by dx_per_frame px per frame: flow src -> dst is (dx * (dst - src), 0) everywhere."""
    return lambda src, dst: np.broadcast_to(np.float32([dx_per_frame * (dst - src), 0]), (height, width, 2))


def test_mgp_moves_along_the_flow_in_both_directions_and_nms_merges():
    video = [Detections.empty(), dets((50, 20, 89, 59, 0.8, 1)), dets((57, 20, 96, 59, 0.5, 1))]
    out = motion_guided_propagation(video, shift_flows(5.0))
    assert rows(out[0]) == [(45.0, 20.0, 84.0, 59.0, 0.8, 1)]  # t - 1: -5 px
    assert rows(out[1]) == [(50.0, 20.0, 89.0, 59.0, 0.8, 1)]  # frame 2's box came back to 52..91: merged away
    assert rows(out[2]) == [(55.0, 20.0, 94.0, 59.0, 0.8, 1)]  # t + 1: +5 px, wins NMS over the 0.5 detection


def test_mgp_window_decay_border_and_no_motion():
    video = [Detections.empty()] * 2 + [dets((190, 20, 199, 40, 1.0, 3))] + [Detections.empty()] * 2
    out = motion_guided_propagation(video, shift_flows(5.0), window=2, decay=0.5)
    assert [rows(d) for d in out] == [[(180.0, 20.0, 189.0, 40.0, 0.25, 3)], [(185.0, 20.0, 194.0, 40.0, 0.5, 3)],
                                      [(190.0, 20.0, 199.0, 40.0, 1.0, 3)], [(195.0, 20.0, 199.0, 40.0, 0.5, 3)],
                                      [(199.0, 20.0, 199.0, 40.0, 0.25, 3)]]  # clipped to the 200 px wide image
    still = motion_guided_propagation(video, lambda src, dst: None)
    lone = [(190.0, 20.0, 199.0, 40.0, 1.0, 3)]
    assert [rows(d) for d in still] == [[], lone, lone, lone, []]  # no motion: copied in place


def test_mgp_empty_frames_ask_no_flow():
    calls = []

    def flows(src, dst):
        calls.append((src, dst))
        return None

    assert motion_guided_propagation([], flows) == []
    out = motion_guided_propagation([Detections.empty(), Detections.empty(), dets((*BOX, 0.4, 2))], flows)
    assert calls == [(2, 1)]
    assert [rows(d) for d in out] == [[], [(*map(float, BOX), 0.4, 2)], [(*map(float, BOX), 0.4, 2)]]


def test_move_boxes_uses_the_mean_flow_over_the_box_pixels():
    flow = np.zeros((60, 100, 2), np.float32)
    flow[:, :50, 0] = 10.0  # columns 0..49 move 10 px right, 50..99 stay
    flow[:, :, 1] = -2.0
    # columns 40..59: half at 10, half at 0 -> +5; a box reaching past the image averages its visible part only
    moved = move_boxes(np.float32([[40, 10, 59, 29], [-20, 10, 9, 29]]), flow)
    np.testing.assert_allclose(moved, [[45, 8, 64, 27], [0, 8, 19, 27]])


def test_dis_flows_direction():
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (96, 160)).astype(np.float32), (0, 0), 2.0)
    gray = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    first = np.repeat(gray[..., None], 3, axis=2)
    second = np.roll(first, 4, axis=1)  # the content moves 4 px to the right
    flows = dis_flows([first, second])
    box = np.float32([[60, 30, 99, 69]])
    np.testing.assert_allclose(move_boxes(box, flows(0, 1)), box + [4, 0, 4, 0], atol=0.5)
    np.testing.assert_allclose(move_boxes(box, flows(1, 0)), box - [4, 0, 4, 0], atol=0.5)


# ---- tubelet rescoring ----

def test_tubelet_rescoring_scores_tubelets_by_their_mean():
    video = [dets((*BOX, 0.9, 1), (300, 0, 339, 39, 0.8, 1), (*BOX, 0.7, 2)),
             dets((12, 10, 51, 49, 0.6, 1), (330, 0, 369, 39, 0.4, 1), (24, 10, 63, 49, 0.5, 1)),
             dets((14, 10, 53, 49, 0.3, 1))]
    out = tubelet_rescoring(video)
    assert [rows(d) for d in out] == [
        [(10.0, 10.0, 49.0, 49.0, 0.6, 1), (10.0, 10.0, 49.0, 49.0, 0.7, 2), (300.0, 0.0, 339.0, 39.0, 0.8, 1)],
        [(12.0, 10.0, 51.0, 49.0, 0.6, 1), (330.0, 0.0, 369.0, 39.0, 0.4, 1)],  # the 0.5 duplicate: lost to NMS
        [(14.0, 10.0, 53.0, 49.0, 0.6, 1)]]
    # (0.9 + 0.6 + 0.3) / 3 = 0.6 on the moving object; the box that moved 30 px (IoU 0.14) and the class-2 box
    # link to nothing and keep their scores
    assert tubelet_rescoring([]) == [] and [len(d) for d in tubelet_rescoring([Detections.empty()] * 2)] == [0, 0]
