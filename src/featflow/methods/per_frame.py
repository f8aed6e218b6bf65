"""The per-frame baseline: N_feat and N_task on every frame (the talk's "Frame (oracle baseline)")."""

from __future__ import annotations

from torch import Tensor, nn

from featflow.modeling.feature_net import FeatureNet
from featflow.modeling.heads import SegmentationHead
from featflow.modeling.preprocess import feature_input


class PerFrameSegmenter(nn.Module):
    """images (N, 3, H, W) RGB in [0, 255] -> logits (N, num_classes, H, W)."""

    def __init__(self, num_classes: int, arch: str = "resnet18", channels: int = 1024) -> None:
        super().__init__()
        self.feature_net = FeatureNet(arch, out_channels=channels)
        self.head = SegmentationHead(channels, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.feature_net(feature_input(images)), images.shape[-2:])
