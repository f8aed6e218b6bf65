"""Checking a dataset folder before training on it: which layout it is, what it holds, and every error in it.

``check_data(path)`` detects the layout (Cityscapes, ImageNet VID, ImageNet DET, CocoVID, FlyingChairs), reads it
with the readers training and evaluation use (``featflow.data.formats``, ``VidDataset``, ``DetDataset``,
``CocoVidDataset``, ``CityscapesVideo``) and returns a ``DataReport``: counts per split, classes, distinct tracks per
video, motion categories, and every error found, each naming its file. An ILSVRC2015 folder holding ImageNet DET
beside VID (``data.det_share`` trains on both) reports DET as one more split, ``det``: its images, the boxes of the
VID classes and how many of other classes training leaves out. It collects errors instead of stopping at the first, so
one run shows all there is to fix. What the readers accept is fine here too: a VID frame without an annotation
file is counted, not an error (the readers give it no boxes).

Motion categories need the motion IoU of ``featflow.evaluation``, a layer above this one, so the caller passes it
in as ``motion`` (``featflow.evaluation.vid_map.motion_categories``; ``featflow check-data`` does).
"""

from __future__ import annotations

import json
import os
import re
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from featflow.data.cityscapes import CityscapesVideo
from featflow.data.formats import cityscapes as cs, flyingchairs as chairs, imagenet_det as det, vid
from featflow.data.formats.cocovid import CocoVidDataset
from featflow.data.formats.flo import read_flo
from featflow.data.imagenet_det import DetDataset
from featflow.data.io import read_image, read_label_image
from featflow.data.vid import VidDataset
from featflow.errors import FeatflowError, MissingInput
from featflow.structures import GroundTruth, VideoGroundTruth

T = TypeVar("T")

#: Layout names and how reports spell them.
LAYOUTS: dict[str, str] = {"cityscapes": "Cityscapes", "vid": "ImageNet VID", "det": "ImageNet DET",
                           "cocovid": "CocoVID", "flyingchairs": "FlyingChairs"}
#: The split name of an ILSVRC2015 folder's ImageNet DET images.
DET_SPLIT = "det"
MOTIONS = ("slow", "medium", "fast")
MAX_PRINTED_ERRORS = 20
#: A box may end one pixel past the image (xmax == width): the ILSVRC files have such boxes, and readers clip them.
BOX_SLACK = 1
COCOVID_KEYS = ("categories", "videos", "images", "annotations")
_IMAGE_KEYS = ("id", "video_id", "frame_id", "file_name", "width", "height")
_ANNOTATION_KEYS = ("image_id", "category_id", "instance_id", "bbox")
_FRAMES_FILE = re.compile(r"^VID_(?P<split>.+)_frames\.txt$")

#: Per frame of a video, the motion category of each box ('slow' / 'medium' / 'fast').
MotionFn = Callable[[VideoGroundTruth], list[np.ndarray]]


@dataclass
class SplitReport:
    """What one split holds. A split is made of ``unit``: videos (VID, CocoVID), images (ImageNet DET), snippets
    (Cityscapes) or pairs (FlyingChairs)."""

    name: str
    unit: str
    units: int = 0
    frames: int = 0
    labelled: int = 0  # frames with an annotation (VID, CocoVID), labelled frames (Cityscapes), flows (FlyingChairs)
    unannotated: int = 0  # VID, CocoVID: frames without an annotation (allowed: no boxes); DET: without a VID class
    boxes: int = 0
    left_out: int = 0  # DET: boxes of classes outside the class map (background to training)
    classes: dict[str, int] = field(default_factory=dict)  # boxes (VID, CocoVID) or labelled pixels per class
    class_frames: dict[str, int] = field(default_factory=dict)  # frames each class appears in
    tracks: list[int] = field(default_factory=list)  # distinct tracks per video
    motion: dict[str, int] = field(default_factory=dict)  # boxes per motion category; empty when not computed

    def motion_shares(self) -> dict[str, float]:
        """The share of boxes in each motion category (empty without motion categories or boxes)."""
        total = sum(self.motion.values())
        return {m: self.motion.get(m, 0) / total for m in MOTIONS} if total else {}

    def track_summary(self) -> dict[str, float] | None:
        """Distinct tracks per video: min, median and max (None without videos)."""
        if not self.tracks:
            return None
        return {"min": min(self.tracks), "median": statistics.median(self.tracks), "max": max(self.tracks)}

    def counts_text(self) -> str:
        """The split's counts in words, e.g. '2 videos, 60 frames (3 without annotation), 140 boxes'."""
        units, frames = _n(self.units, self.unit[:-1], self.unit), _n(self.frames, "frame")
        if self.unit == "videos":
            return f"{units}, {frames} ({self.unannotated} without annotation), {_n(self.boxes, 'box', 'boxes')}"
        if self.unit == "images":
            return (f"{units} ({self.unannotated} without a box of the class map), {_n(self.boxes, 'box', 'boxes')} "
                    f"({self.left_out} of other classes left out)")
        if self.unit == "snippets":
            return f"{units}, {frames}, {_n(self.labelled, 'labelled frame')}"
        return f"{units}, {frames}, {_n(self.labelled, 'flow')}"

    def to_json(self) -> dict:
        return {"unit": self.unit, "units": self.units, "frames": self.frames, "labelled": self.labelled,
                "unannotated": self.unannotated, "boxes": self.boxes, "left_out": self.left_out,
                "classes": dict(self.classes),
                "class_frames": dict(self.class_frames), "tracks": self.track_summary(),
                "motion": dict(self.motion), "motion_shares": self.motion_shares()}


