"""ImageNet DET (ILSVRC2015) layout: per-image annotation XML and the image set the released DFF / FGFA code
trains from, mixed with ImageNet VID.

Layout under the ILSVRC2015 root folder (beside ``Data/VID`` and ``Annotations/VID``):
- ``Data/DET/train/{subdirs}/{image}.JPEG``, ``{subdirs}/{image}`` like ``ILSVRC2013_train/n02691156/n02691156_10002``
  or ``ILSVRC2014_train_0000/ILSVRC2014_train_00000663``;
- ``Annotations/DET/train/{subdirs}/{image}.xml``: the schema of a VID frame's XML without ``trackid`` (``size``,
  and per object ``name``, a WordNet id of any of DET's 200 classes, and ``bndbox``: xmin, ymin, xmax, ymax in
  inclusive pixels);
- ``ImageSets/DET_train_30classes.txt``: the DET training images that hold an object of the 30 VID classes, one
  ``train/{subdirs}/{image} {id}`` a line (ids from 1; the released file has 1 on every line). The DFF and FGFA
  code ship this list (``data/ILSVRC2015/ImageSets/``), ImageNet does not.

Of an image's objects only those of the VID classes are kept (``keep_classes``; ``vid.VID_CLASSES`` unless a VID
folder's own class map is given): DET's other classes are background, as in the released code.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from pathlib import Path

from featflow.data.formats.vid import (
    VID_CLASSES,
    _annotation_root,
    _box,
    _child,
    _fields,
    _int,
    _text,
    _xml_head,
    _xml_text,
)
from featflow.errors import FeatflowError, MissingInput
from featflow.utils.io import write_text

#: The image set, relative to the root: the DET images the released DFF / FGFA code mixes into VID training.
DET_IMAGE_SET = Path("ImageSets") / "DET_train_30classes.txt"


@dataclass(frozen=True)
class DetObject:
    name: str  # WordNet id
    box: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax (inclusive)


@dataclass(frozen=True)
class DetAnnotation:
    folder: str  # e.g. n02691156 (ILSVRC2013) or ILSVRC2014_train_0000
    filename: str  # the image's stem, e.g. n02691156_10002
    width: int
    height: int
    objects: tuple[DetObject, ...] = field(default_factory=tuple)


def image_path(root: str | os.PathLike, name: str) -> Path:
    """The image of an image-set entry ``name`` (``train/{subdirs}/{image}``)."""
    return Path(root) / "Data" / "DET" / f"{name}.JPEG"


def annotation_path(root: str | os.PathLike, name: str) -> Path:
    return Path(root) / "Annotations" / "DET" / f"{name}.xml"


def det_xml(ann: DetAnnotation) -> str:
    """The annotation as the XML text of an ILSVRC DET image."""
    root = _xml_head(ann.folder, ann.filename, "ILSVRC_2014", ann.width, ann.height)
    for obj in ann.objects:
        node = ET.SubElement(root, "object")
        _text(node, "name", obj.name)
        box = ET.SubElement(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.box):
            _text(box, tag, int(value))
    return _xml_text(root)


def write_det_xml(path: str | os.PathLike, ann: DetAnnotation) -> None:
    write_text(path, det_xml(ann))


def read_det_xml(path: str | os.PathLike) -> DetAnnotation:
    """Parse one DET annotation file; a missing file is ``MissingInput``, a malformed one ``FeatflowError``, each
    naming the file."""
    path = Path(path)
    root = _annotation_root(path)
    size = _child(root, "size", path)
    objects = tuple(DetObject((_child(node, "name", path).text or "").strip(), _box(node, path))
                    for node in root.findall("object"))
    return DetAnnotation(folder=(root.findtext("folder") or "").strip(),
                         filename=(root.findtext("filename") or "").strip(),
                         width=_int(size, "width", path), height=_int(size, "height", path), objects=objects)


def keep_classes(ann: DetAnnotation, classes: tuple[tuple[str, str], ...] = VID_CLASSES) -> DetAnnotation:
    """The annotation with only the objects of ``classes`` ((wnid, name), ...): the others are background."""
    wnids = {wnid for wnid, _ in classes}
    return replace(ann, objects=tuple(o for o in ann.objects if o.name in wnids))


def write_det_image_set(path: str | os.PathLike, names: list[str]) -> None:
    """An image set of ``names`` (``train/{subdirs}/{image}``), with running ids from 1."""
    write_text(path, "".join(f"{name} {i}\n" for i, name in enumerate(names, 1)))


def read_det_image_set(path: str | os.PathLike) -> list[tuple[str, int]]:
    """``ImageSets/DET_train_30classes.txt`` -> (``train/{subdirs}/{image}``, id) per line, in the file's order."""
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"no such image set: {path} (the ImageNet DET training images; it comes with the DFF / "
                           f"FGFA code as data/ILSVRC2015/ImageSets/{DET_IMAGE_SET.name})")
    rows = []
    for n, line, parts in _fields(path):
        name = parts[0]
        if (len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) < 1 or "/" not in name
                or name.startswith("/") or ".." in name.split("/")):
            raise FeatflowError(f"{path}:{n}: expected 'SPLIT/PATH ID' (e.g. 'train/ILSVRC2013_train/n02691156/"
                                f"n02691156_10002 1'), got {line!r}")
        rows.append((name, int(parts[1])))
    return rows
