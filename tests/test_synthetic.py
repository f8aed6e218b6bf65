import cv2
import numpy as np
import pytest

from featflow.data.synthetic import CLASS_NAMES, Degradations, SynthConfig, SyntheticVideo
from featflow.data.synthetic.degrade import line_kernel, sensor_noise
from featflow.evaluation.motion_iou import motion_category, motion_iou


def _backward_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR).astype(np.float32)


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("source,target", [(0, 1), (4, 13), (13, 4), (2, 23)])
def test_ground_truth_flow_warps_one_frame_onto_the_other(clean_config, index, source, target):
    video = SyntheticVideo(clean_config, seed=11, index=index)
    flow, valid = video.flow(source, target)
    a = video.frame(source).astype(np.float32)
    b = video.frame(target)
    err = np.abs(_backward_warp(b, flow) - a).mean(-1)
    err_zero = np.abs(b.astype(np.float32) - a).mean(-1)
    assert valid.mean() > 0.5
    assert err[valid].mean() < 3.0  # grey levels: interpolation error only (about 1 in object interiors)
    assert np.median(err[valid]) < 1.0
    # frames far apart differ a lot; the flow explains nearly all of it
    assert err[valid].mean() < (0.35 if abs(target - source) > 3 else 0.8) * err_zero[valid].mean()


def test_flow_of_a_frame_to_itself_is_zero_and_valid(clean_config):
    video = SyntheticVideo(clean_config, seed=1)
    flow, valid = video.flow(5, 5)
    assert np.abs(flow).max() < 1e-3 and valid.all()


def test_forward_and_backward_flow_are_inverse_on_valid_pixels(clean_config):
    video = SyntheticVideo(clean_config, seed=2)
    forward, valid = video.flow(3, 9)
    backward, _ = video.flow(9, 3)
    h, w = valid.shape
    ys, xs = np.mgrid[0:h, 0:w]
    tx = np.clip(np.rint(xs + forward[..., 0]).astype(int), 0, w - 1)
    ty = np.clip(np.rint(ys + forward[..., 1]).astype(int), 0, h - 1)
    round_trip = forward + backward[ty, tx]
    # nearest-pixel lookup: the return trip lands within the rounding of one pixel
    assert np.median(np.linalg.norm(round_trip[valid], axis=-1)) < 0.75


def test_occluded_and_leaving_pixels_are_invalid(clean_config):
    video = SyntheticVideo(clean_config, seed=11, index=1)
    flow, valid = video.flow(2, 23)
    h, w = valid.shape
    ys, xs = np.mgrid[0:h, 0:w]
    outside = (xs + flow[..., 0] < -0.5) | (xs + flow[..., 0] > w - 0.5) | (ys + flow[..., 1] < -0.5) | (
        ys + flow[..., 1] > h - 0.5)
    assert not valid[outside].any()
    assert (~valid).sum() > outside.sum()  # some pixels are hidden by objects, not only out of view


def test_boxes_are_tight_around_instance_masks(small_config):
    video = SyntheticVideo(small_config, seed=4, index=3)
    seen = 0
    for t in range(0, 30, 3):
        ann = video.annotation(t)
        assert set(np.unique(ann.instance)) - {0} == {int(i) + 1 for i in ann.track_ids}
        for track, box, label in zip(ann.track_ids, ann.boxes, ann.labels):
            ys, xs = np.nonzero(ann.instance == track + 1)
            assert tuple(box) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert (ann.semantic[ys, xs] == label).all()
            seen += 1
        assert (ann.semantic[ann.instance == 0] == 0).all()
        assert ((0 < ann.visible) & (ann.visible <= 1)).all()
    assert seen > 10