@dataclass
class DataReport:
    """The result of ``check_data``: the layout, where its classes come from, one ``SplitReport`` per split, and
    every error found (each naming its file). ``class_unit`` says what ``SplitReport.classes`` counts."""

    layout: str
    root: Path
    class_map: str
    class_unit: str = ""  # 'boxes', 'pixels', or '' (FlyingChairs: no classes)
    splits: list[SplitReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict:
        return {"layout": self.layout, "root": str(self.root), "class_map": self.class_map,
                "class_unit": self.class_unit, "ok": self.ok, "errors": list(self.errors),
                "splits": {s.name: s.to_json() for s in self.splits}}

    def lines(self, max_errors: int = MAX_PRINTED_ERRORS) -> list[str]:
        """The report as printed: layout, counts per split, tables of classes, tracks and motion, then the errors
        (the first ``max_errors`` of them)."""
        out = [f"{LAYOUTS[self.layout]} layout: {self.root}", f"classes: {self.class_map}"]
        out += [f"  {s.name}: {s.counts_text()}" for s in self.splits]
        splits = [s for s in self.splits if s.classes]
        if splits:
            names = list(dict.fromkeys(c for s in splits for c in s.classes))  # CocoVID files may differ
            if self.class_unit == "pixels":
                cells = {s.name: [f"{s.classes.get(c, 0)} ({s.class_frames.get(c, 0)})" for c in names]
                         for s in splits}
                out += _table("labelled pixels (frames) per class", names, cells)
            else:
                out += _table(f"{self.class_unit} per class", names,
                              {s.name: [str(s.classes.get(c, 0)) for c in names] for s in splits})
        tracks = {s.name: s.track_summary() for s in self.splits if s.tracks}
        if tracks:
            out += _table("distinct tracks per video", ["min / median / max"],
                          {name: [f"{t['min']} / {t['median']:g} / {t['max']}"] for name, t in tracks.items()})
        shares = {s.name: s.motion_shares() for s in self.splits if s.motion_shares()}
        if shares:
            out += _table("motion (share of boxes)", list(MOTIONS),
                          {name: [f"{100 * share[m]:.1f}%" for m in MOTIONS] for name, share in shares.items()})
        return out + error_lines(self.errors, max_errors)


def error_lines(errors: list[str], max_errors: int = MAX_PRINTED_ERRORS) -> list[str]:
    """'no errors found', or the count and the first ``max_errors`` errors with '... and N more'."""
    if not errors:
        return ["no errors found"]
    out = [f"{_n(len(errors), 'error')}:"] + [f"  {e}" for e in errors[:max_errors]]
    return out + ([f"  ... and {len(errors) - max_errors} more"] if len(errors) > max_errors else [])


def _n(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def _table(title: str, rows: list[str], columns: dict[str, list[str]]) -> list[str]:
    """A text table: a title line with one column per split, then one line per row name, cells right-aligned."""
    first = max([len(title)] + [len(r) + 2 for r in rows])
    widths = {name: max([len(name)] + [len(c) for c in cells]) for name, cells in columns.items()}
    out = [title.ljust(first) + "".join(f"  {name:>{widths[name]}}" for name in columns)]
    for i, row in enumerate(rows):
        cells = "".join(f"  {column[i]:>{widths[name]}}" for name, column in columns.items())
        out.append(f"  {row}".ljust(first) + cells)
    return out


def _named(path: Path, err: Exception) -> str:
    """An error's message, prefixed by the file it is about unless it names it already."""
    text = str(err)
    return text if str(path) in text else f"{path}: {text}"


def _opened(open_data: Callable[[], T], errors: list[str], path: Path | None = None) -> T | None:
    """``open_data()``, or None with its error recorded (named after ``path`` when given)."""
    try:
        return open_data()
    except FeatflowError as err:
        errors.append(_named(path, err) if path is not None else str(err))
        return None


def _decoded_size(path: Path, errors: list[str]) -> tuple[int, int] | None:
    """(height, width) of an image, or None with the error recorded when it is missing or cannot be decoded."""
    image = _opened(lambda: read_image(path), errors, path)
    return None if image is None else image.shape[:2]


def _add_splits(report: "DataReport", names: list[str], missing: str,
                check: Callable[[str], "SplitReport | None"]) -> None:
    """Check each named split into ``report`` (a split that cannot be read at all adds only its error);
    ``missing`` is the error when there is no split."""
    if not names:
        report.errors.append(missing)
    for name in names:
        split_report = check(name)
        if split_report is not None:
            report.splits.append(split_report)


def _bar(total: int, split: str, unit: str, progress: bool) -> tqdm:
    return tqdm(total=total, desc=f"check {split}", unit=unit, disable=not progress, leave=False)


def _choose(found: Iterable[str], split: str | None, root: Path) -> list[str]:
    """The splits to check: every one found, or ``split`` alone (which must be among them)."""
    found = sorted(set(found))
    if split is None:
        return found
    if split not in found:
        raise FeatflowError(f"{root} has no split {split!r} (found: {', '.join(found) or 'none'})")
    return [split]


# ---------------------------------------------------------------------------------------------- layout detection


def _load_cocovid(path: Path) -> dict | None:
    """A JSON file's content when it is a CocoVID dict (it has every top-level key), else None."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and all(k in doc for k in COCOVID_KEYS) else None


def _cocovid_files(folder: Path) -> list[tuple[Path, dict]]:
    """The CocoVID files in ``folder`` or its ``annotations/`` (mmtracking's place), with their content."""
    found = []
    for path in sorted(folder.glob("*.json")) + sorted(folder.glob("annotations/*.json")):
        doc = _load_cocovid(path)
        if doc is not None:
            found.append((path, doc))
    return found


def _has_any(folder: Path, pattern: str) -> bool:
    return next(iter(folder.glob(pattern)), None) is not None


def _detect(path: Path) -> tuple[str, list[tuple[Path, dict]]]:
    """(layout, CocoVID files and their content) of ``path``; MissingInput when it is no layout featflow reads."""
    if path.is_file():
        if path.suffix != ".json":
            raise MissingInput(f"{path} is a file but not a CocoVID .json; give a dataset folder or a CocoVID file")
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise FeatflowError(f"{path}: not a readable CocoVID JSON file ({err})") from None
        missing = [k for k in COCOVID_KEYS if not isinstance(doc, dict) or k not in doc]
        if missing:
            raise FeatflowError(f"{path}: not a CocoVID file, it lacks {missing}")
        return "cocovid", [(path, doc)]
    if not path.is_dir():
        raise MissingInput(f"no such file or folder: {path}")
    if any((path / d / "VID").is_dir() for d in ("Data", "Annotations", "ImageSets")):
        return "vid", []
    if _has_det(path):
        return "det", []
    if any((path / d).is_dir() for d in ("gtFine", "leftImg8bit_sequence", "leftImg8bit")):
        return "cityscapes", []
    if (path / chairs.SPLIT_FILE).is_file() or _has_any(path / "data", "*_img1.ppm"):
        return "flyingchairs", []
    files = _cocovid_files(path)
    if files:
        return "cocovid", files
    raise MissingInput(f"{path} is not a dataset layout featflow reads (Cityscapes: gtFine/, leftImg8bit_sequence/; "
                       f"ImageNet VID: Data/VID/, Annotations/VID/; ImageNet DET: Data/DET/, {det.DET_IMAGE_SET}; "
                       f"CocoVID: a .json file; FlyingChairs: {chairs.SPLIT_FILE})")


def detect_layout(path: str | os.PathLike) -> str:
    """'cityscapes', 'vid', 'det', 'cocovid' or 'flyingchairs'; MissingInput when ``path`` is none of them (a folder
    with both ImageNet VID and DET is 'vid', DET one of its splits)."""
    return _detect(Path(path))[0]


def check_data(path: str | os.PathLike, split: str | None = None, *, images: str | os.PathLike | None = None,
               motion: MotionFn | None = None, decode: bool = True, progress: bool = False) -> DataReport:
    """Detect the layout of ``path`` and check it: every split, or ``split`` alone.

    ``images``: the folder a CocoVID file's image names start in (default: a ``Data/VID`` beside the file or one
    level up, else the file's folder). ``motion`` gives VID and CocoVID boxes their motion categories (none
    without it). ``decode=False`` checks that images exist without decoding them (much faster on a real data set).
    """
    path = Path(path)
    layout, files = _detect(path)
    if layout in ("vid", "det"):
        return _check_vid(path, layout, split, motion, decode, progress)
    if layout == "cocovid":
        return _check_cocovid(path, files, split, images, motion, decode, progress)
    if layout == "cityscapes":
        return _check_cityscapes(path, split, decode, progress)
    return _check_chairs(path, split, decode, progress)


# ---------------------------------------------------------------------------------------------- boxes and tracks


@dataclass
class _FrameBoxes:
    """One frame's valid boxes, as the readers give them (inclusive pixels, 1-based labels)."""

    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    tracks: list[int] = field(default_factory=list)

    def truth(self) -> GroundTruth:
        return GroundTruth(np.array(self.boxes, np.float32).reshape(-1, 4), np.array(self.labels, np.int64),
                           np.array(self.tracks, np.int64))


def _outside(box: Iterable[float], width: int, height: int) -> bool:
    x1, y1, x2, y2 = box
    return x1 < 0 or y1 < 0 or x2 > width - 1 + BOX_SLACK or y2 > height - 1 + BOX_SLACK


def _add_video(report: SplitReport, frames: list[_FrameBoxes], class_names: list[str],
               motion: MotionFn | None) -> None:
    """Count one video's boxes per class, its distinct tracks, and (with ``motion``) its boxes per category."""
    report.units += 1
    for frame in frames:
        report.boxes += len(frame.labels)
        for label in frame.labels:
            report.classes[class_names[label - 1]] += 1
        for label in set(frame.labels):
            report.class_frames[class_names[label - 1]] += 1
    report.tracks.append(len({t for frame in frames for t in frame.tracks}))
    if motion is not None:
        for m in MOTIONS:
            report.motion.setdefault(m, 0)
        for names in motion(VideoGroundTruth.from_frames([frame.truth() for frame in frames])):
            for m in names:
                report.motion[str(m)] += 1


def _box_split(name: str, class_names: list[str]) -> SplitReport:
    return SplitReport(name, "videos", classes=dict.fromkeys(class_names, 0),
                       class_frames=dict.fromkeys(class_names, 0))


# ---------------------------------------------------------------------------------------------- ImageNet VID


def _vid_splits(root: Path) -> set[str]:
    found = {p.name for d in ("Data", "Annotations") for p in (root / d / "VID").glob("*") if p.is_dir()}
    found |= {m["split"] for p in (root / "ImageSets" / "VID").glob("VID_*_frames.txt")
              if (m := _FRAMES_FILE.match(p.name))}
    return found


def _xml_path(data: VidDataset, v: int, t: int) -> Path:
    video = data.videos[v]
    return data.root / "Annotations" / "VID" / data.split / video.name / f"{video.frames[t]}.xml"


def _vid_frame(data: VidDataset, v: int, t: int, listed: Path | None, decode: bool, errors: list[str]) -> tuple[
        _FrameBoxes, bool]:
    """One VID frame: its valid boxes, and whether it has an annotation file; its errors recorded."""
    image = data.image_path(v, t)
    size = None
    if listed is not None and not image.is_file():
        errors.append(f"{image}: listed in {listed} but missing")
    elif decode:
        size = _decoded_size(image, errors)
    xml = _xml_path(data, v, t)
    frame = _FrameBoxes()
    if not xml.is_file():
        return frame, False
    try:
        ann = vid.read_vid_xml(xml)
    except FeatflowError as err:
        errors.append(_named(xml, err))
        return frame, True
    if size is not None and size != (ann.height, ann.width):
        errors.append(f"{image}: the image is {size[1]}x{size[0]} but {xml.name} says {ann.width}x{ann.height}")
    unknown = sorted({o.name for o in ann.objects} - set(data.class_index))
    if unknown:
        errors.append(f"{xml}: classes {unknown} are not in the class map ({len(data.classes)} classes)")
    for obj in ann.objects:
        if _outside(obj.box, ann.width, ann.height):
            errors.append(f"{xml}: box {obj.box} of track {obj.track_id} is outside the {ann.width}x{ann.height} image")
        elif obj.name in data.class_index:
            frame.boxes.append(obj.box)
            frame.labels.append(data.class_index[obj.name])
            frame.tracks.append(obj.track_id)
    repeated = sorted({t for t in frame.tracks if frame.tracks.count(t) > 1})
    if repeated:
        errors.append(f"{xml}: track ids {repeated} appear more than once in the frame")
    return frame, True


def _orphan_annotations(data: VidDataset, seen: set[Path], errors: list[str]) -> None:
    """Annotation files of the split that no listed frame reads and whose image does not exist."""
    base = data.root / "Annotations" / "VID" / data.split
    for xml in sorted(base.rglob("*.xml")):
        image = data.root / "Data" / "VID" / data.split / xml.relative_to(base).with_suffix(".JPEG")
        if xml not in seen and not image.is_file():
            errors.append(f"{xml}: annotation without an image ({image} does not exist)")


def _check_vid_split(root: Path, split: str, motion: MotionFn | None, decode: bool, progress: bool,
                     errors: list[str]) -> SplitReport | None:
    data = _opened(lambda: VidDataset(root, split), errors)
    if data is None:
        return None
    frames_file = root / "ImageSets" / "VID" / f"VID_{split}_frames.txt"
    listed = frames_file if frames_file.is_file() else None
    report = _box_split(split, data.class_names)
    seen: set[Path] = set()
    with _bar(sum(len(v.frames) for v in data.videos), split, "frame", progress) as bar:
        for v, video in enumerate(data.videos):
            frames = []
            for t in range(len(video.frames)):
                frame, annotated = _vid_frame(data, v, t, listed, decode, errors)
                seen.add(_xml_path(data, v, t))
                frames.append(frame)
                report.labelled += annotated
                report.unannotated += not annotated
                bar.update()
            report.frames += len(frames)
            _add_video(report, frames, data.class_names, motion)
    _orphan_annotations(data, seen, errors)
    return report


def _has_det(root: Path) -> bool:
    return (root / "Data" / "DET").is_dir() or (root / "Annotations" / "DET").is_dir() or \
        (root / det.DET_IMAGE_SET).is_file()


def _det_image(data: DetDataset, v: int, decode: bool, report: SplitReport, errors: list[str]) -> None:
    """One listed DET image: it exists (and decodes at its annotation's size), its annotation reads, its boxes lie
    inside it; its boxes of the class map counted, the others as left out."""
    image = data.image_path(v)
    size = None
    if not image.is_file():
        errors.append(f"{image}: listed in {data.image_set} but missing")
    elif decode:
        size = _decoded_size(image, errors)
    xml = data.annotation_path(v)
    try:
        ann = data.annotation(v)
    except FeatflowError as err:
        errors.append(_named(xml, err))
        return
    if size is not None and size != (ann.height, ann.width):
        errors.append(f"{image}: the image is {size[1]}x{size[0]} but {xml.name} says {ann.width}x{ann.height}")
    labels = []
    for obj in ann.objects:
        if _outside(obj.box, ann.width, ann.height):
            errors.append(f"{xml}: box {obj.box} of {obj.name} is outside the {ann.width}x{ann.height} image")
        elif obj.name in data.class_index:
            labels.append(data.class_index[obj.name])
        else:
            report.left_out += 1
    report.boxes += len(labels)
    report.labelled += bool(labels)
    report.unannotated += not labels
    for label in labels:
        report.classes[data.class_names[label - 1]] += 1
    for label in set(labels):
        report.class_frames[data.class_names[label - 1]] += 1


def _check_det_split(root: Path, classes: tuple[tuple[str, str], ...], decode: bool, progress: bool,
                     errors: list[str]) -> SplitReport | None:
    """The ImageNet DET images of ``ImageSets/DET_train_30classes.txt``, read as ``DetDataset`` reads them."""
    data = _opened(lambda: DetDataset(root, classes), errors)
    if data is None:
        return None
    report = SplitReport(DET_SPLIT, "images", units=len(data), frames=len(data),
                         classes=dict.fromkeys(data.class_names, 0), class_frames=dict.fromkeys(data.class_names, 0))
    with _bar(len(data), DET_SPLIT, "image", progress) as bar:
        for v in range(len(data)):
            _det_image(data, v, decode, report, errors)
            bar.update()
    return report


def _check_vid(root: Path, layout: str, split: str | None, motion: MotionFn | None, decode: bool,
               progress: bool) -> DataReport:
    """An ILSVRC2015 folder: its VID splits (layout 'vid') and its ImageNet DET images, when it has them."""
    errors: list[str] = []
    map_file = root / "devkit" / "data" / "map_vid.txt"
    classes = vid.VID_CLASSES
    if map_file.is_file():
        try:
            classes = vid.read_map_vid(map_file)
            class_map = f"{map_file} ({_n(len(classes), 'class', 'classes')})"
        except FeatflowError as err:
            errors.append(str(err))
            class_map = f"{map_file} (unreadable)"
    else:
        class_map = f"the {len(vid.VID_CLASSES)} ImageNet VID classes (no devkit/data/map_vid.txt)"
    report = DataReport(layout, root, class_map, "boxes", errors=errors)
    found = _vid_splits(root) if layout == "vid" else set()
    if _has_det(root):
        found.add(DET_SPLIT)

    def check(name: str) -> SplitReport | None:
        if name == DET_SPLIT:
            return _check_det_split(root, classes, decode, progress, errors)
        return _check_vid_split(root, name, motion, decode, progress, errors)

    names = sorted(_choose(found, split, root), key=lambda name: name == DET_SPLIT)  # VID's splits, then DET
    _add_splits(report, names, f"{root / 'Data' / 'VID'}: no split folders (train, val, ...)", check)
    report.errors = list(dict.fromkeys(errors))  # a broken class map fails every split with the same message
    return report


# ---------------------------------------------------------------------------------------------- CocoVID


def _cocovid_structure(path: Path, doc: dict, errors: list[str]) -> bool:
    """Check the entries ``CocoVidDataset`` relies on (categories, videos, images); False when it cannot read them."""
    before = len(errors)
    for n, c in enumerate(doc["categories"]):
        if not isinstance(c, dict) or not {"id", "name"} <= c.keys():
            errors.append(f"{path}: categories[{n}] lacks id or name")
    video_ids = {v.get("id") for v in doc["videos"] if isinstance(v, dict)}
    for n, v in enumerate(doc["videos"]):
        if not isinstance(v, dict) or not {"id", "name"} <= v.keys():
            errors.append(f"{path}: videos[{n}] lacks id or name")
    image_ids: set[Any] = set()
    for n, im in enumerate(doc["images"]):
        missing = [k for k in _IMAGE_KEYS if not isinstance(im, dict) or k not in im]
        if missing:
            errors.append(f"{path}: images[{n}] lacks {missing}")
        elif im["video_id"] not in video_ids:
            errors.append(f"{path}: image {im['id']} belongs to video {im['video_id']}, which is not among its videos")
        elif im["id"] in image_ids:
            errors.append(f"{path}: image id {im['id']} appears twice")
        else:
            image_ids.add(im["id"])
    return len(errors) == before


def _cocovid_boxes(path: Path, doc: dict, num_classes: int, errors: list[str]) -> dict[Any, _FrameBoxes]:
    """The valid boxes of each image id (inclusive pixels: [x, y, w, h] ends at x + w); errors recorded."""
    images = {im["id"]: im for im in doc["images"]}
    frames: dict[Any, _FrameBoxes] = {}
    for n, a in enumerate(doc["annotations"]):
        missing = [k for k in _ANNOTATION_KEYS if not isinstance(a, dict) or k not in a]
        where = f"{path}: annotation {a.get('id', n) if isinstance(a, dict) else n}"
        if missing:
            errors.append(f"{where} lacks {missing}")
            continue
        image = images.get(a["image_id"])
        bbox = a["bbox"]
        if image is None:
            errors.append(f"{where}: image {a['image_id']} is not among its images")
        elif not (isinstance(a["category_id"], int) and 1 <= a["category_id"] <= num_classes):
            errors.append(f"{where}: category {a['category_id']} is not among its {num_classes} categories")
        elif not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(x, (int, float)) for x in bbox)):
            errors.append(f"{where}: bbox {bbox!r} is not [x, y, w, h]")
        elif bbox[2] < 0 or bbox[3] < 0:
            errors.append(f"{where}: empty box {bbox}")
        elif _outside((bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]), image["width"], image["height"]):
            errors.append(f"{where}: box {bbox} is outside the {image['width']}x{image['height']} image "
                          f"{image['file_name']}")
        else:
            frame = frames.setdefault(a["image_id"], _FrameBoxes())
            frame.boxes.append((bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]))
            frame.labels.append(a["category_id"])
            frame.tracks.append(int(a["instance_id"]))
    return frames


