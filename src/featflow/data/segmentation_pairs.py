"""Training samples for video segmentation: (current, key) frame pairs with the current frame's labels.

DFF trains on pairs: the current frame (labelled) and a key frame up to ``max_offset`` frames before
it; when they coincide the features are used unwarped (``same``). ``max_offset=0`` gives per-frame
samples. Items: ``current``, ``key`` (3, H, W) float32 RGB in [0, 255], ``label`` (H, W) int64 train ids
(255 = ignore), ``same`` bool.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from featflow.data.cityscapes import CityscapesVideo
from featflow.data.interleave import InterleavedVideos
from featflow.data.synthetic import SynthConfig


def _image(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float()


def _pair(current: np.ndarray, key: np.ndarray, label: np.ndarray, offset: int) -> dict[str, Tensor]:
    return {"current": _image(current), "key": _image(key), "label": torch.from_numpy(label.astype(np.int64)),
            "same": torch.tensor(offset == 0)}


class SyntheticSegmentationPairs(Dataset):
    """Pairs drawn on the fly from synthetic videos (every frame is labelled), ``frames_per_video`` per
    video. Sample ``i`` is a pure function of (config, seed, split, i).

    Consecutive samples cycle through ``videos_in_flight`` videos, so a batch of that size read in order
    holds as many different videos (batch statistics of one video make BatchNorm training stall) while
    each video is still built once and reused for ``frames_per_video`` samples."""

    def __init__(self, config: SynthConfig, length: int, seed: int = 0, split: str = "train", max_offset: int = 0,
                 frames_per_video: int = 8, videos_in_flight: int = 1) -> None:
        if length < 1 or frames_per_video < 1 or videos_in_flight < 1 or max_offset < 0:
            raise ValueError("length, frames_per_video and videos_in_flight must be positive, "
                             "max_offset non-negative")
        if config.num_frames <= max_offset:
            raise ValueError(f"videos of {config.num_frames} frames cannot hold key offsets up to {max_offset}")
        self.config, self.length, self.seed, self.split = config, length, seed, split
        self.max_offset, self.frames_per_video, self.videos_in_flight = max_offset, frames_per_video, videos_in_flight
        self.videos = InterleavedVideos(config, seed, split, frames_per_video, videos_in_flight, cache_size=2)

    def __len__(self) -> int:
        return self.length

    def video_of(self, index: int) -> int:
        return self.videos.video_of(index)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        video = self.videos[index]
        rng = np.random.default_rng([self.seed, index, 104729])
        current = int(rng.integers(self.max_offset, len(video)))
        offset = int(rng.integers(0, self.max_offset + 1))
        image, ann = video.render(current)
        return _pair(image, video.frame(current - offset), ann.semantic, offset)


class CityscapesPairs(Dataset):
    """Pairs inside the snippets of a Cityscapes-layout folder: the labelled (20th) frame and a key frame
    0..``max_offset`` frames before it. Index i is snippet i mod N with its own random offset, so
    ``repeats`` > 1 gives each snippet that many different key frames."""

    def __init__(self, video: CityscapesVideo, max_offset: int = 0, seed: int = 0, repeats: int = 1) -> None:
        if not 0 <= max_offset <= video.frames_before:
            raise ValueError(f"max_offset must be in 0..{video.frames_before}, got {max_offset}")
        self.video, self.max_offset, self.seed, self.repeats = video, max_offset, seed, repeats

    def __len__(self) -> int:
        return len(self.video) * self.repeats

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        snippet = index % len(self.video)
        offset = int(np.random.default_rng([self.seed, index, 15485863]).integers(0, self.max_offset + 1))
        labelled = self.video.snippets[snippet].frame
        return _pair(self.video.image(snippet, labelled), self.video.image(snippet, labelled - offset),
                     self.video.label(snippet), offset)
