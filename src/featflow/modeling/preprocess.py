"""Input conventions of the original DFF / FGFA code, in one place.

Images enter the models as float RGB tensors (N, 3, H, W) with values in [0, 255].
- N_feat sees the image with the per-channel mean subtracted (no division by a std).
- F sees the image at half resolution (a 2x2 average pool, odd sizes rounded up), mean-subtracted and divided
  by 255. Pooling first and normalising the quarter-size result is the same arithmetic at a quarter of the
  memory traffic (at 600x1000 on the CPU, both frames of a pair: 12.5 -> 4.5 ms).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: Per-channel RGB means of the original code.
PIXEL_MEANS: tuple[float, float, float] = (123.15, 115.90, 103.06)


def _means_like(images: Tensor) -> Tensor:
    return torch.tensor(PIXEL_MEANS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)


def feature_input(images: Tensor) -> Tensor:
    """(N, 3, H, W) RGB in [0, 255] -> the input of N_feat."""
    return images - _means_like(images)


def flow_input(images: Tensor) -> Tensor:
    """(N, 3, H, W) RGB in [0, 255] -> the input of the flow network F, (N, 3, ceil(H/2), ceil(W/2))."""
    half = F.avg_pool2d(images, 2, ceil_mode=True)
    return (half - _means_like(images)) / 255.0


def image_to_tensor(image: np.ndarray, device: torch.device | str | None = None) -> Tensor:
    """(H, W, 3) uint8 RGB array -> (1, 3, H, W) float32 tensor in [0, 255] (on ``device``)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).unsqueeze(0).float()