def _image_root(path: Path, images: str | os.PathLike | None) -> Path:
    """Where a CocoVID file's image names start: ``images``, else a Data/VID beside the file or one level up."""
    if images is not None:
        return Path(images)
    for folder in (path.parent, path.parent.parent):
        if (folder / "Data" / "VID").is_dir():
            return folder / "Data" / "VID"
    return path.parent


def _check_cocovid_image(image: Path, entry: dict, name: str, decode: bool, errors: list[str]) -> None:
    """One image of a CocoVID file exists (and decodes, at the size the file gives)."""
    if not image.is_file():
        errors.append(f"{image}: listed in {name} but missing")
    elif decode and (size := _decoded_size(image, errors)) is not None and size != (entry["height"], entry["width"]):
        errors.append(f"{image}: the image is {size[1]}x{size[0]} but {name} says {entry['width']}x{entry['height']}")


def _check_cocovid_file(path: Path, doc: dict, image_root: Path, motion: MotionFn | None, decode: bool,
                        progress: bool, errors: list[str]) -> SplitReport | None:
    if not _cocovid_structure(path, doc, errors):
        return None
    data = _opened(lambda: CocoVidDataset(path, image_root), errors, path)
    if data is None:
        return None
    boxes = _cocovid_boxes(path, doc, len(data.classes), errors)
    images = {im["id"]: im for im in doc["images"]}
    report = _box_split(path.stem, data.class_names)
    paths = [data.image_path(v, t) for v, video in enumerate(data.videos) for t in range(len(video.frames))]
    found = any(p.is_file() for p in paths)
    if paths and not found:  # the wrong image folder: one error, not one per image
        errors.append(f"{path}: none of its {len(paths)} images is under {image_root} (give the folder its file "
                      f"names start in: --images)")
    with _bar(len(paths), path.stem, "frame", progress) as bar:
        for v, video in enumerate(data.videos):
            frames = []
            for t, image_id in enumerate(video.frame_ids):
                if found:
                    _check_cocovid_image(data.image_path(v, t), images[image_id], path.name, decode, errors)
                frames.append(boxes.get(image_id, _FrameBoxes()))
                report.labelled += image_id in boxes
                report.unannotated += image_id not in boxes
                bar.update()
            report.frames += len(frames)
            _add_video(report, frames, data.class_names, motion)
    return report


