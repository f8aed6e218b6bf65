"""N_task: the task networks that run on (real or propagated) features."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SegmentationHead(nn.Module):
    """DeepLab-style head: a 1x1 conv from the features to per-class scores, upsampled bilinearly to
    the input size. (N, C_feat, h, w) -> (N, num_classes, H, W) logits (softmax is left to the loss)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"segmentation needs at least 2 classes, got {num_classes}")
        self.num_classes = num_classes
        self.classifier = nn.Conv2d(in_channels, num_classes, kernel_size=1)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        scores = self.classifier(features)  # (N, classes, h, w)
        return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
