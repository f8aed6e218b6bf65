"""Full-resolution flow from a flow network: the ``featflow flow`` command and the flow benchmark."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from featflow.modeling.flow_net import FlowNetBase
from featflow.modeling.preprocess import flow_input, image_to_tensor


def upsample_flow(flow: Tensor, stride: int, size: tuple[int, int]) -> Tensor:
    """(N, 2, ceil(H/s), ceil(W/s)) flow in image pixels -> (N, 2, H, W), bilinear.

    Pixel i of the coarse map is centred on image coordinate (i + 0.5) * s - 0.5, so upsampling by s
    and cropping keeps maps of sizes that are not multiples of s aligned.
    """
    up = F.interpolate(flow, scale_factor=stride, mode="bilinear", align_corners=False)
    return up[..., : size[0], : size[1]]


def predict_flow(net: FlowNetBase, current: Tensor, key: Tensor, stride: int = 8) -> Tensor:
    """(N, 3, H, W) RGB [0, 255] frames -> (N, 2, H, W) current -> key flow in pixels.

    ``stride=8`` uses FlowNet's finest prediction; ``stride=16`` the pooled output DFF warps with.
    """
    if stride not in (8, 16):
        raise ValueError(f"stride must be 8 or 16, got {stride}")
    out = net(flow_input(current), flow_input(key), pyramid=stride == 8)
    coarse = out.pyramid[8] if stride == 8 else out.flow * net.stride
    return upsample_flow(coarse, stride, current.shape[-2:])


class FlowNetEstimator:
    """A flow network as an estimator on numpy images: (current, key) uint8 RGB -> (H, W, 2) float32."""

    def __init__(self, net: FlowNetBase, stride: int = 8) -> None:
        self.net = net.eval()
        self.stride = stride

    @torch.no_grad()
    def __call__(self, current: np.ndarray, key: np.ndarray) -> np.ndarray:
        if current.shape != key.shape:
            raise ValueError(f"current {current.shape} and key {key.shape} differ in size")
        device = next(self.net.parameters()).device
        flow = predict_flow(self.net, image_to_tensor(current, device), image_to_tensor(key, device), self.stride)
        return flow[0].permute(1, 2, 0).cpu().numpy()
