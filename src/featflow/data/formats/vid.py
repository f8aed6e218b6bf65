"""ImageNet VID (ILSVRC2015) layout: per-frame annotation XML, image sets, class map.

Layout under a root folder:
- ``Data/VID/{split}/{video}/{frame:06d}.JPEG`` with ``video`` like
  ``ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000`` (train) or ``ILSVRC2015_val_00000000`` (val);
- ``Annotations/VID/{split}/{video}/{frame:06d}.xml``: size, and per object ``trackid``, ``name`` (a
  WordNet id), ``bndbox`` (xmin, ymin, xmax, ymax: inclusive pixel coordinates, so a box is
  xmax - xmin + 1 pixels wide), ``occluded``, ``generated``;
- ``ImageSets/VID/``: ``VID_val_frames.txt`` (``val/{video}/{frame:06d} {1-based id}``),
  ``VID_val_videos.txt`` (``val/{video} {first id} 0 {frames}``), ``val.txt``, ``VID_train_15frames.txt``
  (``train/{video} 1 {frame} {frames}``), ``train_{class}.txt``;
- ``devkit/data/map_vid.txt``: ``{wnid} {1-based index} {name}`` per class.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from featflow.errors import FeatflowError, MissingInput
from featflow.utils.io import write_text

#: The 30 ImageNet VID classes: (WordNet id, name), in the official order.
VID_CLASSES: tuple[tuple[str, str], ...] = (
    ("n02691156", "airplane"), ("n02419796", "antelope"), ("n02131653", "bear"), ("n02834778", "bicycle"),
    ("n01503061", "bird"), ("n02924116", "bus"), ("n02958343", "car"), ("n02402425", "cattle"),
    ("n02084071", "dog"), ("n02121808", "domestic_cat"), ("n02503517", "elephant"), ("n02118333", "fox"),
    ("n02510455", "giant_panda"), ("n02342885", "hamster"), ("n02374451", "horse"), ("n02129165", "lion"),
    ("n01674464", "lizard"), ("n02484322", "monkey"), ("n03790512", "motorcycle"), ("n02324045", "rabbit"),
    ("n02509815", "red_panda"), ("n02411705", "sheep"), ("n01726692", "snake"), ("n02355227", "squirrel"),
    ("n02129604", "tiger"), ("n04468005", "train"), ("n01662784", "turtle"), ("n04530566", "watercraft"),
    ("n02062744", "whale"), ("n02391049", "zebra"),
)


@dataclass(frozen=True)
class VidObject:
    track_id: int
    name: str  # WordNet id
    box: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax (inclusive)
    occluded: bool = False
    generated: bool = False


@dataclass(frozen=True)
class VidAnnotation:
    folder: str  # the video, e.g. ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000
    filename: str  # the frame, e.g. 000000
    width: int
    height: int
    objects: tuple[VidObject, ...] = field(default_factory=tuple)


def video_name(split: str, index: int) -> str:
    """The folder of the ``index``-th video of a split, as ILSVRC2015 names them."""
    if split == "train":
        return f"ILSVRC2015_VID_train_{index // 1000:04d}/ILSVRC2015_train_{index:08d}"
    return f"ILSVRC2015_{split}_{index:08d}"


def frame_name(frame: int) -> str:
    return f"{frame:06d}"


def _text(parent: ET.Element, tag: str, value: object) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = str(value)
    return child


def _xml_head(folder: str, filename: str, database: str, width: int, height: int) -> ET.Element:
    """The ``annotation`` element of an ILSVRC image (VID frame or DET image), without its objects."""
    root = ET.Element("annotation")
    _text(root, "folder", folder)
    _text(root, "filename", filename)
    _text(ET.SubElement(root, "source"), "database", database)
    size = ET.SubElement(root, "size")
    _text(size, "width", width)
    _text(size, "height", height)
    return root


def _xml_text(root: ET.Element) -> str:
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def vid_xml(ann: VidAnnotation) -> str:
    """The annotation as the XML text of an ILSVRC2015 VID frame."""
    root = _xml_head(ann.folder, ann.filename, "ILSVRC_2015", ann.width, ann.height)
    for obj in ann.objects:
        node = ET.SubElement(root, "object")
        _text(node, "trackid", obj.track_id)
        _text(node, "name", obj.name)
        box = ET.SubElement(node, "bndbox")
        xmin, ymin, xmax, ymax = obj.box
        for tag, value in (("xmax", xmax), ("xmin", xmin), ("ymax", ymax), ("ymin", ymin)):
            _text(box, tag, int(value))
        _text(node, "occluded", int(obj.occluded))
        _text(node, "generated", int(obj.generated))
    return _xml_text(root)


def write_vid_xml(path: str | os.PathLike, ann: VidAnnotation) -> None:
    write_text(path, vid_xml(ann))


def _child(node: ET.Element, tag: str, path: Path) -> ET.Element:
    child = node.find(tag)
    if child is None:
        raise FeatflowError(f"{path}: <{node.tag}> has no <{tag}>")
    return child


def _int(node: ET.Element, tag: str, path: Path) -> int:
    text = (_child(node, tag, path).text or "").strip()
    try:
        return int(float(text))
    except ValueError:
        raise FeatflowError(f"{path}: <{tag}> is {text!r}, not a number") from None


def _annotation_root(path: Path) -> ET.Element:
    """The ``<annotation>`` element of an ILSVRC annotation file (VID frames and DET images share the schema)."""
    if not path.is_file():
        raise MissingInput(f"no such annotation: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise FeatflowError(f"{path}: not valid XML ({err})") from None
    if root.tag != "annotation":
        raise FeatflowError(f"{path}: root element is <{root.tag}>, expected <annotation>")
    return root


def _box(node: ET.Element, path: Path) -> tuple[int, int, int, int]:
    """An ``<object>``'s ``<bndbox>`` as (xmin, ymin, xmax, ymax), inclusive pixels; an empty box is an error."""
    box = _child(node, "bndbox", path)
    xmin, ymin, xmax, ymax = (_int(box, tag, path) for tag in ("xmin", "ymin", "xmax", "ymax"))
    if xmax < xmin or ymax < ymin:
        raise FeatflowError(f"{path}: empty box ({xmin}, {ymin}, {xmax}, {ymax})")
    return xmin, ymin, xmax, ymax


