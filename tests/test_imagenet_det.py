"""ImageNet DET: the layout reader (``data/formats/imagenet_det.py``) and its dataset of one-frame videos
(``data/imagenet_det.py``), the DET + VID mix of detection training (``Mixed``, ``data.det_share``), and the
papers' resize of a folder's frames (``data/resize.py``) in training and in VID evaluation."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from featflow.data.detection_clips import VidDetectionClips, collate_clips
from featflow.data.formats import imagenet_det as det
from featflow.data.formats.vid import VID_CLASSES
from featflow.data.imagenet_det import DetDataset
from featflow.data.io import write_image
from featflow.data.mixing import Mixed
from featflow.data.references import ReferenceSampling
from featflow.data.resize import Resize, boxes_to_original, resize_image, scale_boxes
from featflow.data.synthetic import SynthConfig
from featflow.data.synthetic.export import export, export_det
from featflow.data.vid import VidDataset
from featflow.errors import FeatflowError, MissingInput
from featflow.structures import Detections

AIRPLANE, BEAR, ZEBRA = VID_CLASSES[0][0], VID_CLASSES[2][0], VID_CLASSES[29][0]
PERSON = "n00007846"  # a DET class outside the 30 VID classes
#: (image-set name, height, width, objects): two ILSVRC2013-style images and one ILSVRC2014-style one.
IMAGES = (
    ("train/ILSVRC2013_train/n02691156/n02691156_10002", 30, 40,
     (det.DetObject(AIRPLANE, (2, 3, 20, 15)), det.DetObject(PERSON, (0, 0, 9, 9)))),
    ("train/ILSVRC2013_train/n02391049/n02391049_77", 24, 36, (det.DetObject(ZEBRA, (5, 4, 35, 23)),)),
    ("train/ILSVRC2014_train_0000/ILSVRC2014_train_00000663", 20, 20,
     (det.DetObject(BEAR, (0, 0, 19, 19)), det.DetObject(AIRPLANE, (4, 4, 8, 8)))),
)


def write_det_folder(root: Path) -> Path:
    """A small ImageNet DET folder written with the module's writers (images of flat colours)."""
    for n, (name, height, width, objects) in enumerate(IMAGES):
        write_image(det.image_path(root, name), np.full((height, width, 3), 40 * n, np.uint8))
        folder, stem = name.split("/")[-2:]
        det.write_det_xml(det.annotation_path(root, name), det.DetAnnotation(folder, stem, width, height, objects))
    det.write_det_image_set(root / det.DET_IMAGE_SET, [name for name, *_ in IMAGES])
    return root


def test_det_xml_round_trip_and_the_vid_classes_kept(tmp_path):
    name, height, width, objects = IMAGES[0]
    ann = det.DetAnnotation("n02691156", "n02691156_10002", width, height, objects)
    path = tmp_path / "a.xml"
    det.write_det_xml(path, ann)
    text = path.read_text()
    assert "<trackid>" not in text and "<bndbox>" in text and "<name>n00007846</name>" in text
    assert det.read_det_xml(path) == ann
    kept = det.keep_classes(ann)  # the 30 VID classes by default: the person is background
    assert kept.objects == (objects[0],) and (kept.width, kept.height) == (width, height)
    assert det.keep_classes(ann, ((PERSON, "person"),)).objects == (objects[1],)