def test_visible_fraction_drops_at_the_frame_edge(clean_config):
    fractions = []
    for index in range(6):
        video = SyntheticVideo(clean_config, seed=5, index=index)
        for t in range(0, clean_config.num_frames, 4):
            ann = video.annotation(t)
            h, w = ann.instance.shape
            touching = (ann.boxes[:, 0] == 0) | (ann.boxes[:, 1] == 0) | (ann.boxes[:, 2] == w) | (ann.boxes[:, 3] == h)
            inside = ~touching
            fractions.append((ann.visible[touching], ann.visible[inside]))
    edge = np.concatenate([f[0] for f in fractions])
    middle = np.concatenate([f[1] for f in fractions])
    assert len(edge) and len(middle)
    assert edge.mean() < middle.mean()
    assert np.median(middle) > 0.9


def test_same_seed_same_pixels_other_seed_other_pixels(small_config):
    a = SyntheticVideo(small_config, seed=7, index=2, split="val")
    b = SyntheticVideo(small_config, seed=7, index=2, split="val")
    assert np.array_equal(a.frame(5), b.frame(5))
    assert np.array_equal(a.frame(17), SyntheticVideo(small_config, seed=7, index=2, split="val").frame(17))
    assert not np.array_equal(a.frame(5), SyntheticVideo(small_config, seed=8, index=2, split="val").frame(5))
    assert not np.array_equal(a.frame(5), SyntheticVideo(small_config, seed=7, index=2, split="train").frame(5))
    # random access: rendering out of order gives the same frame
    c = SyntheticVideo(small_config, seed=7, index=2, split="val", cache_size=1)
    for t in (9, 3, 5):
        c.render(t)
    assert np.array_equal(c.frame(5), a.frame(5))


def test_classes_and_speeds_cover_the_benchmark():
    config = SynthConfig(height=64, width=128, num_frames=30, degradations=Degradations.off())
    labels, categories = set(), []
    for index in range(12):
        video = SyntheticVideo(config, seed=3, index=index)
        frames, tracks, boxes = [], [], []
        for t in range(30):
            ann = video.annotation(t)
            labels.update(int(x) for x in ann.labels)
            frames += [t] * len(ann.boxes)
            tracks += list(ann.track_ids)
            boxes += list(ann.vid_boxes)
        categories += list(motion_category(motion_iou(np.array(frames), np.array(tracks), np.array(boxes))))
    assert labels == set(range(1, len(CLASS_NAMES)))  # all 8 object classes appear
    share = {c: categories.count(c) / len(categories) for c in ("slow", "medium", "fast")}
    assert all(v > 0.15 for v in share.values()), share


def test_degradations_change_pixels_not_labels():
    clean = SyntheticVideo(SynthConfig(64, 128, 20, Degradations.off()), seed=9)
    noisy = SyntheticVideo(SynthConfig(64, 128, 20, Degradations(2.0, 2.0, 2.0, 2.0, 2.0)), seed=9)
    diffs = []
    for t in range(20):
        assert np.array_equal(clean.annotation(t).instance, noisy.annotation(t).instance)
        diffs.append(np.abs(clean.frame(t).astype(int) - noisy.frame(t)).mean())
    assert min(diffs) > 1.0


@pytest.mark.parametrize("name", ["motion_blur", "defocus", "noise", "flicker", "occluders", "bursts",
                                  "object_defocus", "pose"])
def test_each_degradation_has_its_own_effect(name):
    strengths = {n: 0.0 for n in ("motion_blur", "defocus", "noise", "flicker", "occluders", "bursts",
                                  "object_defocus", "pose")}
    strengths[name] = 3.0
    changed = 0
    for index in range(8):
        clean = SyntheticVideo(SynthConfig(64, 128, 30, Degradations.off()), seed=21, index=index)
        degraded = SyntheticVideo(SynthConfig(64, 128, 30, Degradations(**strengths)), seed=21, index=index)
        changed += sum(not np.array_equal(clean.frame(t), degraded.frame(t)) for t in range(30))
    assert changed > 0


