"""Training samples for video segmentation: the current (labelled) frame, its reference frames and its labels.

What a sample holds besides the current frame follows the method (``featflow.data.references``): nothing per frame,
one key frame before it for DFF, two neighbours on either side for FGFA. The current frame is drawn where every
reference falls inside the video, so no reference is clipped. Items: ``current`` (3, H, W) float32 RGB in
[0, 255], ``references`` (R, 3, H, W), ``same`` (R,) bool (a reference that is the current frame: its features are
used unwarped), ``label`` (H, W) int64 train ids (255 = ignore).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from featflow.data.cityscapes import CityscapesVideo
from featflow.data.interleave import InterleavedVideos
from featflow.data.references import ReferenceSampling, image_tensor, stack_references
from featflow.data.synthetic import SynthConfig
from featflow.errors import FeatflowError


def _clip(current: np.ndarray, references: list[np.ndarray], same: list[bool], label: np.ndarray) -> dict[str, Tensor]:
    return {"current": image_tensor(current), "references": stack_references(references, current),
            "same": torch.tensor(same, dtype=torch.bool), "label": torch.from_numpy(label.astype(np.int64))}


class SyntheticSegmentationClips(Dataset):
    """Samples drawn on the fly from synthetic videos (every frame is labelled), ``frames_per_video`` per
    video. Sample ``i`` is a pure function of (config, seed, split, i).

    Consecutive samples cycle through ``videos_in_flight`` videos, so a batch of that size read in order
    holds as many different videos (batch statistics of one video make BatchNorm training stall) while
    each video is still built once and reused for ``frames_per_video`` samples."""

    def __init__(self, config: SynthConfig, length: int, references: ReferenceSampling = ReferenceSampling(),
                 seed: int = 0, split: str = "train", frames_per_video: int = 8, videos_in_flight: int = 1) -> None:
        if length < 1 or frames_per_video < 1 or videos_in_flight < 1:
            raise ValueError("length, frames_per_video and videos_in_flight must be positive")
        if not references.fits(config.num_frames):
            raise FeatflowError(f"videos of {config.num_frames} frames cannot hold reference offsets "
                                f"{references.low}..{references.high}")
        self.config, self.length, self.references, self.seed, self.split = config, length, references, seed, split
        self.frames_per_video, self.videos_in_flight = frames_per_video, videos_in_flight
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
        current = int(rng.integers(*self.references.current_range(len(video))))
        refs = self.references.draw(rng, current, len(video))
        image, ann = video.render(current)
        return _clip(image, [video.frame(r) for r in refs], [r == current for r in refs], ann.semantic)


class CityscapesClips(Dataset):
    """Samples of the snippets of a Cityscapes-layout folder: the labelled (20th) frame and its references (19
    frames precede it and 10 follow it). Index i is snippet i mod N with its own random references, so
    ``repeats`` > 1 gives each snippet that many different draws."""

    def __init__(self, video: CityscapesVideo, references: ReferenceSampling = ReferenceSampling(), seed: int = 0,
                 repeats: int = 1) -> None:
        if references.count and not (-references.low <= video.frames_before and references.high <= video.frames_after):
            raise FeatflowError(f"reference offsets {references.low}..{references.high} leave the snippets: they "
                                f"hold {video.frames_before} frames before the labelled one and "
                                f"{video.frames_after} after it")
        self.video, self.references, self.seed, self.repeats = video, references, seed, repeats

    def __len__(self) -> int:
        return len(self.video) * self.repeats

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        snippet = index % len(self.video)
        rng = np.random.default_rng([self.seed, index, 15485863])
        labelled = self.video.snippets[snippet].frame
        refs = [labelled + r - self.video.frames_before
                for r in self.references.draw(rng, self.video.frames_before, self.video.frames_before + 1
                                              + self.video.frames_after)]
        images = {labelled: self.video.image(snippet, labelled)}
        for r in refs:
            if r not in images:
                images[r] = self.video.image(snippet, r)
        return _clip(images[labelled], [images[r] for r in refs], [r == labelled for r in refs],
                     self.video.label(snippet))
