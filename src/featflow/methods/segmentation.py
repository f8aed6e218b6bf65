"""Video semantic segmentation: a ``VideoModel`` with the DeepLab-style head.

``VideoSegmenter`` builds the parts from their settings: N_feat, F for DFF (``flow_net``), FGFA's aggregation
(``aggregation``) and the ``SegmentationHead``. Without a flow network it is the per-frame model; with one,
``model(current, key)`` segments ``current`` from the key frame's propagated features (DFF), and
``model(current)`` runs it per frame. Everything else is ``VideoModel``'s.
"""

from __future__ import annotations

from featflow.methods.fgfa import build_aggregation
from featflow.methods.video_model import VideoModel
from featflow.modeling.feature_net import FeatureNet, Layout, NormKind
from featflow.modeling.flow_net import build_flow_net
from featflow.modeling.heads import SegmentationHead


class VideoSegmenter(VideoModel):
    """images (N, 3, H, W) RGB [0, 255] -> logits (N, num_classes, H, W)."""

    def __init__(self, num_classes: int, arch: str = "resnet18", channels: int = 128,
                 flow_net: str | None = None, aggregation: str | None = None, norm: NormKind = "batch",
                 layout: Layout = "msra") -> None:
        super().__init__(FeatureNet(arch, out_channels=channels, norm=norm, layout=layout),
                         SegmentationHead(channels, num_classes),
                         build_flow_net(flow_net, scale_channels=channels) if flow_net else None,
                         build_aggregation(aggregation, channels))