def test_degradation_parsing():
    assert Degradations.parse("off") == Degradations.off()
    assert Degradations.parse("default") == Degradations()
    assert Degradations.parse("noise=2,flicker=0") == Degradations(noise=2.0, flicker=0.0)
    assert Degradations.parse("video") == Degradations.video() == Degradations(bursts=1, object_defocus=1, pose=1)
    assert Degradations.parse("video,pose=0") == Degradations(bursts=1, object_defocus=1)
    with pytest.raises(ValueError, match="NAME=STRENGTH"):
        Degradations.parse("blur=2")
    with pytest.raises(ValueError, match="strength"):
        Degradations(noise=-1)


def test_blur_kernel_and_noise_statistics(rng):
    kernel = line_kernel(6.0, 0.0)
    assert kernel.sum() == pytest.approx(1.0) and kernel.shape[0] >= 7
    assert line_kernel(0.4, 0.3) is None
    noise = sensor_noise(rng, (200, 200, 3), 5.0)
    assert abs(noise.mean()) < 0.1 and noise.std() == pytest.approx(5.0, rel=0.03)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="at least 16x16"):
        SynthConfig(height=8)
    with pytest.raises(ValueError, match="split"):
        SyntheticVideo(SynthConfig(64, 64, 2), split="dev")
    with pytest.raises(IndexError, match="outside"):
        SyntheticVideo(SynthConfig(64, 64, 2)).frame(2)


def test_switching_one_degradation_off_leaves_the_others_unchanged():
    from featflow.data.synthetic.degrade import sample_schedule

    for seed in range(5):
        full = sample_schedule(np.random.default_rng(seed), Degradations(), 30, 64, 128)
        no_defocus = sample_schedule(np.random.default_rng(seed), Degradations(defocus=0.0), 30, 64, 128)
        assert no_defocus.defocus == () and no_defocus.noise_sigma == full.noise_sigma
        assert np.array_equal(no_defocus.gain, full.gain) and len(no_defocus.occluders) == len(full.occluders)


@pytest.mark.parametrize("frames", [30, 150])
def test_the_world_covers_every_view_of_the_camera(frames):
    from featflow.data.synthetic.scene import invert

    for index in range(8):
        video = SyntheticVideo(SynthConfig(64, 128, frames, Degradations.off()), seed=2, index=index)
        world_h, world_w = video.scene.background.shape[:2]
        for t in range(0, frames, 5):
            m = invert(video.scene.camera.matrix(t))
            corners = m[:, :2] @ np.array([[0, 127, 0, 127], [0, 0, 63, 63]]) + m[:, 2:]
            assert corners.min() >= 0 and corners[0].max() <= world_w - 1 and corners[1].max() <= world_h - 1


# ---- the VID-geometry benchmark --------------------------------------------------------------------------


def test_vid_geometry_boxes_span_feature_cells_and_every_speed():
    """Most boxes span >= 4 stride-16 cells along their shorter side (as VID's objects at 600x1000), and each
    motion-IoU category holds at least 20% of the boxes."""
    from benchmarks.synth_report import content_statistics

    stats = content_statistics(SynthConfig.vid(224, 384), videos=8, seed=3, progress=False)
    assert stats["cells"]["share_at_least_4"] > 0.6, stats["cells"]
    assert all(share >= 0.2 for share in stats["motion_share"].values()), stats["motion_share"]
    # the shapes geometry does not: its objects cover 2-8 cells of a 12x24 map
    small = content_statistics(SynthConfig(192, 384, 30), videos=2, seed=3, progress=False)
    assert small["cells"]["share_at_least_4"] < 0.3
    # deterioration hits often, and an object hit hard is often seen better within +-9 frames
    assert stats["deterioration"]["smear"]["strong_share"] > 0.05
    assert stats["deterioration"]["defocus"]["hit_share"] > 0.1
    assert stats["seen_better_within_9_frames"] > 0.2


