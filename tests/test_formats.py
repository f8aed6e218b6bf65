import json

import numpy as np
import pytest

from conftest import tree_bytes
from featflow.cli import main
from featflow.data.formats import cityscapes as cs, flyingchairs as chairs
from featflow.data.formats.flo import read_flo, write_flo
from featflow.data.formats.vid import VID_CLASSES, VidAnnotation, VidObject, read_map_vid, read_vid_xml, write_vid_xml
from featflow.data.io import read_image, read_label_image
from featflow.data.synthetic import CLASS_NAMES, SynthConfig, SyntheticVideo
from featflow.data.synthetic.export import export, synthetic_label_table


def test_flo_round_trip_and_layout(tmp_path, rng):
    flow = rng.normal(size=(5, 7, 2)).astype(np.float32)
    path = tmp_path / "a.flo"
    write_flo(path, flow)
    data = path.read_bytes()
    assert data[:4] == b"PIEH" and np.frombuffer(data[:4], "<f4")[0] == 202021.25
    assert tuple(np.frombuffer(data, "<i4", 2, 4)) == (7, 5)  # width, then height
    assert len(data) == 12 + 5 * 7 * 2 * 4
    assert np.array_equal(read_flo(path), flow)


def test_flo_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.flo"
    bad.write_bytes(b"NOPE" + bytes(20))
    with pytest.raises(ValueError, match="not a .flo file"):
        read_flo(bad)
    short = tmp_path / "short.flo"
    short.write_bytes(b"PIEH" + np.array([4, 4], "<i4").tobytes() + bytes(8))
    with pytest.raises(ValueError, match="expected"):
        read_flo(short)
    with pytest.raises(FileNotFoundError):
        read_flo(tmp_path / "missing.flo")


def test_vid_xml_round_trip(tmp_path):
    ann = VidAnnotation("ILSVRC2015_val_00000007", "000012", 320, 240,
                        (VidObject(3, "n02691156", (10, 20, 30, 40), occluded=True),
                         VidObject(0, "n02391049", (0, 0, 5, 6))))
    path = tmp_path / "000012.xml"
    write_vid_xml(path, ann)
    assert read_vid_xml(path) == ann
    text = path.read_text()
    assert "<database>ILSVRC_2015</database>" in text and "<trackid>3</trackid>" in text


