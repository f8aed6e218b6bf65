"""Training samples for video detection: the current frame, its reference frames and its boxes.

- per-frame: no reference frame;
- DFF: one key frame at current + U{-9..0} (``same`` marks key == current: features used unwarped);
- FGFA: two reference frames at current + U{-9..9} each.
Offsets are clipped to the video. Items: ``current`` (3, H, W) float32 RGB in [0, 255], ``references``
(R, 3, H, W), ``same`` (R,) bool, ``boxes`` (n, 4) float32 in inclusive pixels, ``labels`` (n,) int64 1..C.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from featflow.data.interleave import InterleavedVideos
from featflow.data.synthetic import SynthConfig
from featflow.data.vid import VidDataset
from featflow.structures import GroundTruth


@dataclass(frozen=True)
class ReferenceSampling:
    """How many reference frames a sample has and the range of their offsets from the current frame."""

    count: int = 0
    low: int = -9
    high: int = 0

    def __post_init__(self) -> None:
        if self.count < 0 or self.low > self.high:
            raise ValueError(f"need count >= 0 and low <= high, got {self}")

    def draw(self, rng: np.random.Generator, current: int, length: int) -> list[int]:
        """Reference frame indices for ``current`` in a video of ``length`` frames."""
        offsets = rng.integers(self.low, self.high + 1, size=self.count)
        return [int(np.clip(current + o, 0, length - 1)) for o in offsets]


def _image(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float()


def _clip(current: np.ndarray, references: list[np.ndarray], same: list[bool], targets: GroundTruth) -> dict:
    refs = torch.stack([_image(r) for r in references]) if references else torch.zeros(0, *_image(current).shape)
    return {"current": _image(current), "references": refs, "same": torch.tensor(same, dtype=torch.bool),
            "boxes": torch.from_numpy(targets.boxes), "labels": torch.from_numpy(targets.labels)}


class SyntheticDetectionClips(Dataset):
    """Samples drawn on the fly from synthetic videos, ``frames_per_video`` per video; consecutive samples
    cycle through ``videos_in_flight`` videos so that a batch holds different videos. Sample ``i`` is a pure
    function of (config, seed, split, i)."""

    def __init__(self, config: SynthConfig, length: int, references: ReferenceSampling = ReferenceSampling(),
                 seed: int = 0, split: str = "train", frames_per_video: int = 8, videos_in_flight: int = 1) -> None:
        if length < 1:
            raise ValueError("length must be positive")
        self.config, self.length, self.references, self.seed, self.split = config, length, references, seed, split
        self.videos = InterleavedVideos(config, seed, split, frames_per_video, videos_in_flight, cache_size=4)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        video = self.videos[index]
        rng = np.random.default_rng([self.seed, index, 7919])
        current = int(rng.integers(0, len(video)))
        refs = self.references.draw(rng, current, len(video))
        image, ann = video.render(current)
        return _clip(image, [video.frame(r) for r in refs], [r == current for r in refs], ann.ground_truth)


class VidDetectionClips(Dataset):
    """Samples from a VID-layout folder: sample i is frame i of the split's frames in order (all videos
    concatenated), with its own random references."""

    def __init__(self, data: VidDataset, references: ReferenceSampling = ReferenceSampling(), seed: int = 0) -> None:
        self.data, self.references, self.seed = data, references, seed
        self.index = [(v, t) for v in range(len(data)) for t in range(data.num_frames(v))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict:
        v, t = self.index[index]
        rng = np.random.default_rng([self.seed, index, 7919])
        refs = self.references.draw(rng, t, self.data.num_frames(v))
        return _clip(self.data.image(v, t), [self.data.image(v, r) for r in refs], [r == t for r in refs],
                     self.data.targets(v, t))


def collate_clips(samples: list[dict]) -> dict:
    """Stack images; keep the per-frame boxes and labels as lists (their counts differ)."""
    return {"current": torch.stack([s["current"] for s in samples]),
            "references": torch.stack([s["references"] for s in samples]),  # (N, R, 3, H, W)
            "same": torch.stack([s["same"] for s in samples]),
            "targets": [{"boxes": s["boxes"], "labels": s["labels"]} for s in samples]}