def test_motion_blur_follows_each_objects_speed_at_that_moment():
    """The smear of a box is the distance its object moves during the exposure at that frame: it tracks the
    object's speed frame by frame (bursts included), and fast objects are smeared more than slow ones."""
    config = SynthConfig.vid(96, 160, 30, Degradations(motion_blur=1.0, bursts=1.0, noise=0,
                                                                        defocus=0, flicker=0, occluders=0))
    by_category: dict[str, list[float]] = {"slow": [], "fast": []}
    varies = 0
    for index in range(6):
        video = SyntheticVideo(config, seed=4, index=index)
        exposure = video.scene.schedule.exposure
        tracks = {tr.track_id: tr for tr in video.tracks}
        smears: dict[int, list[float]] = {}
        for t in range(30):
            ann = video.annotation(t)
            for k, smear in zip(ann.track_ids, ann.deterioration["smear"]):
                tr = tracks[int(k)]
                expected = np.hypot(*(tr.position(t + exposure / 2) - tr.position(t - exposure / 2)))
                assert smear == pytest.approx(expected, rel=1e-4, abs=1e-4)
                smears.setdefault(int(k), []).append(float(smear))
                if tr.category in by_category:
                    by_category[tr.category].append(float(smear))
        varies += sum(max(v) > 2 * min(v) + 1 for k, v in smears.items() if tracks[k].appearance.bursts)
    assert np.mean(by_category["fast"]) > 3 * np.mean(by_category["slow"])
    assert varies > 0  # a burst makes the blur of one object rise and fall


def test_flow_stays_exact_with_bursts_and_pose_changes():
    config = SynthConfig.vid(96, 160, 24, Degradations(
        motion_blur=0, defocus=0, noise=0, flicker=0, occluders=0, bursts=1.0, pose=1.0))
    turned = 0
    for index in range(3):
        video = SyntheticVideo(config, seed=12, index=index)
        turned += sum(tr.appearance.yaw_amp > 0 for tr in video.tracks)
        for source, target in ((3, 4), (10, 2)):
            flow, valid = video.flow(source, target)
            a = video.frame(source).astype(np.float32)
            err = np.abs(_backward_warp(video.frame(target), flow) - a).mean(-1)
            assert np.median(err[valid]) < 1.0
            assert err[valid].mean() < 3.5
    assert turned > 0


def test_appearance_changes_off_leave_the_videos_as_they_were(clean_config):
    """With the per-object changes at strength 0 (the default), tracks have none, so the default videos (and
    the models trained on them) are unchanged."""
    from featflow.data.synthetic.scene import similarity

    video = SyntheticVideo(clean_config, seed=1, index=0)
    for tr in video.tracks:
        assert tr.appearance.bursts == () and tr.appearance.defocus == ()
        assert tr.appearance.foreshortening(7.0) == 1.0
        center = np.full(2, (tr.sprite.size - 1) / 2.0)
        angle = tr.angle0 + tr.spin * (7.0 - tr.t_center)
        assert np.allclose(tr.matrix(7.0), similarity(tr.scale(7.0), angle, center, tr.position(7.0)))


def test_config_round_trips_through_its_json():
    import json
    from dataclasses import asdict

    config = SynthConfig.vid(64, 96, 12)
    assert SynthConfig.from_dict(json.loads(json.dumps(asdict(config)))) == config
    assert SynthConfig.from_dict({"height": 64, "width": 96}) == SynthConfig(64, 96)  # older files: defaults


def test_geometry_names():
    assert SynthConfig.build("vid", 224, 384).object_size == SynthConfig.vid().object_size
    assert SynthConfig.build("shapes", 64, 128) == SynthConfig(64, 128)
    with pytest.raises(ValueError, match="geometry"):
        SynthConfig.build("cityscapes", 64, 128)
    with pytest.raises(ValueError, match="object_size"):
        SynthConfig(64, 128, object_size=(0.5, 0.2))
    with pytest.raises(ValueError, match="placement"):
        SynthConfig(64, 128, placement=(0.8, 0.2))
