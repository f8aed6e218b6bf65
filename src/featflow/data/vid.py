"""ImageNet VID videos: frames, per-frame boxes with track ids, and the official frame ids.

Reads the real ILSVRC2015 VID layout and the synthetic set written by ``featflow synth --format vid``
through the same code (``featflow.data.formats.vid`` has the file formats). The class map comes from the
folder's ``devkit/data/map_vid.txt`` when there is one, else the 30 official classes. The videos of a split
come from ``ImageSets/VID/VID_{split}_frames.txt`` when it exists (which also gives the 1-based frame ids
the results format uses), else from the folders under ``Data/VID/{split}``.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featflow.data.formats import vid
from featflow.data.io import read_image
from featflow.errors import FeatflowError, MissingInput
from featflow.structures import GroundTruth


@dataclass(frozen=True)
class VidVideo:
    name: str  # the folder under Data/VID/{split}, e.g. ILSVRC2015_val_00000000
    frames: tuple[str, ...]  # frame file stems in order, e.g. 000000
    frame_ids: tuple[int, ...]  # 1-based ids of VID_{split}_frames.txt (running numbers without that file)


def _frames_file(root: Path, split: str) -> list[VidVideo] | None:
    path = root / "ImageSets" / "VID" / f"VID_{split}_frames.txt"
    if not path.is_file():
        return None
    videos: dict[str, tuple[list[str], list[int]]] = {}
    for folder, frame, frame_id in vid.read_frame_list(path):
        frames, ids = videos.setdefault(folder, ([], []))
        frames.append(frame)
        ids.append(frame_id)
    return [VidVideo(name, tuple(frames), tuple(ids)) for name, (frames, ids) in videos.items()]


def _frame_folders(root: Path, split: str) -> list[VidVideo]:
    base = root / "Data" / "VID" / split
    if not base.is_dir():
        raise MissingInput(f"{base} does not exist: not an ImageNet VID folder with a {split!r} split")
    folders = sorted({p.parent for p in base.rglob("*.JPEG")})
    videos, next_id = [], 1
    for folder in folders:
        frames = tuple(sorted(p.stem for p in folder.glob("*.JPEG")))
        videos.append(VidVideo(folder.relative_to(base).as_posix(), frames,
                               tuple(range(next_id, next_id + len(frames)))))
        next_id += len(frames)
    return videos


class VideoBoxesBase:
    """What every VID-like source shares (a VID folder, a CocoVID file): ``classes`` ((wnid, name), ...),
    ``videos`` (``VidVideo``), and ``image_path`` / ``targets`` per (video, frame) from the subclass."""

    classes: tuple[tuple[str, str], ...]
    videos: list[VidVideo]

    @property
    def class_names(self) -> list[str]:
        return [name for _, name in self.classes]

    def __len__(self) -> int:
        return len(self.videos)

    def num_frames(self, v: int) -> int:
        return len(self.videos[v].frames)

    def image_path(self, v: int, t: int) -> Path:
        raise NotImplementedError

    def targets(self, v: int, t: int) -> GroundTruth:
        raise NotImplementedError

    def image(self, v: int, t: int) -> np.ndarray:
        return read_image(self.image_path(v, t))

    def first(self, count: int) -> "VideoBoxesBase":
        """The same source restricted to its first ``count`` videos (a quicker benchmark)."""
        if count < 1:
            raise FeatflowError(f"a subset needs at least one video, got {count}")
        subset = copy.copy(self)
        subset.videos = self.videos[:count]
        return subset


class VidDataset(VideoBoxesBase):
    """The videos of one split. ``image(v, t)`` reads frame t of video v as (H, W, 3) uint8 RGB;
    ``targets(v, t)`` its boxes (frames without an annotation file have none)."""

    def __init__(self, root: str | os.PathLike, split: str = "val") -> None:
        self.root, self.split = Path(root), split
        map_file = self.root / "devkit" / "data" / "map_vid.txt"
        self.classes: tuple[tuple[str, str], ...] = (vid.read_map_vid(map_file) if map_file.is_file()
                                                     else vid.VID_CLASSES)
        self.class_index = {wnid: i for i, (wnid, _) in enumerate(self.classes, 1)}
        self.videos = _frames_file(self.root, split) or _frame_folders(self.root, split)
        if not self.videos:
            raise MissingInput(f"no videos in the {split!r} split of {self.root}")

    def image_path(self, v: int, t: int) -> Path:
        video = self.videos[v]
        return self.root / "Data" / "VID" / self.split / video.name / f"{video.frames[t]}.JPEG"

    def listed_frames(self, name: str) -> list[tuple[int, int]]:
        """The (video, frame) pairs an ``ImageSets/VID/{name}`` list names (``VID_train_15frames.txt``: the frames
        the released code trains on); a video or frame the folder lacks is an error naming the list."""
        path = self.root / "ImageSets" / "VID" / name
        if not path.is_file():
            raise MissingInput(f"no frame list {path}")
        by_name = {video.name: v for v, video in enumerate(self.videos)}
        frames = []
        for folder, t in vid.read_train_frames(path):
            if folder not in by_name:
                raise FeatflowError(f"{path}: video {folder} is not in {self.root / 'Data' / 'VID' / self.split}")
            if t >= self.num_frames(by_name[folder]):
                raise FeatflowError(f"{path}: {folder} has {self.num_frames(by_name[folder])} frames, the list names "
                                    f"frame {t}")
            frames.append((by_name[folder], t))
        return frames

    def annotation(self, v: int, t: int) -> vid.VidAnnotation | None:
        video = self.videos[v]
        path = self.root / "Annotations" / "VID" / self.split / video.name / f"{video.frames[t]}.xml"
        return vid.read_vid_xml(path) if path.is_file() else None

    def targets(self, v: int, t: int) -> GroundTruth:
        ann = self.annotation(v, t)
        objects = ann.objects if ann is not None else ()
        unknown = sorted({o.name for o in objects} - set(self.class_index))
        if unknown:
            raise FeatflowError(f"{self.videos[v].name}/{self.videos[v].frames[t]}: classes {unknown} are not in the "
                                f"class map ({len(self.classes)} classes)")
        return GroundTruth(np.array([o.box for o in objects], np.float32).reshape(-1, 4),
                            np.array([self.class_index[o.name] for o in objects], np.int64),
                            np.array([o.track_id for o in objects], np.int64))
