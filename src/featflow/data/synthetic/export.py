"""Write synthetic videos to disk in the layouts of the real datasets.

- ``cityscapes``: 30-frame ``leftImg8bit_sequence`` snippets, ``gtFine`` label and instance ids of the
  20th frame, the labelled frame again under ``leftImg8bit``, and ``featflow_labels.json`` (the label table
  of the synthetic classes: label id = class + 1, train id = class);
- ``vid``: ImageNet VID ``Data`` / ``Annotations`` / ``ImageSets`` and ``devkit/data/map_vid.txt`` (the
  synthetic classes under made-up WordNet-style ids);
- ``flyingchairs``: one (current, key) pair per video with a gap of 1..9 frames, its exact flow as
  ``.flo``, and ``FlyingChairs_train_val.txt``.
``export_det`` writes single frames in the ImageNet DET layout (``Data/DET``, ``Annotations/DET``,
``ImageSets/DET_train_30classes.txt``), with the ``vid`` export's classes: the DET images a VID folder mixes in.

Every file is a pure function of (config, seed, split, video index): the same command writes the same bytes.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from featflow.data.formats import cityscapes as cs, flyingchairs as chairs, imagenet_det as det, vid
from featflow.data.formats.flo import write_flo
from featflow.data.io import write_image
from featflow.data.synthetic.classes import CLASS_NAMES
from featflow.data.synthetic.scene import SynthConfig
from featflow.data.synthetic.video import SPLITS, SyntheticVideo
from featflow.errors import FeatflowError
from featflow.registry import FORMATS, check_choice
from featflow.utils.io import write_json, write_text

CITY = "shapes"
MAX_PAIR_GAP = 9
_PALETTE = [(0, 0, 0), (128, 128, 128), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
            (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230)]


def synthetic_label_table() -> cs.LabelTable:
    """Label table of the synthetic classes in Cityscapes form (id 0 = unlabeled, ignored)."""
    labels = [cs.Label("unlabeled", 0, cs.IGNORE_LABEL, _PALETTE[0])]
    labels += [cs.Label(name, k + 1, k, _PALETTE[k + 1]) for k, name in enumerate(CLASS_NAMES)]
    return cs.LabelTable(tuple(labels))


def synthetic_vid_classes() -> tuple[tuple[str, str], ...]:
    """(WordNet-style id, name) of each synthetic object class, in label order 1..8."""
    return tuple((f"n99{k:06d}", name) for k, name in enumerate(CLASS_NAMES[1:], 1))


def _write_metadata(out: Path, fmt: str, config: SynthConfig, seed: int, counts: dict[str, int]) -> None:
    config_json = asdict(config)
    write_json(out / "featflow_synth.json", {"format": fmt, "seed": seed, "videos": counts, "config": config_json})


def _cityscapes_video(out: Path, video: SyntheticVideo, split: str, table: cs.LabelTable, bar: tqdm) -> None:
    for t in range(len(video)):
        image, ann = video.render(t)
        write_image(cs.sequence_image_path(out, split, CITY, video.index, t), image)
        if t == cs.LABELLED_INDEX:
            write_image(cs.image_path(out, split, CITY, video.index, t), image)
            label_ids = table.train_id_to_id()[ann.semantic]  # class k (= train id) -> label id
            write_image(cs.label_path(out, split, CITY, video.index, t, "labelIds"), label_ids)
            instance_ids = label_ids.astype(np.uint16)
            for n, track in enumerate(ann.track_ids):  # Cityscapes: label id * 1000 + instance number
                mask = ann.instance == track + 1
                instance_ids[mask] = label_ids[mask].astype(np.uint16) * 1000 + n
            write_image(cs.label_path(out, split, CITY, video.index, t, "instanceIds"), instance_ids)
        bar.update()


def _vid_video(out: Path, video: SyntheticVideo, split: str, wnids: list[str], bar: tqdm) -> set[int]:
    """Write one video's frames and annotations; -> the classes that appear in it."""
    name = vid.video_name(split, video.index)
    present: set[int] = set()
    for t in range(len(video)):
        image, ann = video.render(t)
        write_image(out / "Data" / "VID" / split / name / f"{vid.frame_name(t)}.JPEG", image)
        objects = tuple(
            vid.VidObject(int(track), wnids[int(label) - 1], (int(x0), int(y0), int(x1) - 1, int(y1) - 1),
                          occluded=bool(visible < 0.5))
            for track, label, (x0, y0, x1, y1), visible in zip(ann.track_ids, ann.labels, ann.boxes, ann.visible)
        )
        annotation = vid.VidAnnotation(name, vid.frame_name(t), image.shape[1], image.shape[0], objects)
        vid.write_vid_xml(out / "Annotations" / "VID" / split / name / f"{vid.frame_name(t)}.xml", annotation)
        present.update(int(label) for label in ann.labels)
        bar.update()
    return present


