"""W: bilinear warping of key-frame features along a flow field.

For each pixel p of the current frame, the warped feature is the key frame's feature sampled
bilinearly at p + flow(p) (flow = displacement from the current frame to the key frame, in
feature-map pixels, channel 0 = x, channel 1 = y); locations outside the map read zeros.
The sampling positions are those of the original code (``grid_sample(align_corners=True)`` with
the grid normalised by (size - 1) / 2): feature pixel j sits at coordinate j, and p + flow(p) is read
between the four pixels around it. Gradients flow to both the features and the flow.
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
    """W(features, flow): (N, C, h, w) key-frame features, (N, 2, h, w) flow -> (N, C, h, w), channels-last.
    Features of one frame (1, C, h, w) are shared by all N flows (N frames warped from one key frame).

    Each output pixel is the weighted sum of (at most) four feature vectors, so the warp is one fused
    gather-and-sum over whole pixels (``embedding_bag`` with per-sample weights) on a channels-last view:
    at 38x63 on the CPU, 1024 channels take 1.3 ms and 3072 take 3.5 ms, against 13 and 71 ms for
    ``grid_sample`` (which samples channel by channel) with the layout conversions around it.
    """
    if features.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"expected features (N, C, h, w) and flow (N, 2, h, w), got {tuple(features.shape)} "
                         f"and {tuple(flow.shape)}")
    frames, c, h, w = features.shape
    n = flow.shape[0]
    if frames not in (1, n) or flow.shape[-2:] != (h, w):
        raise ValueError(f"flow {tuple(flow.shape)} does not match features {tuple(features.shape)}")
    target = pixel_grid(h, w, flow) + flow  # (N, 2, h, w): where each pixel reads from, in pixels
    x, y = target[:, 0], target[:, 1]  # (N, h, w) each
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0  # the bilinear fractions carry the gradient to the flow
    # first row of each flow's frame in the table (all 0 when one frame's features serve every flow)
    base = torch.arange(n, device=flow.device).view(n, 1, 1) * (h * w if frames == n else 0)
    indices, weights = [], []
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)  # outside corners read zeros: weight 0
        row = yi.clamp(0, h - 1).long() * w + xi.clamp(0, w - 1).long()
        indices.append(base + row)
        weights.append(weight * inside)
    table = features.permute(0, 2, 3, 1).reshape(frames * h * w, c)  # (N*h*w, C): a view when channels-last
    out = F.embedding_bag(torch.stack(indices, -1).view(-1, 4), table,
                          per_sample_weights=torch.stack(weights, -1).view(-1, 4).to(features.dtype), mode="sum")
    return out.view(n, h, w, c).permute(0, 3, 1, 2)  # (N, C, h, w) in channels-last memory


def propagate(key_features: Tensor, flow: Tensor, scale: Tensor | None = None) -> Tensor:
    """DFF's feature propagation: warp the key frame's features and multiply by the scale field."""
    warped = warp(key_features, flow)
    return warped if scale is None else warped * scale
