"""Cityscapes video layout and label tables.

- ``leftImg8bit_sequence/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png``: 30-frame snippets;
- ``gtFine/{split}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_labelIds.png`` (and ``_instanceIds.png``)
  for the 20th frame of each snippet (snippet = labelled frame f-19 .. f+10);
- label ids map to train ids (19 evaluated classes; every other id to 255, ignored).

A synthetic export writes its own label table as ``featflow_labels.json`` at the dataset root, in the
same form (name, id, trainId, color), so one loader reads both.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featflow.errors import FeatflowError
from featflow.utils.io import write_json

IGNORE_LABEL = 255
SNIPPET_LENGTH = 30
LABELLED_INDEX = 19  # the 20th frame of a snippet
LABEL_TABLE_FILE = "featflow_labels.json"


@dataclass(frozen=True)
class Label:
    name: str
    id: int
    train_id: int  # 255 = not evaluated
    color: tuple[int, int, int]


#: The Cityscapes labels (id, train id, colour) of the official table.
CITYSCAPES_LABELS: tuple[Label, ...] = (
    Label("unlabeled", 0, 255, (0, 0, 0)), Label("ego vehicle", 1, 255, (0, 0, 0)),
    Label("rectification border", 2, 255, (0, 0, 0)), Label("out of roi", 3, 255, (0, 0, 0)),
    Label("static", 4, 255, (0, 0, 0)), Label("dynamic", 5, 255, (111, 74, 0)),
    Label("ground", 6, 255, (81, 0, 81)), Label("road", 7, 0, (128, 64, 128)),
    Label("sidewalk", 8, 1, (244, 35, 232)), Label("parking", 9, 255, (250, 170, 160)),
    Label("rail track", 10, 255, (230, 150, 140)), Label("building", 11, 2, (70, 70, 70)),
    Label("wall", 12, 3, (102, 102, 156)), Label("fence", 13, 4, (190, 153, 153)),
    Label("guard rail", 14, 255, (180, 165, 180)), Label("bridge", 15, 255, (150, 100, 100)),
    Label("tunnel", 16, 255, (150, 120, 90)), Label("pole", 17, 5, (153, 153, 153)),
    Label("polegroup", 18, 255, (153, 153, 153)), Label("traffic light", 19, 6, (250, 170, 30)),
    Label("traffic sign", 20, 7, (220, 220, 0)), Label("vegetation", 21, 8, (107, 142, 35)),
    Label("terrain", 22, 9, (152, 251, 152)), Label("sky", 23, 10, (70, 130, 180)),
    Label("person", 24, 11, (220, 20, 60)), Label("rider", 25, 12, (255, 0, 0)),
    Label("car", 26, 13, (0, 0, 142)), Label("truck", 27, 14, (0, 0, 70)),
    Label("bus", 28, 15, (0, 60, 100)), Label("caravan", 29, 255, (0, 0, 90)),
    Label("trailer", 30, 255, (0, 0, 110)), Label("train", 31, 16, (0, 80, 100)),
    Label("motorcycle", 32, 17, (0, 0, 230)), Label("bicycle", 33, 18, (119, 11, 32)),
)


@dataclass(frozen=True)
class LabelTable:
    labels: tuple[Label, ...]

    def __post_init__(self) -> None:
        ids = [label.id for label in self.labels]
        if len(set(ids)) != len(ids) or not all(0 <= i < 256 for i in ids):
            raise FeatflowError("label ids must be unique and in 0..255")
        train = sorted(label.train_id for label in self.labels if label.train_id != IGNORE_LABEL)
        if train != list(range(len(train))):
            raise FeatflowError(f"train ids must run 0..{len(train) - 1} without gaps, got {train}")

    @property
    def num_classes(self) -> int:
        """Number of evaluated classes (train ids 0..num_classes-1)."""
        return sum(label.train_id != IGNORE_LABEL for label in self.labels)

    @property
    def class_names(self) -> list[str]:
        named = sorted((label.train_id, label.name) for label in self.labels if label.train_id != IGNORE_LABEL)
        return [name for _, name in named]

    def id_to_train_id(self) -> np.ndarray:
        """(256,) uint8 lookup table: label id -> train id (255 for unknown ids)."""
        lut = np.full(256, IGNORE_LABEL, np.uint8)
        for label in self.labels:
            lut[label.id] = label.train_id
        return lut

    def train_id_to_id(self) -> np.ndarray:
        """(256,) uint8 lookup table: train id -> label id (255 -> the first ignored label's id)."""
        ignored = next((label.id for label in self.labels if label.train_id == IGNORE_LABEL), 0)
        lut = np.full(256, ignored, np.uint8)
        for label in self.labels:
            if label.train_id != IGNORE_LABEL:
                lut[label.train_id] = label.id
        return lut

    def to_json(self) -> dict:
        return {"labels": [{"name": l.name, "id": l.id, "trainId": l.train_id, "color": list(l.color)}
                           for l in self.labels]}

    @classmethod
    def from_json(cls, data: dict) -> "LabelTable":
        try:
            return cls(tuple(Label(str(d["name"]), int(d["id"]), int(d["trainId"]), tuple(d["color"]))
                             for d in data["labels"]))
        except (KeyError, TypeError, ValueError) as err:
            raise FeatflowError(f"malformed label table: {err}") from None


CITYSCAPES = LabelTable(CITYSCAPES_LABELS)


def write_label_table(root: str | os.PathLike, table: LabelTable) -> None:
    write_json(Path(root) / LABEL_TABLE_FILE, table.to_json())


def load_label_table(root: str | os.PathLike) -> LabelTable:
    """The dataset's own table if it has one (a synthetic export), else the Cityscapes table."""
    path = Path(root) / LABEL_TABLE_FILE
    if not path.is_file():
        return CITYSCAPES
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise FeatflowError(f"{path}: not valid JSON ({err})") from None
    return LabelTable.from_json(data)


def frame_stem(city: str, seq: int, frame: int) -> str:
    return f"{city}_{seq:06d}_{frame:06d}"


def sequence_image_path(root: str | os.PathLike, split: str, city: str, seq: int, frame: int) -> Path:
    return Path(root) / "leftImg8bit_sequence" / split / city / f"{frame_stem(city, seq, frame)}_leftImg8bit.png"


def image_path(root: str | os.PathLike, split: str, city: str, seq: int, frame: int) -> Path:
    return Path(root) / "leftImg8bit" / split / city / f"{frame_stem(city, seq, frame)}_leftImg8bit.png"


def label_path(root: str | os.PathLike, split: str, city: str, seq: int, frame: int, kind: str = "labelIds") -> Path:
    return Path(root) / "gtFine" / split / city / f"{frame_stem(city, seq, frame)}_gtFine_{kind}.png"