def _check_cocovid(path: Path, files: list[tuple[Path, dict]], split: str | None, images: str | os.PathLike | None,
                   motion: MotionFn | None, decode: bool, progress: bool) -> DataReport:
    if path.is_dir() and split is not None:
        files = [(p, doc) for p, doc in files if p.stem == split or p.stem.endswith(f"_{split}")]
        if not files:
            raise FeatflowError(f"{path} has no CocoVID file for split {split!r} (named {split}.json or "
                                f"*_{split}.json)")
    class_map = "the categories of " + ", ".join(p.name for p, _ in files)
    report = DataReport("cocovid", path, class_map, "boxes")
    for file, doc in files:
        split_report = _check_cocovid_file(file, doc, _image_root(file, images), motion, decode, progress,
                                           report.errors)
        if split_report is not None:
            report.splits.append(split_report)
    return report


# ---------------------------------------------------------------------------------------------- Cityscapes


def _label_table(root: Path, errors: list[str]) -> tuple[cs.LabelTable, str]:
    """The folder's label table (Cityscapes' when it has none, or when its own is broken: an error)."""
    path = root / cs.LABEL_TABLE_FILE
    try:
        table = cs.load_label_table(root)
    except FeatflowError as err:
        errors.append(_named(path, err))
        return cs.CITYSCAPES, f"Cityscapes' label table ({path} is broken)"
    source = str(path) if path.is_file() else f"Cityscapes' label table (no {cs.LABEL_TABLE_FILE})"
    return table, f"{source} ({_n(table.num_classes, 'evaluated class', 'evaluated classes')})"


