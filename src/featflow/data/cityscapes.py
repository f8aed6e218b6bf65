"""Cityscapes video data: snippets of ``leftImg8bit_sequence`` frames around each ``gtFine`` label.

Reads the real dataset and the synthetic set written by ``featflow synth --format cityscapes`` through
the same code; the label table comes from the folder (``featflow_labels.json``) or is Cityscapes'.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featflow.data.formats import cityscapes as cs
from featflow.data.io import read_image, read_label_image
from featflow.errors import MissingInput

_LABEL_NAME = re.compile(r"^(?P<city>[^_]+)_(?P<seq>\d{6})_(?P<frame>\d{6})_gtFine_labelIds\.png$")


@dataclass(frozen=True)
class Snippet:
    city: str
    seq: int
    frame: int  # the labelled frame's number


class CityscapesVideo:
    """The labelled snippets of one split. ``image(i, frame)`` reads any frame of snippet ``i``
    (labelled frame - 19 .. + 10); ``label(i)`` the labelled frame's train ids (255 = ignored)."""

    frames_before = cs.LABELLED_INDEX  # 19 frames precede the labelled one
    frames_after = cs.SNIPPET_LENGTH - cs.LABELLED_INDEX - 1  # 10 follow it

    def __init__(self, root: str | os.PathLike, split: str, table: cs.LabelTable | None = None,
                 check_frames: bool = True) -> None:
        self.root, self.split = Path(root), split
        labels = self.root / "gtFine" / split
        if not labels.is_dir():
            raise MissingInput(f"{labels} does not exist: not a Cityscapes folder with a {split!r} split")
        self.table = table or cs.load_label_table(self.root)
        self._lut = self.table.id_to_train_id()
        snippets = []
        for path in sorted(labels.glob("*/*_gtFine_labelIds.png")):
            match = _LABEL_NAME.match(path.name)
            if match:
                snippets.append(Snippet(match["city"], int(match["seq"]), int(match["frame"])))
        if not snippets:
            raise MissingInput(f"no *_gtFine_labelIds.png files under {labels}")
        self.snippets = snippets
        if check_frames:
            for i, snippet in enumerate(snippets):
                for frame in range(snippet.frame - self.frames_before, snippet.frame + self.frames_after + 1):
                    path = self.frame_path(i, frame)
                    if not path.is_file():
                        raise MissingInput(f"snippet {snippet.city}_{snippet.seq:06d} lacks frame {path}")

    def __len__(self) -> int:
        return len(self.snippets)

    @property
    def num_classes(self) -> int:
        return self.table.num_classes

    def frame_path(self, index: int, frame: int) -> Path:
        s = self.snippets[index]
        if not s.frame - self.frames_before <= frame <= s.frame + self.frames_after:
            raise IndexError(f"frame {frame} is outside the snippet of labelled frame {s.frame}")
        return cs.sequence_image_path(self.root, self.split, s.city, s.seq, frame)

    def image(self, index: int, frame: int) -> np.ndarray:
        return read_image(self.frame_path(index, frame))

    def label_path(self, index: int) -> Path:
        s = self.snippets[index]
        return cs.label_path(self.root, self.split, s.city, s.seq, s.frame)

    def label(self, index: int) -> np.ndarray:
        """(H, W) uint8 train ids of the labelled frame."""
        return self._lut[read_label_image(self.label_path(index))]
