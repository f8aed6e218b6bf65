"""Video object detection: a ``VideoModel`` with the R-FCN head (RPN + R-FCN, ``modeling.heads.DetectionHead``).

``VideoDetector`` builds the parts from their settings: N_feat, F for DFF (``flow_net``), FGFA's aggregation
(``aggregation``) and the detection head. ``model(current, key, same, targets=...)`` returns the training losses;
without targets, the detections of each frame (``featflow.structures.Detections``). Everything else is
``VideoModel``'s.
"""

from __future__ import annotations

from featflow.methods.fgfa import build_aggregation
from featflow.methods.video_model import VideoModel
from featflow.modeling.feature_net import FeatureNet, Layout, NormKind
from featflow.modeling.flow_net import build_flow_net
from featflow.modeling.heads import DetectionHead
from featflow.modeling.rfcn import RFCNConfig
from featflow.modeling.rpn import RPNConfig


class VideoDetector(VideoModel):
    """images (N, 3, H, W) RGB [0, 255] -> per-frame detections, or the losses when targets are given."""

    head: DetectionHead

    def __init__(self, num_classes: int, arch: str = "resnet18", channels: int = 128, flow_net: str | None = None,
                 aggregation: str | None = None, rpn: RPNConfig = RPNConfig(), rfcn: RFCNConfig = RFCNConfig(),
                 norm: NormKind = "batch", layout: Layout = "msra") -> None:
        head = DetectionHead(channels, num_classes, rpn, rfcn)  # first: it checks that channels split in two
        super().__init__(FeatureNet(arch, out_channels=channels, norm=norm, layout=layout), head,
                         build_flow_net(flow_net, scale_channels=channels) if flow_net else None,
                         build_aggregation(aggregation, channels))

    @property
    def anchor_sizes(self) -> tuple[int, ...]:
        """The RPN's anchor sizes (a detector checkpoint records them)."""
        return self.head.anchor_sizes