def _check_label(video: CityscapesVideo, i: int, known: set[int], report: SplitReport,
                 errors: list[str]) -> tuple[int, int] | None:
    """Read labelled frame ``i``, count its pixels per class; -> its (height, width), None when unreadable."""
    path = video.label_path(i)
    try:
        ids = read_label_image(path)
    except FeatflowError as err:
        errors.append(_named(path, err))
        return None
    unknown = sorted(set(np.unique(ids).tolist()) - known)
    if unknown:
        errors.append(f"{path}: label ids {unknown} are not in the label table")
    train = video.table.id_to_train_id()[np.clip(ids, 0, 255)]
    pixels = np.bincount(train[train != cs.IGNORE_LABEL], minlength=video.num_classes)
    for name, count in zip(video.table.class_names, pixels.tolist()):
        report.classes[name] += count
        report.class_frames[name] += count > 0
    return ids.shape[:2]


def _check_snippet(video: CityscapesVideo, i: int, label_size: tuple[int, int] | None, decode: bool,
                   errors: list[str]) -> None:
    """Every frame of snippet ``i`` exists (and decodes: the labelled one at its label's size, the others at the
    labelled one's)."""
    s = video.snippets[i]
    labelled = video.frame_path(i, s.frame)
    size = _decoded_size(labelled, errors) if decode and labelled.is_file() else None
    if size is not None and label_size is not None and size != label_size:
        errors.append(f"{video.label_path(i)}: the label is {label_size[1]}x{label_size[0]} but its frame "
                      f"{labelled.name} is {size[1]}x{size[0]}")
    for frame in range(s.frame - video.frames_before, s.frame + video.frames_after + 1):
        path = video.frame_path(i, frame)
        if not path.is_file():
            errors.append(f"{path}: missing (frame {frame} of the 30-frame snippet of labelled frame "
                          f"{cs.frame_stem(s.city, s.seq, s.frame)})")
        elif decode and frame != s.frame and (other := _decoded_size(path, errors)) is not None \
                and size is not None and other != size:
            errors.append(f"{path}: the image is {other[1]}x{other[0]} but the snippet's labelled frame is "
                          f"{size[1]}x{size[0]}")