def _vid_image_sets(out: Path, counts: dict[str, int], num_frames: int, train_classes: list[set[int]]) -> None:
    sets = out / "ImageSets" / "VID"
    if counts.get("val", 0):
        frames, videos, plain = [], [], []
        next_id = 1
        for index in range(counts["val"]):
            name = vid.video_name("val", index)
            videos.append(f"val/{name} {next_id} 0 {num_frames}\n")
            for t in range(num_frames):
                frames.append(f"val/{name}/{vid.frame_name(t)} {next_id}\n")
                plain.append(f"{name}/{vid.frame_name(t)} {next_id}\n")
                next_id += 1
        write_text(sets / "VID_val_frames.txt", "".join(frames))
        write_text(sets / "VID_val_videos.txt", "".join(videos))
        write_text(sets / "val.txt", "".join(plain))
    if counts.get("train", 0):
        lines = []
        per_class: dict[int, list[str]] = {k: [] for k in range(1, len(CLASS_NAMES))}
        for index in range(counts["train"]):
            name = vid.video_name("train", index)
            # 15 frames spread evenly over the video, as the released training lists do
            for frame in np.unique(np.linspace(0, num_frames - 1, min(15, num_frames)).round().astype(int)):
                lines.append(f"train/{name} 1 {frame} {num_frames}\n")
            for k in per_class:  # the per-class lists: 1 if the class appears in the video, else -1
                per_class[k].append(f"{name} {1 if k in train_classes[index] else -1}\n")
        write_text(sets / "VID_train_15frames.txt", "".join(lines))
        for k, rows in per_class.items():
            write_text(sets / f"train_{k}.txt", "".join(rows))


def _chairs_pair(out: Path, video: SyntheticVideo, number: int, bar: tqdm) -> None:
    rng = np.random.default_rng([video.seed, SPLITS[video.split], video.index, 1 << 20])
    gap = int(rng.integers(1, min(MAX_PAIR_GAP, len(video) - 1) + 1))
    first = int(rng.integers(0, len(video) - gap))
    current, key = (first, first + gap) if rng.random() < 0.5 else (first + gap, first)
    flow, _ = video.flow(current, key)
    pair = chairs.pair_paths(out, number)
    write_image(pair.image1, video.frame(current))
    write_image(pair.image2, video.frame(key))
    write_flo(pair.flow, flow)
    bar.update()


def export(fmt: str, out: str | os.PathLike, config: SynthConfig, videos: int, val_videos: int = 0, seed: int = 0,
           progress: bool = True) -> dict[str, int]:
    """Write ``videos`` training and ``val_videos`` validation videos in format ``fmt``; -> counts per split."""
    check_choice("format", fmt, FORMATS)
    if videos < 0 or val_videos < 0 or videos + val_videos == 0:
        raise FeatflowError("ask for at least one video (--videos / --val-videos)")
    if fmt == "cityscapes" and config.num_frames != cs.SNIPPET_LENGTH:
        raise FeatflowError(f"Cityscapes snippets have {cs.SNIPPET_LENGTH} frames, not {config.num_frames}")
    if fmt == "flyingchairs" and config.num_frames < 2:
        raise FeatflowError("FlyingChairs pairs need videos of at least 2 frames")
    out = Path(out)
    counts = {split: n for split, n in (("train", videos), ("val", val_videos)) if n}
    frames_per_video = 1 if fmt == "flyingchairs" else config.num_frames
    total = sum(counts.values()) * frames_per_video
    table = synthetic_label_table()
    wnids = [wnid for wnid, _ in synthetic_vid_classes()]
    with tqdm(total=total, desc=f"synth {fmt}", unit="frame" if fmt != "flyingchairs" else "pair",
              disable=not progress) as bar:
        number = 0
        split_codes: list[str] = []
        train_classes: list[set[int]] = []
        for split, count in counts.items():
            for index in range(count):
                video = SyntheticVideo(config, seed, index, split)
                if fmt == "cityscapes":
                    _cityscapes_video(out, video, split, table, bar)
                elif fmt == "vid":
                    present = _vid_video(out, video, split, wnids, bar)
                    if split == "train":
                        train_classes.append(present)
                else:
                    number += 1
                    _chairs_pair(out, video, number, bar)
                    split_codes.append(str(chairs.SPLIT_CODES[split]))
    if fmt == "cityscapes":
        cs.write_label_table(out, table)
    elif fmt == "vid":
        vid.write_map_vid(out / "devkit" / "data" / "map_vid.txt", synthetic_vid_classes())
        _vid_image_sets(out, counts, config.num_frames, train_classes)
    else:
        write_text(out / chairs.SPLIT_FILE, "\n".join(split_codes) + "\n")
    _write_metadata(out, fmt, config, seed, counts)
    return counts


def export_det(out: str | os.PathLike, config: SynthConfig, images: int, seed: int = 0) -> list[str]:
    """Write ``images`` synthetic images in the ImageNet DET layout under ``out`` (an ImageNet VID folder written by
    ``export("vid", ...)``, or a folder of its own) -> their image-set names. Image ``i`` is the first frame of test
    video ``i`` (no VID frame's twin), named as ILSVRC2014's DET training images, its boxes under the ``vid``
    export's WordNet-style ids, which ``devkit/data/map_vid.txt`` lists."""
    if images < 1:
        raise FeatflowError("ask for at least one DET image")
    out = Path(out)
    wnids = [wnid for wnid, _ in synthetic_vid_classes()]
    names = []
    for index in range(images):
        image, ann = SyntheticVideo(config, seed, index, "test").render(0)
        folder, stem = f"ILSVRC2014_train_{index // 1000:04d}", f"ILSVRC2014_train_{index:08d}"
        name = f"train/{folder}/{stem}"
        write_image(det.image_path(out, name), image)
        objects = tuple(det.DetObject(wnids[int(label) - 1], (int(x0), int(y0), int(x1) - 1, int(y1) - 1))
                        for label, (x0, y0, x1, y1) in zip(ann.labels, ann.boxes))
        det.write_det_xml(det.annotation_path(out, name),
                          det.DetAnnotation(folder, stem, image.shape[1], image.shape[0], objects))
        names.append(name)
    det.write_det_image_set(out / det.DET_IMAGE_SET, names)
    vid.write_map_vid(out / "devkit" / "data" / "map_vid.txt", synthetic_vid_classes())
    return names