def test_det_xml_and_image_set_errors_are_one_line_naming_the_file(tmp_path):
    path = tmp_path / "bad.xml"
    for text, message in (("<annotation><size>", "not valid XML"), ("<other/>", "expected <annotation>"),
                          ("<annotation><object><name>n1</name></object></annotation>", "has no <size>"),
                          ("<annotation><size><width>4</width><height>4</height></size><object><name>n1</name>"
                           "<bndbox><xmin>3</xmin><ymin>0</ymin><xmax>1</xmax><ymax>2</ymax></bndbox></object>"
                           "</annotation>", "empty box")):
        path.write_text(text)
        with pytest.raises(FeatflowError, match=message) as err:
            det.read_det_xml(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(MissingInput, match="no such annotation: .*missing.xml"):
        det.read_det_xml(tmp_path / "missing.xml")
    listed = tmp_path / "set.txt"
    det.write_det_image_set(listed, ["train/a/b", "train/c"])
    assert listed.read_text() == "train/a/b 1\ntrain/c 2\n"
    assert det.read_det_image_set(listed) == [("train/a/b", 1), ("train/c", 2)]
    for line in ("train/a/b", "train/a/b x", "b 1", "train/../b 1", "train/a/b 0"):
        listed.write_text(f"train/ok 1\n{line}\n")
        with pytest.raises(FeatflowError, match=f"{listed}:2: expected 'SPLIT/PATH ID'"):
            det.read_det_image_set(listed)
    with pytest.raises(MissingInput, match="no such image set: .*DET_train_30classes.txt") as err:
        DetDataset(tmp_path / "empty")
    assert "\n" not in str(err.value)


def test_det_dataset_reads_each_image_as_a_one_frame_video_with_the_vid_classes(tmp_path):
    data = DetDataset(write_det_folder(tmp_path))
    assert len(data) == 3 and [data.num_frames(v) for v in range(3)] == [1, 1, 1]
    assert data.videos[0].name == IMAGES[0][0] and data.videos[0].frames == ("n02691156_10002",)
    assert [v.frame_ids for v in data.videos] == [(1,), (2,), (3,)]
    assert data.image_path(0, 0) == tmp_path / "Data" / "DET" / f"{IMAGES[0][0]}.JPEG"
    assert data.image(1, 0).shape == (24, 36, 3)
    first = data.targets(0, 0)  # the person is left out
    np.testing.assert_array_equal(first.boxes, [[2, 3, 20, 15]])
    np.testing.assert_array_equal(first.labels, [1])  # airplane: class 1 of the 30
    third = data.targets(2, 0)
    np.testing.assert_array_equal(third.labels, [3, 1])
    np.testing.assert_array_equal(third.track_ids, [0, 1])  # each object its own track
    assert data.class_names[:3] == ["airplane", "antelope", "bear"] and len(data.classes) == 30
    only_zebra = DetDataset(tmp_path, ((ZEBRA, "zebra"),))  # a VID folder's own class map: its indices
    assert [len(only_zebra.targets(v, 0)) for v in range(3)] == [0, 1, 0]
    np.testing.assert_array_equal(only_zebra.targets(1, 0).labels, [1])


# ---- the mix ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vid_and_det(tmp_path_factory) -> Path:
    """A synthetic VID folder (1 training video of 6 frames at 48x64, 1 validation video) with 3 DET images of
    24x32 beside it."""
    root = tmp_path_factory.mktemp("ilsvrc")
    export("vid", root, SynthConfig.vid(48, 64, 6), videos=1, val_videos=1, progress=False)
    export_det(root, SynthConfig.vid(24, 32, 1), images=3)
    return root


def test_a_det_sample_is_a_one_frame_clip_whose_references_are_the_image_itself(vid_and_det):
    videos = VidDataset(vid_and_det, "train")
    images = DetDataset(vid_and_det, videos.classes)
    assert len(images) == 3 and sum(len(images.targets(v, 0)) for v in range(3)) > 0
    refs = ReferenceSampling(2, -9, 9)  # FGFA's two references
    clips = VidDetectionClips(images, refs, seed=0)
    for i in range(len(clips)):
        sample = clips[i]
        assert sample["references"].shape == (2, 3, 24, 32) and sample["same"].tolist() == [True, True]
        for r in sample["references"]:
            assert (r == sample["current"]).all()
        np.testing.assert_array_equal(sample["boxes"].numpy(), images.targets(i, 0).boxes)
    dff = VidDetectionClips(images, ReferenceSampling(1, -9, 0), seed=0)[0]  # DFF: the key frame is the image
    assert dff["same"].tolist() == [True] and (dff["references"][0] == dff["current"]).all()


@pytest.mark.parametrize("share,length,from_det", [(0.5, 12, 6), (0.25, 12, 3), (0.9, 60, 54)])
def test_the_mix_holds_det_at_its_share_and_every_sample_of_both(vid_and_det, share, length, from_det):
    """6 VID frames and 3 DET images: the shortest mix holding all of both at the share."""
    videos = VidDataset(vid_and_det, "train")
    vid_clips = VidDetectionClips(videos, ReferenceSampling(2, -9, 9), seed=0)
    det_clips = VidDetectionClips(DetDataset(vid_and_det, videos.classes), ReferenceSampling(2, -9, 9), seed=0)
    mix = Mixed(vid_clips, det_clips, share)
    assert len(mix) == length and sum(mix.from_second(i) for i in range(length)) == from_det
    # spread evenly: any 4 samples in a row hold floor or ceil of 4 x share DET images
    counts = {sum(mix.from_second(j) for j in range(i, i + 4)) for i in range(length - 4)}
    assert counts <= {math.floor(4 * share), math.ceil(4 * share)}
    samples = [mix[i] for i in range(length)]
    det_samples = [s for i, s in enumerate(samples) if mix.from_second(i)]
    assert {tuple(s["current"].shape[-2:]) for s in det_samples} == {(24, 32)}  # the DET images' own size
    assert all(s["same"].all() for s in det_samples)
    assert {tuple(s["current"].shape[-2:]) for i, s in enumerate(samples) if not mix.from_second(i)} == {(48, 64)}
    seen = {s["current"].sum().item() for s in det_samples}  # every DET image appears
    assert len(seen) == len(det_clips) == 3
    with pytest.raises(IndexError):
        mix[len(mix)]
    with pytest.raises(ValueError, match="share"):
        Mixed(vid_clips, det_clips, 1.0)


def test_frames_of_different_sizes_cannot_share_a_batch(vid_and_det):
    videos = VidDataset(vid_and_det, "train")
    one = VidDetectionClips(videos)[0]
    other = VidDetectionClips(DetDataset(vid_and_det, videos.classes))[0]
    assert collate_clips([one, one])["current"].shape == (2, 3, 48, 64)
    with pytest.raises(FeatflowError, match="frames of different sizes \\(24x32, 48x64\\).*one clip per process"):
        collate_clips([one, other])


def test_training_mixes_det_from_the_folder_at_data_det_share(vid_and_det, tmp_path):
    from featflow.engine.config import from_dict
    from featflow.engine.det_training import DetTrainConfig, _datasets, train_detection

    data = {"source": str(vid_and_det), "size": [96, 128], "det_share": 0.5}
    cfg = from_dict(DetTrainConfig, {"model": {"arch": "resnet18", "channels": 16, "flow_net": "flownet_inception",
                                               "aggregation": "adaptive"}, "data": data, "eval": {"samples": 2}})
    train_set, held_out, names, finite = _datasets(cfg, cfg.model.references(cfg.data.max_offset))
    assert isinstance(train_set, Mixed) and finite and len(names) == 8
    # 6 VID frames, 3 DET images (each twice)
    assert len(train_set) == 12 and sum(map(train_set.from_second, range(12))) == 6
    det_sample = train_set[1]  # every other sample
    assert det_sample["same"].all() and det_sample["current"].shape == (3, 96, 128)  # 24x32 resized by 4
    vid_sample = train_set[0]
    assert vid_sample["current"].shape == (3, 96, 128) and float(vid_sample["scale"]) == 2.0  # 48x64 by 2
    assert all(float(s["scale"]) == 2.0 for s in held_out)
    from featflow.engine.det_training import _in_original_pixels

    sample = held_out[0]  # boxes found on the resized frame and its truth, scored in the 48x64 frame's pixels
    found = Detections(sample["boxes"].numpy(), np.ones(len(sample["labels"])), sample["labels"].numpy())
    dets, truth = _in_original_pixels(found, sample)
    original = VidDataset(vid_and_det, "val").targets(0, 0).boxes
    np.testing.assert_array_equal(dets.boxes, original)
    np.testing.assert_array_equal(truth, original)
    with pytest.raises(FeatflowError, match="data.det_share: .*synthetic source has none"):
        from_dict(DetTrainConfig, {"data": {"det_share": 0.5}})
    with pytest.raises(FeatflowError, match=r"data.det_share: .*\[0, 1\)"):
        from_dict(DetTrainConfig, {"data": {"source": str(vid_and_det), "det_share": 1.0}})
    no_det = tmp_path / "vid_only"
    export("vid", no_det, SynthConfig.vid(48, 64, 4), videos=1, val_videos=1, progress=False)
    cfg = from_dict(DetTrainConfig, {"data": {"source": str(no_det), "det_share": 0.5}})
    with pytest.raises(MissingInput, match="^data.det_share: no such image set: .*DET_train_30classes.txt"):
        train_detection(cfg, out=tmp_path / "run", progress=False)


# ---- the resize ------------------------------------------------------------------------------------------------


def test_the_papers_resize_rule():
    papers = Resize.from_size((600, 1000))
    assert (papers.short, papers.long) == (600, 1000) and Resize.from_size((1000, 600)) == papers
    assert papers.scale(720, 1280) == pytest.approx(1000 / 1280)  # 16:9: the longer side's limit binds
    assert papers.scale(480, 640) == pytest.approx(600 / 480)  # 4:3: shorter side 600, longer 800
    assert papers.scale(500, 333) == pytest.approx(600 / 333)  # portrait: the shorter side is the width
    image = np.zeros((720, 1280, 3), np.uint8)
    resized, scale = papers.image(image)
    assert resized.shape == (562, 1000, 3) and scale == 1000 / 1280
    assert resize_image(image, 1.0) is image
    with pytest.raises(FeatflowError, match="shorter side <= longer side"):
        Resize(0, 10)


def test_box_scaling_is_exact_and_goes_back_to_the_original_pixels():
    boxes = np.array([[0, 0, 9, 19], [3.5, 7, 630, 470]], np.float32)
    scale = 600 / 480
    scaled = scale_boxes(boxes, scale)
    np.testing.assert_array_equal(scaled, (boxes.astype(np.float64) * scale).astype(np.float32))
    np.testing.assert_allclose(boxes_to_original(scaled, scale, 480, 640), boxes, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(boxes_to_original(scale_boxes(boxes, 2.0), 2.0), boxes)  # a power of 2: exact
    np.testing.assert_array_equal(boxes_to_original([[-3, 5, 700, 20]], 1.0, 100, 640), [[0, 5, 639, 20]])


def test_a_resized_clip_scales_its_frames_and_boxes_by_one_factor(vid_and_det):
    videos = VidDataset(vid_and_det, "train")
    plain = VidDetectionClips(videos, ReferenceSampling(2, -9, 9), seed=3)
    resized = VidDetectionClips(videos, ReferenceSampling(2, -9, 9), seed=3, resize=Resize(72, 200))
    for i in (0, 4):
        a, b = plain[i], resized[i]
        assert b["current"].shape == (3, 72, 96) and b["references"].shape == (2, 3, 72, 96)
        assert float(a["scale"]) == 1.0 and float(b["scale"]) == 1.5
        np.testing.assert_array_equal(b["boxes"].numpy(), (a["boxes"].numpy().astype(np.float64) * 1.5)
                                      .astype(np.float32))
        assert b["same"].tolist() == a["same"].tolist()


def test_evaluation_of_resized_frames_reports_boxes_in_the_original_pixels(vid_and_det, tmp_path, monkeypatch):
    """An oracle stream that sees the resized frames and finds exactly their (scaled) boxes: the evaluation divides
    them back, so they equal the annotations (mAP 1) and the saved results hold the original pixels."""
    from featflow.engine import det_inference
    from featflow.evaluation.vid_map import read_vid_results

    data = VidDataset(vid_and_det, "val")
    seen = []

    def oracle(model, frames, config, timing=None):
        for t, frame in enumerate(frames):
            seen.append(frame.shape[:2])
            truth = data.targets(0, t)
            scale = frame.shape[0] / 48
            yield t, Detections(scale_boxes(truth.boxes, scale), np.ones(len(truth)), truth.labels)

    monkeypatch.setattr(det_inference, "detect_stream", oracle)
    model = type("Model", (), {"num_classes": len(data.classes)})()
    ev = det_inference.evaluate_detection(model, data, save_detections=tmp_path / "r.txt", progress=False,
                                          resize=Resize(96, 128))
    assert seen == [(96, 128)] * 6 and ev.result.map == pytest.approx(1.0)
    assert ev.to_json()["resize"] == {"short": 96, "long": 128}
    saved = read_vid_results(tmp_path / "r.txt", [list(v.frame_ids) for v in data.videos])[0]
    for t, dets in enumerate(saved):
        order = np.lexsort(dets.boxes.T[::-1])
        truth = data.targets(0, t).boxes
        np.testing.assert_allclose(dets.boxes[order], truth[np.lexsort(truth.T[::-1])], atol=0.01)
    detections, _ = det_inference.detect_dataset(model, data, det_inference.DetStreamConfig(), False, Resize(96, 128))
    np.testing.assert_array_equal(detections[0][2].boxes, data.targets(0, 2).boxes)  # x2 and back: exact
    seen.clear()
    detections, _ = det_inference.detect_dataset(model, data, det_inference.DetStreamConfig(), False)
    assert seen == [(48, 64)] * 6  # no resize: the frames as they are
    np.testing.assert_array_equal(detections[0][2].boxes, data.targets(0, 2).boxes)


def test_a_detector_is_evaluated_at_the_size_it_was_trained_at():
    from featflow.engine.checkpoint import trained_resize

    assert trained_resize({}) is None  # no training record: frames at their own size
    assert trained_resize({"config": '{"data": {"source": "synthetic", "size": [224, 384]}}'}) is None
    assert trained_resize({"config": '{"data": {"source": "/data/ILSVRC2015", "size": [600, 1000]}}'}) == \
        Resize(600, 1000)


@pytest.mark.slow
def test_fgfa_trains_on_vid_and_det_resized_and_evaluates_at_its_training_size(vid_and_det, tmp_path, capsys):
    """Two iterations of FGFA on batches of VID clips and DET images (both resized to 96x128), then ``featflow eval
    det`` evaluates it at that size, read from the checkpoint's training config."""
    import json

    from featflow.cli import main
    from featflow.engine.config import from_dict
    from featflow.engine.det_training import DetTrainConfig, train_detection

    cfg = from_dict(DetTrainConfig, {
        "model": {"arch": "resnet18", "channels": 16, "flow_net": "flownet_inception", "aggregation": "adaptive",
                  "anchor_sizes": [16, 32]},
        "data": {"source": str(vid_and_det), "size": [96, 128], "det_share": 0.5},
        "train": {"batch_size": 2, "iterations": 2, "lr": 0.001, "warmup": 1, "workers": 0, "optimizer": "sgd"},
        "eval": {"samples": 3, "every": 2}})
    result = train_detection(cfg, out=tmp_path / "fgfa", progress=False)
    assert result.iterations == 2 and 0.0 <= result.last["val_map"] <= 1.0
    weights = tmp_path / "fgfa" / "model.safetensors"
    assert main(["eval", "det", "--data", str(vid_and_det), "--weights", str(weights), "--method", "fgfa",
                 "--window", "1", "--json", str(tmp_path / "ev.json"), "--quiet"]) == 0
    assert "at a shorter side of 96 (longer at most 128)" in capsys.readouterr().out
    assert json.loads((tmp_path / "ev.json").read_text())["resize"] == {"short": 96, "long": 128}
    with pytest.raises(SystemExit) as bad:  # argparse's check, as every option's
        main(["eval", "det", "--data", str(vid_and_det), "--weights", str(weights), "--resize", "600"])
    assert bad.value.code == 2 and "expected SHORTxLONG" in capsys.readouterr().err


def test_the_released_training_frame_list_picks_the_current_frames(vid_and_det, tmp_path):
    import shutil

    from featflow.data.formats.vid import read_train_frames

    lines = (vid_and_det / "ImageSets" / "VID" / "VID_train_15frames.txt").read_text().splitlines()
    assert len(lines) == 6 and lines[0].endswith(" 1 0 6")  # a 6-frame video: all 6 are listed
    listed = read_train_frames(vid_and_det / "ImageSets" / "VID" / "VID_train_15frames.txt")
    assert [t for _, t in listed] == list(range(6))
    videos = VidDataset(vid_and_det, "train")
    root = tmp_path / "ilsvrc"
    shutil.copytree(vid_and_det, root)
    name = videos.videos[0].name
    (root / "ImageSets" / "VID" / "two.txt").write_text(f"train/{name} 1 4 6\ntrain/{name} 1 1 6\n")
    frames = VidDataset(root, "train").listed_frames("two.txt")
    assert frames == [(0, 4), (0, 1)]
    clips = VidDetectionClips(videos, ReferenceSampling(2, -9, 9), seed=0, frames=frames)
    assert len(clips) == 2
    assert torch.equal(clips[0]["current"], torch.from_numpy(videos.image(0, 4)).permute(2, 0, 1).float())
    (root / "ImageSets" / "VID" / "bad.txt").write_text(f"train/{name} 1 9 6\n")
    with pytest.raises(FeatflowError, match="bad.txt:1: frame 9 of a video of 6 frames"):
        VidDataset(root, "train").listed_frames("bad.txt")
    (root / "ImageSets" / "VID" / "other.txt").write_text("train/ILSVRC2015_VID_train_0009/nowhere 1 0 6\n")
    with pytest.raises(FeatflowError, match="video ILSVRC2015_VID_train_0009/nowhere is not in"):
        VidDataset(root, "train").listed_frames("other.txt")
    with pytest.raises(FileNotFoundError, match="no frame list"):
        VidDataset(root, "train").listed_frames("missing.txt")
    from featflow.engine.det_training import DetDataConfig
    with pytest.raises(FeatflowError, match="data.frame_list: a list of ImageNet VID training frames needs"):
        DetDataConfig(frame_list="VID_train_15frames.txt")
