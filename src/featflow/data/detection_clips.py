"""Training samples for video detection: the current frame, its reference frames and its boxes.

What a sample holds besides the current frame follows the method (``featflow.data.references``): nothing per
frame, one key frame at current + U{-9..0} for DFF, two reference frames at current + U{-9..9} for FGFA. Offsets
are clipped to the video: an ImageNet DET image is a video of one frame, so its references are the image itself
(``same`` all true). Items: ``current`` (3, H, W) float32 RGB in [0, 255], ``references`` (R, 3, H, W),
``same`` (R,) bool, ``boxes`` (n, 4) float32 in inclusive pixels of the frames as given, ``labels`` (n,) int64
1..C, ``scale`` () float32: the factor a folder's frames were resized by (``resize``, from ``data.size``; 1 when
not resized), so that boxes found on them divide by it to come back in the original image's pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from featflow.data.interleave import InterleavedVideos
from featflow.data.references import ReferenceSampling, image_tensor, stack_references
from featflow.data.resize import Resize, resize_image, scale_boxes
from featflow.data.synthetic import SynthConfig
from featflow.data.vid import VideoBoxesBase
from featflow.errors import FeatflowError
from featflow.structures import GroundTruth


def _clip(current: np.ndarray, references: list[np.ndarray], same: list[bool], targets: GroundTruth,
          resize: Resize | None = None) -> dict:
    """One sample; with ``resize`` its frames scaled by the current frame's factor (references to its size) and
    its boxes with them."""
    scale, boxes = 1.0, targets.boxes
    if resize is not None:
        scale = resize.scale(*current.shape[:2])
        current = resize_image(current, scale)
        references = [resize_image(r, scale, current.shape[:2]) for r in references]
        boxes = scale_boxes(boxes, scale)
    return {"current": image_tensor(current), "references": stack_references(references, current),
            "same": torch.tensor(same, dtype=torch.bool),
            "boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(targets.labels),
            "scale": torch.tensor(scale, dtype=torch.float32)}


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
    """Samples from a VID-like source (a VID folder, a CocoVID file, ImageNet DET's one-frame videos): sample i is
    frame i of the split's frames in order (all videos concatenated; or of ``frames``, (video, frame) pairs), with
    its own random references drawn from the whole video; with ``resize`` its frames and boxes scaled as the papers
    do (shorter side 600, longer at most 1000)."""

    def __init__(self, data: VideoBoxesBase, references: ReferenceSampling = ReferenceSampling(), seed: int = 0,
                 resize: Resize | None = None, frames: list[tuple[int, int]] | None = None) -> None:
        self.data, self.references, self.seed, self.resize = data, references, seed, resize
        # the current frames (video, frame): every frame, or a list's (the released code's 15 per video)
        self.index = frames if frames is not None else [(v, t) for v in range(len(data))
                                                         for t in range(data.num_frames(v))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict:
        v, t = self.index[index]
        rng = np.random.default_rng([self.seed, index, 7919])
        refs = self.references.draw(rng, t, self.data.num_frames(v))
        images = {t: self.data.image(v, t)}  # each frame read once (a DET image: all references are the image)
        for r in refs:
            if r not in images:
                images[r] = self.data.image(v, r)
        return _clip(images[t], [images[r] for r in refs], [r == t for r in refs], self.data.targets(v, t),
                     self.resize)


def collate_clips(samples: list[dict]) -> dict:
    """Stack images; keep the per-frame boxes and labels as lists (their counts differ). The frames of a batch must
    share one size: a folder whose frames differ in size (VID videos, DET images) trains one clip per process."""
    sizes = sorted({tuple(s["current"].shape[-2:]) for s in samples})
    if len(sizes) > 1:
        raise FeatflowError(f"a batch holds frames of different sizes ({', '.join(f'{h}x{w}' for h, w in sizes)}): "
                            f"train one clip per process on such a folder (train.batch_size = the number of GPUs)")
    return {"current": torch.stack([s["current"] for s in samples]),
            "references": torch.stack([s["references"] for s in samples]),  # (N, R, 3, H, W)
            "same": torch.stack([s["same"] for s in samples]),
            "targets": [{"boxes": s["boxes"], "labels": s["labels"]} for s in samples]}
