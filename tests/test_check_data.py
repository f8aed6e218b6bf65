"""``featflow check-data``: each layout is recognised and counted as its readers read it, and every error in a
broken copy is reported with its file's name and exit code 2."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from featflow.cli import main
from featflow.data.check import MOTIONS, check_data, detect_layout, error_lines
from featflow.data.cityscapes import CityscapesVideo
from featflow.data.formats import imagenet_det as det
from featflow.data.formats.cocovid import write_cocovid
from featflow.data.formats.flyingchairs import list_pairs
from featflow.data.formats.vid import read_map_vid
from featflow.data.imagenet_det import DetDataset
from featflow.data.synthetic import SynthConfig
from featflow.data.synthetic.export import export, export_det
from featflow.data.vid import VidDataset
from featflow.errors import FeatflowError, MissingInput
from featflow.evaluation.vid_map import motion_categories
from featflow.structures import VideoGroundTruth


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    """Tiny data sets in each layout, as featflow writes them (48x64 frames, 1-2 videos a split)."""
    root = tmp_path_factory.mktemp("data")
    export("vid", root / "vid", SynthConfig(height=48, width=64, num_frames=6), videos=1, val_videos=2, progress=False)
    export("cityscapes", root / "cityscapes", SynthConfig(height=48, width=64, num_frames=30), videos=1, val_videos=1,
           progress=False)
    export("flyingchairs", root / "chairs", SynthConfig(height=48, width=64, num_frames=4), videos=2, val_videos=1,
           progress=False)
    for split in ("train", "val"):  # mmtracking's place for CocoVID files: annotations/ beside Data/
        write_cocovid(root / "vid" / "annotations" / f"imagenet_vid_{split}.json", VidDataset(root / "vid", split))
    export_det(root / "det", SynthConfig.vid(height=36, width=48, num_frames=1), images=4)  # ImageNet DET alone
    return {"vid": root / "vid", "cityscapes": root / "cityscapes", "chairs": root / "chairs", "det": root / "det"}


def _broken(written: dict[str, Path], layout: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(written[layout], tmp_path / layout))


def _check(capsys, path: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["check-data", str(path), "--quiet", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _expected_boxes(data: VidDataset) -> dict:
    """What the VID reader reads from a split: counts, boxes per class, tracks per video, boxes per motion."""
    classes = dict.fromkeys(data.class_names, 0)
    tracks, motion, boxes = [], dict.fromkeys(MOTIONS, 0), 0
    for v in range(len(data)):
        truth = [data.targets(v, t) for t in range(data.num_frames(v))]
        for frame in truth:
            boxes += len(frame)
            for label in frame.labels:
                classes[data.class_names[label - 1]] += 1
        tracks.append(len({int(t) for frame in truth for t in frame.track_ids}))
        for names in motion_categories(VideoGroundTruth.from_frames(truth)):
            for m in names:
                motion[str(m)] += 1
    return {"units": len(data), "frames": sum(data.num_frames(v) for v in range(len(data))), "boxes": boxes,
            "classes": classes, "tracks": tracks, "motion": motion}


def _assert_boxes(split, expected: dict) -> None:
    assert (split.units, split.frames, split.boxes) == (expected["units"], expected["frames"], expected["boxes"])
    assert split.unannotated == 0 and split.labelled == split.frames
    assert split.classes == expected["classes"] and split.tracks == expected["tracks"]
    assert split.motion == expected["motion"]
    shares = split.motion_shares()
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["slow"] == pytest.approx(expected["motion"]["slow"] / expected["boxes"])


def test_vid_is_recognised_and_counted_as_the_reader_reads_it(written, capsys):
    root = written["vid"]
    assert detect_layout(root) == "vid"
    report = check_data(root, motion=motion_categories)
    assert report.ok and report.layout == "vid" and report.class_unit == "boxes"
    assert [s.name for s in report.splits] == ["train", "val"]
    for split in report.splits:
        _assert_boxes(split, _expected_boxes(VidDataset(root, split.name)))
    code, out, _ = _check(capsys, root)
    assert code == 0 and out.splitlines() == report.lines()
    assert out.startswith("ImageNet VID layout") and "no errors found" in out
    assert "  val: 2 videos, 12 frames (0 without annotation)" in out and "motion (share of boxes)" in out
    only = check_data(root, "val")
    assert [s.name for s in only.splits] == ["val"] and only.splits[0].motion == {}  # no motion without ``motion``
    with pytest.raises(FeatflowError, match="no split 'test'"):
        check_data(root, "test")


def test_cocovid_file_and_folder_match_the_vid_split_they_came_from(written, capsys, tmp_path):
    root = written["vid"]
    file = root / "annotations" / "imagenet_vid_val.json"
    assert detect_layout(file) == "cocovid"
    report = check_data(file, motion=motion_categories)  # images found in ../Data/VID
    assert report.ok and [s.name for s in report.splits] == ["imagenet_vid_val"]
    _assert_boxes(report.splits[0], _expected_boxes(VidDataset(root, "val")))
    folder = tmp_path / "coco"  # a folder holding CocoVID files, images elsewhere
    shutil.copytree(root / "annotations", folder)
    assert detect_layout(folder) == "cocovid"
    code, out, _ = _check(capsys, folder, "--images", str(root / "Data" / "VID"), "--split", "train")
    assert code == 0 and out.startswith("CocoVID layout") and "imagenet_vid_train: 1 video, 6 frames" in out
    code, out, _ = _check(capsys, folder)  # without --images: one error saying where it looked
    assert code == 2 and "none of its 6 images is under" in out and "--images" in out


def test_cityscapes_is_counted_per_class_with_the_folders_label_table(written, capsys):
    root = written["cityscapes"]
    report = check_data(root)
    assert report.ok and report.layout == "cityscapes" and report.class_unit == "pixels"
    assert "featflow_labels.json" in report.class_map
    for split in report.splits:
        video = CityscapesVideo(root, split.name)
        assert (split.units, split.frames, split.labelled) == (len(video), 30 * len(video), len(video))
        pixels = sum(np.bincount(video.label(i)[video.label(i) != 255], minlength=video.num_classes)
                     for i in range(len(video)))
        assert split.classes == dict(zip(video.table.class_names, pixels.tolist()))
        assert split.tracks == [] and split.motion == {}
    code, out, _ = _check(capsys, root)
    assert code == 0 and "train: 1 snippet, 30 frames, 1 labelled frame" in out
    assert "labelled pixels (frames) per class" in out


def test_flyingchairs_pairs_are_counted(written, capsys):
    root = written["chairs"]
    report = check_data(root)
    assert report.ok and report.layout == "flyingchairs"
    assert {s.name: s.units for s in report.splits} == {s: len(list_pairs(root, s)) for s in ("train", "val")}
    assert all(s.labelled == s.units and s.frames == 2 * s.units for s in report.splits)
    code, out, _ = _check(capsys, root)
    assert code == 0 and "train: 2 pairs, 4 frames, 2 flows" in out


def test_a_broken_vid_copy_reports_every_error_with_its_file(written, capsys, tmp_path):
    root = _broken(written, "vid", tmp_path)
    val = root / "Annotations" / "VID" / "val" / "ILSVRC2015_val_00000000"
    (val / "000001.xml").write_text("<annotation><size>")  # not valid XML
    text = (val / "000002.xml").read_text()
    (val / "000002.xml").write_text(text.replace("<name>n99", "<name>n42", 1))  # a class not in the class map
    other = root / "Annotations" / "VID" / "val" / "ILSVRC2015_val_00000001" / "000000.xml"
    other.write_text(other.read_text().replace("<xmax>", "<xmax>9", 1))  # a box far outside the 64x48 image
    missing = root / "Data" / "VID" / "val" / "ILSVRC2015_val_00000001" / "000003.JPEG"
    missing.unlink()  # listed in ImageSets/VID/VID_val_frames.txt
    (root / "Data" / "VID" / "val" / "ILSVRC2015_val_00000000" / "000004.JPEG").write_bytes(b"not a JPEG")
    (root / "Annotations" / "VID" / "val" / "ILSVRC2015_val_00000001" / "000005.xml").unlink()  # allowed
    code, out, err = _check(capsys, root)
    assert code == 2 and not err
    report = out[out.index("5 errors:"):]
    assert "000001.xml: not valid XML" in report
    assert "000002.xml: classes ['n42" in report and "not in the class map" in report
    assert "ILSVRC2015_val_00000001/000000.xml: box" in report and "outside the 64x48 image" in report
    assert f"{missing}: listed in {root / 'ImageSets' / 'VID' / 'VID_val_frames.txt'} but missing" in report
    assert "cannot decode" in report and "000004.JPEG" in report
    assert "val: 2 videos, 12 frames (1 without annotation)" in out  # a frame without annotation is no error
    assert "no errors found" not in out


def test_a_broken_cityscapes_copy_names_the_missing_frame_and_the_bad_label(written, capsys, tmp_path):
    from featflow.data.io import write_image

    root = _broken(written, "cityscapes", tmp_path)
    frame = root / "leftImg8bit_sequence" / "val" / "shapes" / "shapes_000000_000005_leftImg8bit.png"
    frame.unlink()
    label = root / "gtFine" / "train" / "shapes" / "shapes_000000_000019_gtFine_labelIds.png"
    write_image(label, np.full((40, 64), 200, np.uint8))  # the wrong size, and an id not in the label table
    code, out, _ = _check(capsys, root)
    assert code == 2 and "3 errors:" in out
    assert f"{frame}: missing (frame 5 of the 30-frame snippet" in out
    assert f"{label}: the label is 64x40 but its frame" in out and f"{label}: label ids [200]" in out


def test_a_broken_flyingchairs_copy_names_the_missing_flow(written, capsys, tmp_path):
    root = _broken(written, "chairs", tmp_path)
    flow = root / "data" / "00002_flow.flo"
    flow.unlink()
    code, out, _ = _check(capsys, root)
    assert code == 2 and f"{flow}: missing" in out and "train: 2 pairs, 4 frames, 1 flow" in out


def _det_classes(root: Path) -> tuple[tuple[str, str], ...]:
    """The class map ``export_det`` writes beside its images (the synthetic classes)."""
    return read_map_vid(root / "devkit" / "data" / "map_vid.txt")


def _expected_det(data: DetDataset) -> tuple[int, dict[str, int]]:
    """The boxes the DET reader reads, in all and per class."""
    classes = dict.fromkeys(data.class_names, 0)
    for v in range(len(data)):
        for label in data.targets(v, 0).labels:
            classes[data.class_names[label - 1]] += 1
    return sum(classes.values()), classes


def test_det_is_recognised_and_counted_as_the_reader_reads_it(written, capsys, tmp_path):
    root = written["det"]
    assert detect_layout(root) == "det"
    report = check_data(root, motion=motion_categories)
    assert report.ok and report.layout == "det" and [s.name for s in report.splits] == ["det"]
    split = report.splits[0]
    boxes, classes = _expected_det(DetDataset(root, _det_classes(root)))
    assert (split.unit, split.units, split.frames, split.boxes, split.left_out) == ("images", 4, 4, boxes, 0)
    assert split.classes == classes and split.tracks == [] and split.motion == {}  # no tracks in still images
    code, out, _ = _check(capsys, root)
    assert code == 0 and out.startswith("ImageNet DET layout") and "no errors found" in out
    assert f"  det: 4 images (0 without a box of the class map), {boxes} boxes (0 of other classes left out)" in out
    both = Path(shutil.copytree(written["vid"], tmp_path / "ilsvrc"))  # an ILSVRC2015 folder: VID and DET
    for sub in ("Data/DET", "Annotations/DET"):
        shutil.copytree(root / sub, both / sub)
    shutil.copy(root / det.DET_IMAGE_SET, both / det.DET_IMAGE_SET)
    report = check_data(both)
    assert report.ok and report.layout == "vid" and [s.name for s in report.splits] == ["train", "val", "det"]
    assert report.splits[2].boxes == boxes and [s.name for s in check_data(both, "det").splits] == ["det"]


def test_a_broken_det_copy_reports_every_error_with_its_file(written, capsys, tmp_path):
    root = _broken(written, "det", tmp_path)
    data = DetDataset(root, _det_classes(root))
    names = [v.name for v in data.videos]
    det.annotation_path(root, names[0]).write_text("<annotation><size>")  # not valid XML
    det.image_path(root, names[1]).unlink()  # listed in the image set
    third = det.annotation_path(root, names[2])
    text = third.read_text()
    third.write_text(text.replace("<xmax>", "<xmax>9", 1))  # a box far outside the 48x36 image
    fourth = det.annotation_path(root, names[3])  # an object of a class outside the map: background, no error
    fourth.write_text(re.sub(r"<name>n99\d+</name>", "<name>n00007846</name>", fourth.read_text(), count=1))
    code, out, err = _check(capsys, root)
    assert code == 2 and not err
    report = out[out.index("3 errors:"):]
    assert f"{det.annotation_path(root, names[0])}: not valid XML" in report
    assert f"{det.image_path(root, names[1])}: listed in {root / det.DET_IMAGE_SET} but missing" in report
    assert f"{third}: box" in report and "outside the 48x36 image" in report
    assert "(1 of other classes left out)" in out
    (root / det.DET_IMAGE_SET).unlink()
    code, out, _ = _check(capsys, root)
    assert code == 2 and f"no such image set: {root / det.DET_IMAGE_SET}" in out


def test_a_folder_of_nothing_recognisable_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("my videos\n")
    code, out, err = _check(capsys, tmp_path)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("featflow check-data: error:") and "not a dataset layout featflow reads" in err
    with pytest.raises(MissingInput):
        detect_layout(tmp_path / "nothing here")
    assert _check(capsys, tmp_path / "notes.txt")[0] == 2


def test_json_holds_the_same_report(written, capsys, tmp_path):
    out = tmp_path / "report" / "vid.json"
    code, text, _ = _check(capsys, written["vid"], "--json", str(out))
    saved = json.loads(out.read_text())
    report = check_data(written["vid"], motion=motion_categories)
    assert code == 0 and saved == json.loads(json.dumps(report.to_json()))
    assert saved["ok"] and saved["layout"] == "vid" and saved["errors"] == []
    assert {name: s["boxes"] for name, s in saved["splits"].items()} == {s.name: s.boxes for s in report.splits}
    assert saved["splits"]["val"]["frames"] == 12 and set(saved["splits"]["val"]["motion_shares"]) == set(MOTIONS)


def test_long_error_lists_are_cut_with_a_count():
    lines = error_lines([f"file{i}: bad" for i in range(25)], max_errors=20)
    assert lines[0] == "25 errors:" and lines[-1] == "  ... and 5 more" and len(lines) == 22
    assert error_lines([]) == ["no errors found"]
