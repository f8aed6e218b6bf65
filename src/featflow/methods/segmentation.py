"""Video semantic segmentation: the per-frame baseline and DFF over the same modules.

``VideoSegmenter`` = N_feat (+ F) + the DeepLab-style head. Without a flow network it is the
per-frame model; with one, ``forward(current, key)`` segments ``current`` from the key frame's
propagated features (DFF), and ``forward(current)`` runs it per frame. With ``aggregation`` it also
holds FGFA's embedding network, so FGFA segments through the same aggregation code as detection.
"""

from __future__ import annotations

from torch import Tensor

from featflow.methods.dff import DeepFeatureFlow, FlowSource
from featflow.methods.fgfa import build_aggregation
from featflow.modeling.feature_net import FeatureNet, Layout, NormKind
from featflow.modeling.flow_net import build_flow_net
from featflow.modeling.heads import SegmentationHead
from featflow.registry import AGGREGATIONS, check_choice


class VideoSegmenter(DeepFeatureFlow):
    """images (N, 3, H, W) RGB [0, 255] -> logits (N, num_classes, H, W)."""

    def __init__(self, num_classes: int, arch: str = "resnet18", channels: int = 128,
                 flow_net: str | None = None, aggregation: str | None = None, norm: NormKind = "batch",
                 layout: Layout = "msra") -> None:
        check_choice("aggregation", aggregation, AGGREGATIONS)
        super().__init__(FeatureNet(arch, out_channels=channels, norm=norm, layout=layout),
                         build_flow_net(flow_net, scale_channels=channels) if flow_net else None,
                         build_aggregation(aggregation, channels))
        self.arch, self.channels, self.flow_name, self.aggregation = arch, channels, flow_net, aggregation
        self.head = SegmentationHead(channels, num_classes)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def segment(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        """N_task: features -> logits at ``size``."""
        return self.head(features, size)

    def predict(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        """N_task's answer as streams give it out: features (N, C, h, w) -> (N, H, W) uint8 class ids."""
        return self.segment(features, size).argmax(1).byte()

    def forward(self, current: Tensor, key: Tensor | None = None, same: Tensor | None = None,
                source: FlowSource | None = None) -> Tensor:
        return self.segment(self.features(current, key, same, source), current.shape[-2:])
