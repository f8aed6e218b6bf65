"""Which frames a training sample holds besides its current frame: the reference frames of DFF and FGFA.

- per-frame: none;
- DFF: one key frame at current + U{low..0};
- FGFA: two reference frames at current + U{low..high} each.
``same_share`` > 0 makes that share of the references the current frame itself, beyond the uniform offset 0: a DFF
sample is then a per-frame sample as often, so N_feat also learns from unwarped features (0: the papers' sampling).
Both tasks' samples (``segmentation_clips``, ``detection_clips``) draw them with ``ReferenceSampling`` and hold them
as ``references`` (R, 3, H, W) float32 RGB in [0, 255], with ``same`` (R,) bool marking a reference that is the
current frame itself (its features are used unwarped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class ReferenceSampling:
    """How many reference frames a sample has and the range of their offsets from the current frame."""

    count: int = 0
    low: int = -9
    high: int = 0
    same_share: float = 0.0  # the share of references drawn as the current frame itself (offset 0)

    def __post_init__(self) -> None:
        if self.count < 0 or self.low > self.high or not 0.0 <= self.same_share < 1.0:
            raise ValueError(f"need count >= 0, low <= high and 0 <= same_share < 1, got {self}")

    def fits(self, length: int) -> bool:
        """Whether a video of ``length`` frames has a current frame whose every offset stays inside it."""
        return self.count == 0 or length > max(0, -self.low) + max(0, self.high)

    def current_range(self, length: int) -> tuple[int, int]:
        """The current frames [start, stop) of a video of ``length`` frames whose references all fall inside it
        (the whole video when it is too short for the offsets' span, or without references)."""
        if self.count == 0 or not self.fits(length):
            return 0, length
        return max(0, -self.low), length - max(0, self.high)

    def draw(self, rng: np.random.Generator, current: int, length: int) -> list[int]:
        """Reference frame indices for ``current`` in a video of ``length`` frames (clipped to the video)."""
        offsets = rng.integers(self.low, self.high + 1, size=self.count)
        if self.same_share > 0:  # drawn only then, so the papers' sampling keeps its random stream
            offsets = np.where(rng.random(self.count) < self.same_share, 0, offsets)
        return [int(np.clip(current + o, 0, length - 1)) for o in offsets]


def image_tensor(array: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [0, 255]."""
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float()


def stack_references(references: list[np.ndarray], current: np.ndarray) -> Tensor:
    """Reference images -> (R, 3, H, W); (0, 3, H, W) at the current frame's size when there are none."""
    if references:
        return torch.stack([image_tensor(r) for r in references])
    return torch.zeros(0, 3, *current.shape[:2])
