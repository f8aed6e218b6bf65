"""FlyingChairs layout: ``data/{n:05d}_img1.ppm``, ``_img2.ppm``, ``_flow.flo`` (n from 1) and
``FlyingChairs_train_val.txt`` with one line per pair: 1 = training, 2 = validation.

The flow maps each pixel of img1 to img2. In featflow's use img1 is the current frame and img2 the
key frame, so the flow is the current -> key displacement DFF warps with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from featflow.errors import FeatflowError, MissingInput

SPLIT_FILE = "FlyingChairs_train_val.txt"
SPLIT_CODES = {"train": 1, "val": 2}


@dataclass(frozen=True)
class ChairsPair:
    image1: Path
    image2: Path
    flow: Path


def pair_paths(root: str | os.PathLike, number: int) -> ChairsPair:
    """Paths of pair ``number`` (1-based)."""
    data = Path(root) / "data"
    return ChairsPair(data / f"{number:05d}_img1.ppm", data / f"{number:05d}_img2.ppm", data / f"{number:05d}_flow.flo")


def list_pairs(root: str | os.PathLike, split: str) -> list[ChairsPair]:
    """The pairs of ``split`` ('train' or 'val') listed by the split file, checked to exist."""
    if split not in SPLIT_CODES:
        raise FeatflowError(f"unknown FlyingChairs split {split!r}; choose train or val")
    root = Path(root)
    split_file = root / SPLIT_FILE
    if not split_file.is_file():
        raise MissingInput(f"{root} has no {SPLIT_FILE}: not a FlyingChairs folder")
    pairs = []
    for number, line in enumerate(split_file.read_text().split(), 1):
        if line not in ("1", "2"):
            raise FeatflowError(f"{split_file}: line {number} is {line!r}, expected 1 or 2")
        if int(line) == SPLIT_CODES[split]:
            pair = pair_paths(root, number)
            missing = [p for p in (pair.image1, pair.image2, pair.flow) if not p.is_file()]
            if missing:
                raise MissingInput(f"pair {number} of {root} is incomplete: missing {missing[0].name}")
            pairs.append(pair)
    return pairs
