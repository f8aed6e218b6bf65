"""Datasets of (current, key, flow) samples for training and evaluating flow networks.

A sample is a dict of tensors: ``current`` and ``key`` (3, H, W) float32 RGB in [0, 255], ``flow``
(2, H, W) the current -> key displacement in pixels, ``valid`` (H, W) bool (False where the point is
occluded or leaves the frame).
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from featflow.data.formats.flo import read_flo
from featflow.data.formats.flyingchairs import list_pairs
from featflow.data.io import read_image
from featflow.data.references import image_tensor
from featflow.data.synthetic import SynthConfig, SyntheticVideo
from featflow.errors import FeatflowError


def flow_sample(current: np.ndarray, key: np.ndarray, flow: np.ndarray, valid: np.ndarray) -> dict[str, Tensor]:
    """Arrays (images (H, W, 3) uint8, flow (H, W, 2), valid (H, W)) -> a sample as the module docstring says."""
    return {
        "current": image_tensor(current),
        "key": image_tensor(key),
        "flow": torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1),
        "valid": torch.from_numpy(np.ascontiguousarray(valid)),
    }


class SyntheticFlowPairs(Dataset):
    """Pairs from synthetic videos, ``pairs_per_video`` per video, key-frame gaps of 1..``max_gap``
    in either direction. Sample ``i`` is a pure function of (config, seed, split, i)."""

    def __init__(self, config: SynthConfig, length: int, seed: int = 0, split: str = "train", max_gap: int = 9,
                 pairs_per_video: int = 2) -> None:
        if max_gap < 1:
            raise ValueError(f"max_gap must be at least 1, got {max_gap}")
        if length < 1 or pairs_per_video < 1:
            raise ValueError("length and pairs_per_video must be positive")
        self.config = replace(config, num_frames=max_gap + 1)
        self.length, self.seed, self.split = length, seed, split
        self.max_gap, self.pairs_per_video = max_gap, pairs_per_video
        self._video: SyntheticVideo | None = None

    def __len__(self) -> int:
        return self.length

    def video(self, index: int) -> SyntheticVideo:
        number = index // self.pairs_per_video
        if self._video is None or self._video.index != number:
            self._video = SyntheticVideo(self.config, self.seed, number, self.split,
                                         cache_size=2 * self.pairs_per_video)
        return self._video

    def frames(self, index: int) -> tuple[int, int]:
        """(current, key) frame numbers of sample ``index``."""
        rng = np.random.default_rng([self.seed, index, 7919])
        gap = int(rng.integers(1, self.max_gap + 1))
        first = int(rng.integers(0, self.max_gap + 1 - gap))
        return (first, first + gap) if rng.random() < 0.5 else (first + gap, first)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        video = self.video(index)
        current, key = self.frames(index)
        flow, valid = video.flow(current, key)
        return flow_sample(video.frame(current), video.frame(key), flow, valid)


class FlyingChairsPairs(Dataset):
    """A FlyingChairs folder (real, or written by ``featflow synth --format flyingchairs``)."""

    def __init__(self, root: str | os.PathLike, split: str = "train") -> None:
        self.pairs = list_pairs(root, split)
        if not self.pairs:
            raise FeatflowError(f"{root} lists no {split} pairs")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        pair = self.pairs[index]
        current, key, flow = read_image(pair.image1), read_image(pair.image2), read_flo(pair.flow)
        if current.shape != key.shape or current.shape[:2] != flow.shape[:2]:
            raise FeatflowError(f"pair {pair.image1.name}: images and flow differ in size")
        return flow_sample(current, key, flow, np.ones(flow.shape[:2], bool))


