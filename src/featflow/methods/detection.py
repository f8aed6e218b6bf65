"""Video object detection: the per-frame R-FCN baseline and DFF over the same modules.

``VideoDetector`` = N_feat (+ F) (+ FGFA's aggregation) + RPN + R-FCN. The features (computed, propagated by DFF or
aggregated by FGFA) are split into two halves along channels: the first feeds the RPN, the second R-FCN.
``forward(current, key, same, targets=...)`` returns the training losses; without targets, the
detections of each frame (``featflow.structures.Detections``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection.image_list import ImageList

from featflow.methods.dff import DeepFeatureFlow, FlowSource
from featflow.methods.fgfa import build_aggregation
from featflow.modeling.feature_net import FEATURE_STRIDE, FeatureNet, Layout, NormKind
from featflow.modeling.flow_net import build_flow_net
from featflow.modeling.rfcn import RFCNConfig, RFCNHead
from featflow.modeling.rpn import RPNConfig, build_rpn
from featflow.registry import AGGREGATIONS, check_choice
from featflow.structures import Detections

#: Training targets of one frame: {"boxes": (n, 4) float32 in image pixels, "labels": (n,) int64 1..C}.
Target = dict[str, Tensor]


class VideoDetector(DeepFeatureFlow):
    """images (N, 3, H, W) RGB [0, 255] -> per-frame detections, or the losses when targets are given."""

    def __init__(self, num_classes: int, arch: str = "resnet18", channels: int = 128, flow_net: str | None = None,
                 aggregation: str | None = None, rpn: RPNConfig = RPNConfig(), rfcn: RFCNConfig = RFCNConfig(),
                 norm: NormKind = "batch", layout: Layout = "msra") -> None:
        check_choice("aggregation", aggregation, AGGREGATIONS)
        if channels < 2 or channels % 2:
            raise ValueError(f"detection splits the features in two halves: channels must be even, got {channels}")
        super().__init__(FeatureNet(arch, out_channels=channels, norm=norm, layout=layout),
                         build_flow_net(flow_net, scale_channels=channels) if flow_net else None,
                         build_aggregation(aggregation, channels))
        self.aggregation = aggregation
        self.arch, self.channels, self.flow_name = arch, channels, flow_net
        self.anchor_sizes = rpn.anchor_sizes
        self.rpn = build_rpn(channels // 2, rpn)
        self.rfcn = RFCNHead(channels // 2, num_classes, rfcn)

    @property
    def num_classes(self) -> int:
        return self.rfcn.num_classes

    def detect(self, features: Tensor, image_size: tuple[int, int],
               targets: list[Target] | None = None) -> list[Detections] | dict[str, Tensor]:
        """N_task: features (N, C, h, w) of frames of ``image_size`` -> detections, or losses given targets.
        The heads run in float32 even under (bfloat16) autocast: anchors, proposals and RoI targets are pixel
        coordinates that bfloat16 would round to 2 px at 256, and torchvision's PS RoI pooling has no bfloat16."""
        with torch.autocast(features.device.type, enabled=False):
            return self._detect(features.float(), image_size, targets)

    def _detect(self, features: Tensor, image_size: tuple[int, int],
                targets: list[Target] | None = None) -> list[Detections] | dict[str, Tensor]:
        n, _, h, w = features.shape
        rpn_features, rfcn_features = features.split(self.channels // 2, dim=1)
        # Anchors are laid out on the padded frame (h * 16, w * 16), so their stride is exactly 16.
        padded = features.new_zeros(1).expand(n, 3, h * FEATURE_STRIDE, w * FEATURE_STRIDE)
        images = ImageList(padded, [tuple(image_size)] * n)
        if targets is not None and not self.training:
            raise RuntimeError("targets are for training: call model.train() first")
        if targets is not None:
            targets = [trainable(t) for t in targets]
        proposals, rpn_losses = self.rpn(images, {"0": rpn_features}, targets)  # [(R_i, 4)], detached
        if targets is None:
            scores, deltas = self.rfcn(rfcn_features, proposals)
            return self.rfcn.detections(scores, deltas, proposals, image_size)
        rois, labels, box_targets = self.rfcn.targets(proposals, [t["boxes"] for t in targets],
                                                      [t["labels"] for t in targets])
        scores, deltas = self.rfcn(rfcn_features, rois)
        losses = self.rfcn.loss(scores, deltas, labels, box_targets, [len(r) for r in rois])
        return {"rpn_objectness": rpn_losses["loss_objectness"], "rpn_box": rpn_losses["loss_rpn_box_reg"], **losses}

    def predict(self, features: Tensor, size: tuple[int, int]) -> list[Detections]:
        """N_task's answer as streams give it out: features (N, C, h, w) -> each frame's detections."""
        return self.detect(features, size)

    def forward(self, current: Tensor, key: Tensor | None = None, same: Tensor | None = None,
                source: FlowSource | None = None, targets: list[Target] | None = None
                ) -> list[Detections] | dict[str, Tensor]:
        return self.detect(self.features(current, key, same, source), tuple(current.shape[-2:]), targets)


def trainable(target: Target, min_size: float = 1.0) -> Target:
    """The target without degenerate boxes (under ``min_size`` pixels between x1 and x2, or y1 and y2: a sliver
    of an object at the frame's edge), which would give RoIs of zero width and infinite box targets."""
    boxes = target["boxes"]
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    return {"boxes": boxes[keep], "labels": target["labels"][keep]}


def total_loss(losses: dict[str, Tensor]) -> Tensor:
    """The sum the detector is trained on."""
    return torch.stack(list(losses.values())).sum()
