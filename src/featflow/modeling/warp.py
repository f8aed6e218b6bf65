"""W: bilinear warping of key-frame features along a flow field.

For each pixel p of the current frame, the warped feature is the key frame's feature sampled
bilinearly at p + flow(p) (flow = displacement from the current frame to the key frame, in
feature-map pixels, channel 0 = x, channel 1 = y); locations outside the map read zeros.
The sampling positions are those of the original code (``grid_sample(align_corners=True)`` with
the grid normalised by (size - 1) / 2); the grid is written in ``align_corners=False`` form,
which samples the same points and stays right for maps one pixel wide.
Gradients flow to both the features and the flow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def pixel_grid(height: int, width: int, like: Tensor) -> Tensor:
    """(1, 2, height, width) pixel coordinates (x, y) with the dtype and device of ``like``."""
    ys = torch.arange(height, dtype=like.dtype, device=like.device)
    xs = torch.arange(width, dtype=like.dtype, device=like.device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).unsqueeze(0)


def warp(features: Tensor, flow: Tensor) -> Tensor:
    """W(features, flow): (N, C, h, w) key-frame features, (N, 2, h, w) flow -> (N, C, h, w)."""
    if features.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"expected features (N, C, h, w) and flow (N, 2, h, w), got {tuple(features.shape)} "
                         f"and {tuple(flow.shape)}")
    n, _, h, w = features.shape
    if flow.shape[0] != n or flow.shape[-2:] != (h, w):
        raise ValueError(f"flow {tuple(flow.shape)} does not match features {tuple(features.shape)}")
    target = pixel_grid(h, w, flow) + flow  # (N, 2, h, w): where each pixel reads from
    size = torch.tensor([w, h], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
    grid = (2.0 * target + 1.0) / size - 1.0  # normalised for align_corners=False
    return F.grid_sample(
        features, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode="zeros", align_corners=False
    )


def propagate(key_features: Tensor, flow: Tensor, scale: Tensor | None = None) -> Tensor:
    """DFF's feature propagation: warp the key frame's features and multiply by the scale field."""
    warped = warp(key_features, flow)
    return warped if scale is None else warped * scale