def test_vid_xml_errors_are_clear(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text("<annotation><size><width>3</width></size>")
    with pytest.raises(ValueError, match="not valid XML"):
        read_vid_xml(path)
    path.write_text("<annotation><size><width>3</width></size></annotation>")
    with pytest.raises(ValueError, match="height"):
        read_vid_xml(path)


def test_vid_classes_are_the_official_thirty():
    assert len(VID_CLASSES) == 30 and VID_CLASSES[0] == ("n02691156", "airplane")
    assert VID_CLASSES[-1] == ("n02391049", "zebra")


def test_label_tables():
    assert cs.CITYSCAPES.num_classes == 19
    lut = cs.CITYSCAPES.id_to_train_id()
    evaluated = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
    assert list(lut[evaluated]) == list(range(19))
    assert all(lut[i] == 255 for i in range(256) if i not in evaluated)
    table = synthetic_label_table()
    assert table.num_classes == len(CLASS_NAMES) and table.class_names == list(CLASS_NAMES)
    assert cs.LabelTable.from_json(table.to_json()) == table


def test_cityscapes_export_layout(tmp_path, small_config):
    export("cityscapes", tmp_path, small_config, videos=2, val_videos=1, seed=3, progress=False)
    for split, seqs in (("train", 2), ("val", 1)):
        folder = tmp_path / "leftImg8bit_sequence" / split / "shapes"
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted(f"shapes_{s:06d}_{f:06d}_leftImg8bit.png" for s in range(seqs) for f in range(30))
        gt = sorted(p.name for p in (tmp_path / "gtFine" / split / "shapes").iterdir())
        assert gt == sorted(f"shapes_{s:06d}_000019_gtFine_{k}.png"
                            for s in range(seqs) for k in ("labelIds", "instanceIds"))
    # the labelled frame is the 20th of the snippet and its labels match the generator's
    video = SyntheticVideo(small_config, seed=3, index=1, split="train")
    image = read_image(cs.sequence_image_path(tmp_path, "train", "shapes", 1, 19))
    assert np.array_equal(image, video.frame(19))
    label_ids = read_label_image(cs.label_path(tmp_path, "train", "shapes", 1, 19))
    table = cs.load_label_table(tmp_path)
    assert np.array_equal(table.id_to_train_id()[label_ids], video.annotation(19).semantic)
    instance_ids = read_label_image(cs.label_path(tmp_path, "train", "shapes", 1, 19, "instanceIds"))
    objects = instance_ids >= 1000
    assert np.array_equal(objects, video.annotation(19).instance > 0)
    assert np.array_equal(instance_ids[objects] // 1000, label_ids[objects])


def test_vid_export_layout(tmp_path):
    config = SynthConfig(height=64, width=96, num_frames=12)
    export("vid", tmp_path, config, videos=2, val_videos=2, seed=1, progress=False)
    train = tmp_path / "Data" / "VID" / "train" / "ILSVRC2015_VID_train_0000" / "ILSVRC2015_train_00000001"
    assert sorted(p.name for p in train.iterdir()) == [f"{t:06d}.JPEG" for t in range(12)]
    val_ann = tmp_path / "Annotations" / "VID" / "val" / "ILSVRC2015_val_00000001"
    assert sorted(p.name for p in val_ann.iterdir()) == [f"{t:06d}.xml" for t in range(12)]
    frames = (tmp_path / "ImageSets" / "VID" / "VID_val_frames.txt").read_text().splitlines()
    assert frames[0] == "val/ILSVRC2015_val_00000000/000000 1" and frames[-1] == "val/ILSVRC2015_val_00000001/000011 24"
    videos = (tmp_path / "ImageSets" / "VID" / "VID_val_videos.txt").read_text().splitlines()
    assert videos == ["val/ILSVRC2015_val_00000000 1 0 12", "val/ILSVRC2015_val_00000001 13 0 12"]
    train_list = (tmp_path / "ImageSets" / "VID" / "VID_train_15frames.txt").read_text().splitlines()
    assert train_list[0] == "train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000 1 0 12"
    classes = read_map_vid(tmp_path / "devkit" / "data" / "map_vid.txt")
    assert [name for _, name in classes] == list(CLASS_NAMES[1:])
    # boxes in the XML are the generator's, in inclusive pixel coordinates
    video = SyntheticVideo(config, seed=1, index=1, split="val")
    ann = read_vid_xml(val_ann / "000007.xml")
    truth = video.annotation(7)
    assert (ann.width, ann.height) == (96, 64) and ann.folder == "ILSVRC2015_val_00000001"
    assert len(ann.objects) == len(truth.boxes)
    wnid = {name: wnid for wnid, name in classes}
    for obj, box, label, track in zip(ann.objects, truth.boxes, truth.labels, truth.track_ids):
        x0, y0, x1, y1 = box
        assert obj.box == (x0, y0, x1 - 1, y1 - 1)
        assert obj.name == wnid[CLASS_NAMES[label]] and obj.track_id == track


def test_flyingchairs_export_layout(tmp_path):
    config = SynthConfig(height=48, width=64, num_frames=10)
    export("flyingchairs", tmp_path, config, videos=3, val_videos=2, seed=0, progress=False)
    assert (tmp_path / "FlyingChairs_train_val.txt").read_text().split() == ["1", "1", "1", "2", "2"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(
        f"{n:05d}_{k}" for n in range(1, 6) for k in ("img1.ppm", "img2.ppm", "flow.flo"))
    train, val = chairs.list_pairs(tmp_path, "train"), chairs.list_pairs(tmp_path, "val")
    assert len(train) == 3 and len(val) == 2
    image = read_image(val[0].image1)
    assert image.shape == (48, 64, 3) and read_flo(val[0].flow).shape == (48, 64, 2)


def test_same_seed_same_bytes(tmp_path, small_config):
    for fmt in ("cityscapes", "vid", "flyingchairs"):
        config = small_config if fmt == "cityscapes" else SynthConfig(height=48, width=80, num_frames=10)
        export(fmt, tmp_path / f"{fmt}_a", config, videos=1, val_videos=1, seed=5, progress=False)
        export(fmt, tmp_path / f"{fmt}_b", config, videos=1, val_videos=1, seed=5, progress=False)
        a, b = tree_bytes(tmp_path / f"{fmt}_a"), tree_bytes(tmp_path / f"{fmt}_b")
        assert a == b and len(a) > 3
    export("vid", tmp_path / "other", SynthConfig(height=48, width=80, num_frames=10), videos=1, val_videos=1, seed=6,
           progress=False)
    assert tree_bytes(tmp_path / "other") != tree_bytes(tmp_path / "vid_a")


def test_synth_cli(tmp_path, capsys):
    out = tmp_path / "chairs"
    assert main(["synth", "--format", "flyingchairs", "--out", str(out), "--videos", "2", "--size", "32x48",
                 "--seed", "4", "--quiet"]) == 0
    assert "2 train pairs" in capsys.readouterr().out
    meta = json.loads((out / "featflow_synth.json").read_text())
    assert meta["seed"] == 4 and meta["config"]["height"] == 32
    assert main(["synth", "--format", "cityscapes", "--out", str(tmp_path / "c"), "--frames", "20"]) == 2
    assert "30 frames" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", "--format", "vid", "--out", str(tmp_path), "--size", "abc"])
    # the VID geometry: its own object sizes and the per-object appearance changes, recorded with the data
    assert main(["synth", "--format", "vid", "--geometry", "vid", "--out", str(tmp_path / "v"), "--videos", "1",
                 "--frames", "4", "--size", "64x96", "--quiet"]) == 0
    meta = json.loads((tmp_path / "v" / "featflow_synth.json").read_text())
    assert meta["config"]["object_size"] == [0.45, 0.95] and meta["config"]["degradations"]["pose"] == 1.0


def test_cocovid_round_trip_reads_what_the_vid_reader_reads(tmp_path):
    from featflow.data.formats.cocovid import CocoVidDataset, write_cocovid
    from featflow.data.synthetic import SynthConfig
    from featflow.data.synthetic.export import export
    from featflow.data.vid import VidDataset

    export("vid", tmp_path / "vid", SynthConfig(height=48, width=64, num_frames=4), videos=0, val_videos=2,
           progress=False)
    vid = VidDataset(tmp_path / "vid", "val")
    write_cocovid(tmp_path / "val.json", vid)
    coco = CocoVidDataset(tmp_path / "val.json", tmp_path / "vid" / "Data" / "VID")
    assert coco.classes == vid.classes and len(coco) == len(vid) == 2
    assert [v.frame_ids for v in coco.videos] == [v.frame_ids for v in vid.videos]
    boxes = 0
    for v in range(2):
        for t in range(4):
            a, b = vid.targets(v, t), coco.targets(v, t)
            assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.labels, b.labels)
            assert np.array_equal(a.track_ids, b.track_ids)
            boxes += len(a.labels)
        assert np.array_equal(coco.image(v, 3), vid.image(v, 3))
    assert boxes > 0
    (tmp_path / "bad.json").write_text('{"videos": []}')
    with pytest.raises(ValueError, match="lacks"):
        CocoVidDataset(tmp_path / "bad.json", tmp_path)


def test_vid_dataset_without_image_sets_and_bad_input(tmp_path):
    import shutil

    from featflow.data.formats import vid as vidfmt
    from featflow.data.synthetic import SynthConfig
    from featflow.data.synthetic.export import export
    from featflow.data.vid import VidDataset

    export("vid", tmp_path / "vid", SynthConfig(height=48, width=64, num_frames=3), videos=2, val_videos=0,
           progress=False)
    shutil.rmtree(tmp_path / "vid" / "ImageSets")
    data = VidDataset(tmp_path / "vid", "train")  # videos found from the nested train folders
    assert len(data) == 2 and data.videos[1].frame_ids == (4, 5, 6)
    assert data.videos[0].name == "ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000"
    with pytest.raises(FileNotFoundError, match="'val' split"):
        VidDataset(tmp_path / "vid", "val")
    # an annotation naming a class outside the class map
    ann = vidfmt.read_vid_xml(tmp_path / "vid" / "Annotations" / "VID" / "train" / data.videos[0].name / "000000.xml")
    ann = vidfmt.VidAnnotation(ann.folder, ann.filename, ann.width, ann.height,
                               (vidfmt.VidObject(0, "n00000000", (1, 1, 5, 5)),))
    vidfmt.write_vid_xml(tmp_path / "vid" / "Annotations" / "VID" / "train" / data.videos[0].name / "000000.xml", ann)
    with pytest.raises(ValueError, match="n00000000"):
        data.targets(0, 0)
