"""Frame pairs from a user's own videos, for unsupervised fine-tuning of the flow network F.

Real footage has no flow ground truth, so these samples hold only the two frames: ``current`` and ``key`` (3, H, W)
float32 RGB in [0, 255], ``key`` 1..``max_gap`` frames before or after ``current`` in the same video. The loss that
trains on them is photometric (``featflow.engine.flow_training.unsupervised_loss``).

Every video of the folder (a file PyAV decodes, or a folder of images) is decoded once, at the start, resized to
``size`` and kept in memory as uint8 (256x512: 0.4 MB a frame), at most ``max_frames`` frames each, so that sampling
is random access without seeking.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from featflow.data.real_footage import resolve_video
from featflow.data.references import image_tensor
from featflow.data.video import VIDEO_SUFFIXES, open_source
from featflow.errors import FeatflowError, MissingInput
from featflow.registry import FOOTAGE_PREFIX

log = logging.getLogger(__name__)


def video_entries(root: str | os.PathLike) -> list[Path]:
    """The videos of a folder: its video files and its sub-folders of images, sorted by name. A folder that holds
    images itself (and no videos) is one video; ``footage:NAME`` is one video featflow knows
    (``featflow.data.real_footage.PACKAGE_VIDEOS``)."""
    if str(root).startswith(FOOTAGE_PREFIX):
        return [resolve_video(str(root))]
    root = Path(root)
    if not root.is_dir():
        raise MissingInput(f"no such folder of videos: {root}")
    entries = sorted(p for p in root.iterdir() if (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES) or p.is_dir())
    if not entries:
        try:
            open_source(root)
        except FeatflowError:
            raise FeatflowError(f"{root} holds no videos ({', '.join(VIDEO_SUFFIXES)}) and no folders of images") \
                from None
        entries = [root]
    return entries


class VideoFramePairs(Dataset):
    """``length`` random (current, key) pairs from the videos under ``root``. Sample ``i`` is a pure function of
    (the videos, size, max_gap, seed, i)."""

    def __init__(self, root: str | os.PathLike, length: int, size: tuple[int, int] = (256, 512), max_gap: int = 2,
                 seed: int = 0, max_frames: int = 300, progress: bool = False) -> None:
        if length < 1 or max_gap < 1 or max_frames < 2:
            raise ValueError("length and max_gap must be positive, max_frames at least 2")
        self.length, self.size, self.max_gap, self.seed = length, size, max_gap, seed
        self.videos: list[np.ndarray] = []  # (T, H, W, 3) uint8 each
        for path in tqdm(video_entries(root), desc="decoding videos", disable=not progress, leave=False):
            frames = []
            for frame in open_source(path).frames():
                frames.append(cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA))
                if len(frames) == max_frames:
                    break
            if len(frames) < 2:
                log.warning("%s: skipped, fewer than two frames", path)
                continue
            self.videos.append(np.stack(frames))
        if not self.videos:
            raise FeatflowError(f"{root}: no video with at least two frames")
        counts = np.array([len(v) for v in self.videos], np.float64)
        self.weights = counts / counts.sum()  # each frame equally likely

    @property
    def frames(self) -> int:
        return sum(len(v) for v in self.videos)

    def __len__(self) -> int:
        return self.length

    def pair(self, index: int) -> tuple[int, int, int]:
        """(video, current frame, key frame) of sample ``index``."""
        rng = np.random.default_rng([self.seed, index, 6007])
        video = int(rng.choice(len(self.videos), p=self.weights))
        count = len(self.videos[video])
        gap = int(rng.integers(1, min(self.max_gap, count - 1) + 1))
        first = int(rng.integers(0, count - gap))
        return (video, first, first + gap) if rng.random() < 0.5 else (video, first + gap, first)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        video, current, key = self.pair(index)
        frames = self.videos[video]
        return {"current": image_tensor(frames[current]), "key": image_tensor(frames[key])}