def _check_cityscapes_split(root: Path, split: str, table: cs.LabelTable, decode: bool, progress: bool,
                            errors: list[str]) -> SplitReport | None:
    try:
        video = CityscapesVideo(root, split, table, check_frames=False)
    except FeatflowError as err:
        errors.append(str(err))
        return None
    report = SplitReport(split, "snippets", units=len(video), frames=len(video) * cs.SNIPPET_LENGTH,
                         labelled=len(video), classes=dict.fromkeys(table.class_names, 0),
                         class_frames=dict.fromkeys(table.class_names, 0))
    sequence = root / "leftImg8bit_sequence" / split
    if not sequence.is_dir():
        errors.append(f"{sequence}: missing (the 30-frame snippets around each labelled frame)")
    known = {label.id for label in table.labels}
    with _bar(len(video), split, "snippet", progress) as bar:
        for i in range(len(video)):
            size = _check_label(video, i, known, report, errors)
            if sequence.is_dir():
                _check_snippet(video, i, size, decode, errors)
            bar.update()
    return report


def _check_cityscapes(root: Path, split: str | None, decode: bool, progress: bool) -> DataReport:
    errors: list[str] = []
    table, class_map = _label_table(root, errors)
    report = DataReport("cityscapes", root, class_map, "pixels", errors=errors)
    labels = root / "gtFine"
    _add_splits(report, _choose((p.name for p in labels.glob("*") if p.is_dir()), split, root),
                f"{labels}: no split folders with labels (gtFine/train/CITY/*_gtFine_labelIds.png, ...)",
                lambda name: _check_cityscapes_split(root, name, table, decode, progress, errors))
    return report


