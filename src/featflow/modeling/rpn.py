"""The region proposal network of R-FCN as DFF / FGFA use it, on torchvision's RPN machinery.

The head is a single 1x1 conv on the RPN half of the features (no 3x3 conv in front, as in the released
DFF / FGFA code): one objectness logit and four box deltas per anchor. Anchors: 3 scales x 3 ratios at
stride 16; training samples 256 anchors per image (half foreground, IoU 0.7 / 0.3); proposals: 6000 before
NMS 0.7, 300 after. Anchor generation, target assignment, losses and proposal filtering are torchvision's.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.rpn import RegionProposalNetwork


@dataclass(frozen=True)
class RPNConfig:
    anchor_sizes: tuple[int, ...] = (128, 256, 512)  # scales 8, 16, 32 x stride 16
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    fg_iou: float = 0.7
    bg_iou: float = 0.3
    anchors_per_image: int = 256
    positive_fraction: float = 0.5
    pre_nms_top_n: int = 6000
    post_nms_top_n: int = 300
    nms_iou: float = 0.7

    def __post_init__(self) -> None:
        if not self.anchor_sizes or min(self.anchor_sizes) <= 0:
            raise ValueError(f"anchor sizes must be positive, got {self.anchor_sizes}")
        if not self.aspect_ratios or min(self.aspect_ratios) <= 0:
            raise ValueError(f"aspect ratios must be positive, got {self.aspect_ratios}")


class RPNHead1x1(nn.Module):
    """features [(N, C, h, w)] -> ([objectness (N, A, h, w)], [deltas (N, 4A, h, w)]), torchvision's head API."""

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4 * num_anchors, kernel_size=1)
        for conv in (self.cls_logits, self.bbox_pred):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        return [self.cls_logits(f) for f in features], [self.bbox_pred(f) for f in features]


def build_rpn(in_channels: int, config: RPNConfig = RPNConfig()) -> RegionProposalNetwork:
    """The RPN on a single stride-16 feature map of ``in_channels`` channels."""
    anchors = AnchorGenerator(sizes=(config.anchor_sizes,), aspect_ratios=(config.aspect_ratios,))
    head = RPNHead1x1(in_channels, anchors.num_anchors_per_location()[0])
    return RegionProposalNetwork(
        anchors, head, fg_iou_thresh=config.fg_iou, bg_iou_thresh=config.bg_iou,
        batch_size_per_image=config.anchors_per_image, positive_fraction=config.positive_fraction,
        pre_nms_top_n={"training": config.pre_nms_top_n, "testing": config.pre_nms_top_n},
        post_nms_top_n={"training": config.post_nms_top_n, "testing": config.post_nms_top_n},
        nms_thresh=config.nms_iou)