def read_vid_xml(path: str | os.PathLike) -> VidAnnotation:
    """Parse one VID annotation file; missing or malformed fields raise ``ValueError``."""
    path = Path(path)
    root = _annotation_root(path)
    size = _child(root, "size", path)
    objects = []
    for node in root.findall("object"):
        objects.append(
            VidObject(
                track_id=_int(node, "trackid", path),
                name=(_child(node, "name", path).text or "").strip(),
                box=_box(node, path),
                occluded=bool(_int(node, "occluded", path)) if node.find("occluded") is not None else False,
                generated=bool(_int(node, "generated", path)) if node.find("generated") is not None else False,
            )
        )
    return VidAnnotation(
        folder=(root.findtext("folder") or "").strip(),
        filename=(root.findtext("filename") or "").strip(),
        width=_int(size, "width", path),
        height=_int(size, "height", path),
        objects=tuple(objects),
    )


def _fields(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line number, line, its whitespace-separated fields) for every non-empty line of a text list."""
    return [(n, line, line.split()) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]


def write_map_vid(path: str | os.PathLike, classes: tuple[tuple[str, str], ...]) -> None:
    write_text(path, "".join(f"{wnid} {i} {name}\n" for i, (wnid, name) in enumerate(classes, 1)))


def read_map_vid(path: str | os.PathLike) -> tuple[tuple[str, str], ...]:
    """``devkit/data/map_vid.txt`` -> ((wnid, name), ...) in index order."""
    path = Path(path)
    rows = []
    for n, line, parts in _fields(path):
        if len(parts) != 3 or not parts[1].isdigit():
            raise FeatflowError(f"{path}:{n}: expected 'WNID INDEX NAME', got {line!r}")
        rows.append((int(parts[1]), parts[0], parts[2]))
    rows.sort()
    if [r[0] for r in rows] != list(range(1, len(rows) + 1)):
        raise FeatflowError(f"{path}: class indices must run 1..{len(rows)}")
    return tuple((wnid, name) for _, wnid, name in rows)


def read_frame_list(path: str | os.PathLike) -> list[tuple[str, str, int]]:
    """``ImageSets/VID/VID_{split}_frames.txt`` (``{split}/{video}/{frame} {id}`` lines, ids 1-based) ->
    (video folder inside the split, frame name, frame id) per line, in the file's order."""
    path = Path(path)
    rows = []
    for n, line, parts in _fields(path):
        if len(parts) != 2 or not parts[1].isdigit() or parts[0].count("/") < 2:
            raise FeatflowError(f"{path}:{n}: expected 'SPLIT/VIDEO/FRAME ID', got {line!r}")
        folder, frame = parts[0].split("/", 1)[1].rsplit("/", 1)
        rows.append((folder, frame, int(parts[1])))
    return rows


def read_train_frames(path: str | os.PathLike) -> list[tuple[str, int]]:
    """``ImageSets/VID/VID_train_15frames.txt`` (``train/{video} 1 {frame} {frames}`` lines: the frames the released
    DFF / FGFA code trains on, 15 per video) -> (video folder inside the split, 0-based frame index) per line."""
    path = Path(path)
    rows = []
    for n, line, parts in _fields(path):
        if len(parts) != 4 or not all(p.isdigit() for p in parts[1:]) or "/" not in parts[0]:
            raise FeatflowError(f"{path}:{n}: expected 'SPLIT/VIDEO 1 FRAME FRAMES', got {line!r}")
        frame, frames = int(parts[2]), int(parts[3])
        if frame >= frames:
            raise FeatflowError(f"{path}:{n}: frame {frame} of a video of {frames} frames")
        rows.append((parts[0].split("/", 1)[1], frame))
    return rows
