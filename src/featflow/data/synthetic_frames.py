"""Single frames of synthetic videos with their semantic labels, for per-frame segmentation."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from featflow.data.synthetic import SynthConfig, SyntheticVideo


class SyntheticSegmentationFrames(Dataset):
    """``frames_per_video`` random frames from each synthetic video; sample ``i`` is a pure function of
    (config, seed, split, i). Items: ``image`` (3, H, W) float32 RGB in [0, 255], ``label`` (H, W) int64."""

    def __init__(self, config: SynthConfig, length: int, seed: int = 0, split: str = "train",
                 frames_per_video: int = 8) -> None:
        if length < 1 or frames_per_video < 1:
            raise ValueError("length and frames_per_video must be positive")
        self.config, self.length, self.seed, self.split = config, length, seed, split
        self.frames_per_video = frames_per_video
        self._video: SyntheticVideo | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        number = index // self.frames_per_video
        if self._video is None or self._video.index != number:
            self._video = SyntheticVideo(self.config, self.seed, number, self.split, cache_size=1)
        t = int(np.random.default_rng([self.seed, index, 104729]).integers(len(self._video)))
        image, ann = self._video.render(t)
        return {"image": torch.from_numpy(image).permute(2, 0, 1).float(),
                "label": torch.from_numpy(ann.semantic.astype(np.int64))}