# ---------------------------------------------------------------------------------------------- FlyingChairs


def _chairs_codes(root: Path, errors: list[str]) -> list[str]:
    """The split file's codes, one per pair ('1' training, '2' validation; others are errors)."""
    split_file = root / chairs.SPLIT_FILE
    if not split_file.is_file():
        errors.append(f"{split_file}: missing (it says which pairs are training and which validation)")
        return []
    codes = split_file.read_text().split()
    for number, code in enumerate(codes, 1):
        if code not in ("1", "2"):
            errors.append(f"{split_file}: line {number} is {code!r}, expected 1 or 2")
    return codes


def _check_pair(pair: chairs.ChairsPair, decode: bool, errors: list[str]) -> bool:
    """One pair's files exist (and read, at one size); -> whether its flow file exists."""
    missing = [p for p in (pair.image1, pair.image2, pair.flow) if not p.is_file()]
    errors.extend(f"{p}: missing (pair {pair.image1.name.split('_')[0]})" for p in missing)
    if decode and not missing:
        sizes = [_decoded_size(pair.image1, errors), _decoded_size(pair.image2, errors)]
        try:
            sizes.append(read_flo(pair.flow).shape[:2])
        except FeatflowError as err:
            errors.append(_named(pair.flow, err))
        if None not in sizes and len(set(sizes)) > 1:
            errors.append(f"{pair.flow}: the pair's images and flow differ in size "
                          f"({', '.join(f'{w}x{h}' for h, w in sizes)})")
    return pair.flow.is_file()


def _check_chairs(root: Path, split: str | None, decode: bool, progress: bool) -> DataReport:
    errors: list[str] = []
    report = DataReport("flyingchairs", root, "none (flow pairs)", errors=errors)
    codes = _chairs_codes(root, errors)
    present = {name for name, code in chairs.SPLIT_CODES.items() if str(code) in codes}
    if split is not None and split not in chairs.SPLIT_CODES:
        raise FeatflowError(f"unknown FlyingChairs split {split!r}; choose train or val")
    for name in [split] if split is not None else sorted(present, key=chairs.SPLIT_CODES.get):
        numbers = [n for n, code in enumerate(codes, 1) if code == str(chairs.SPLIT_CODES[name])]
        split_report = SplitReport(name, "pairs", units=len(numbers), frames=2 * len(numbers))
        with _bar(len(numbers), name, "pair", progress) as bar:
            for number in numbers:
                split_report.labelled += _check_pair(chairs.pair_paths(root, number), decode, errors)
                bar.update()
        report.splits.append(split_report)
    return report
