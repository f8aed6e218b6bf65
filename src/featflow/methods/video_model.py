"""The video model: N_feat, optionally F and FGFA's aggregation, and one task head, composed.

``VideoModel`` holds the parts and the steps every method shares: N_feat on a frame (``key_features``), F on a pair
(``learned_flow``) and the head on features (``predict``, ``forward``). How a frame's features are obtained is the
method's: per frame, DFF (``featflow.methods.dff``: propagation from a key frame) or FGFA
(``featflow.methods.fgfa``: aggregation of warped neighbours), as streams for inference
(``featflow.methods.streams``) and as ``clip_features`` for training. The head decides the task (a
``SegmentationHead`` or a ``DetectionHead``, ``featflow.modeling.heads``), so every method serves every task.
``VideoSegmenter`` and ``VideoDetector`` (``methods/segmentation.py``, ``methods/detection.py``) build the parts
of each task's model from their settings.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from featflow.methods.dff import FlowSource, pair_features
from featflow.methods.fgfa import FlowGuidedAggregation, aggregated_features
from featflow.modeling.feature_net import FeatureNet
from featflow.modeling.flow_net import FlowNetBase
from featflow.modeling.heads import DetectionHead, SegmentationHead
from featflow.modeling.preprocess import feature_input, flow_input

#: A task head: features (N, C, h, w) of frames of one size -> each frame's answer.
TaskHead = SegmentationHead | DetectionHead


class VideoModel(nn.Module):
    """N_feat (+ F) (+ FGFA's aggregation) + a task head. ``flow_net=None`` gives a per-frame model (features always
    computed directly); with an aggregator and no F it aggregates unwarped features (FGFA's "without flow"
    ablation)."""

    #: FGFA's training path also aggregates the current frame, as the test window does (the papers: the
    #: references only); set by the training config (``ModelConfig.train_with_current``), not saved.
    train_with_current: bool = False

    def __init__(self, feature_net: FeatureNet, head: TaskHead, flow_net: FlowNetBase | None = None,
                 aggregator: FlowGuidedAggregation | None = None) -> None:
        super().__init__()
        self.feature_net = feature_net
        self.flow_net = flow_net
        self.aggregator = aggregator
        self.head = head

    # what the model is (checkpoints record these) ------------------------------------------------------------

    @property
    def arch(self) -> str:
        return self.feature_net.arch

    @property
    def channels(self) -> int:
        return self.feature_net.out_channels

    @property
    def norm(self) -> str:
        """N_feat's normalisation: "batch" (trained BatchNorm) or "frozen" (fixed statistics and affine)."""
        return self.feature_net.norm

    @property
    def flow_name(self) -> str | None:
        return self.flow_net.name if self.flow_net is not None else None

    @property
    def aggregation(self) -> str | None:
        return self.aggregator.name if self.aggregator is not None else None

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    # modes --------------------------------------------------------------------------------------------------

    def train(self, mode: bool = True) -> "VideoModel":
        """Frozen parts (DFF fix N / fix F) stay in inference mode: their batch-norm statistics are
        part of what is frozen."""
        super().train(mode)
        for part in (self.feature_net, self.flow_net, self.aggregator):
            if part is not None and not any(p.requires_grad for p in part.parameters()):
                part.train(False)
        return self

    def for_inference(self, device: torch.device | str | None = None, compile: bool = False) -> "VideoModel":
        """Evaluation mode on ``device`` (default: where the model is), for inference only: N_feat's BatchNorm is
        folded into its convolutions (``FeatureNet.fold_batchnorm``; training afterwards raises). On the CPU the
        weights are stored channels-last, oneDNN's fast layout for convolutions (ResNet-101 at 600x1000: 1.43 s ->
        1.16 s).

        ``compile``: N_feat, F, the embedding network and a segmenter's labels (``SegmentationHead.compile_predict``)
        go through ``torch.compile`` with frozen weights (inductor's
        freezing: weights become constants, prepacked for oneDNN), which on this project's 2-core CPU ran ResNet-101
        at 600x1000 in 1.77 s instead of 2.08 and FlowNet in 154 ms instead of 191 (``reports/speed.md``). The first
        call at each input size pays the compilation (seconds to a minute); the weights must not change after."""
        device = torch.device(device) if device is not None else next(self.parameters()).device
        self.eval().to(device)
        self.feature_net.fold_batchnorm()  # for inference only: training afterwards raises
        if device.type == "cpu":
            self.to(memory_format=torch.channels_last)
        if compile:
            embedding = self.aggregator.embedding if self.aggregator is not None else None
            for part in (self.feature_net, self.flow_net, embedding):
                if part is not None:
                    part.compile(options={"freezing": True})
            self.head.compile_predict()  # segmentation: the upsampling and argmax fused
        return self

    # the shared steps ---------------------------------------------------------------------------------------

    def key_features(self, images: Tensor) -> Tensor:
        """N_feat: (N, 3, H, W) RGB [0, 255] -> (N, C, ceil(H/16), ceil(W/16))."""
        return self.feature_net(feature_input(images))

    def learned_flow(self, current: Tensor, key: Tensor, with_scale: bool = True) -> tuple[Tensor, Tensor | None]:
        """F: the current -> key flow (feature pixels) and the scale field (None unless ``with_scale``); one key
        frame (batch 1) may serve every current frame."""
        if self.flow_net is None:
            raise RuntimeError("this model has no flow network: it can only run per frame")
        prepared = flow_input(current)
        out = self.flow_net(prepared, flow_input(key).expand_as(prepared), with_scale=with_scale)
        return out.flow, out.scale

    def features(self, current: Tensor, key: Tensor | None = None, same: Tensor | None = None,
                 source: FlowSource | None = None) -> Tensor:
        """Features of ``current``: directly when ``key`` is None, else propagated from ``key`` (DFF,
        ``featflow.methods.dff.pair_features``)."""
        if key is None:
            return self.key_features(current)
        return pair_features(self, current, key, same, source)

    def clip_features(self, current: Tensor, references: Tensor, same: Tensor) -> Tensor:
        """The training features of a batch of clips by the model's method: current (N, 3, H, W), references
        (N, R, 3, H, W), same (N, R) -> (N, C, h, w). FGFA aggregates the references, with the current frame
        where ``train_with_current`` (the model has an aggregation), DFF propagates from the first (it has F),
        per frame uses neither."""
        if self.aggregator is not None:  # FGFA and its ablations
            return aggregated_features(self, current, list(references.unbind(1)), self.train_with_current)
        if self.flow_net is not None:
            return self.features(current, references[:, 0], same[:, 0])
        return self.key_features(current)

    def predict(self, features: Tensor, size: tuple[int, int]) -> Any:
        """N_task's answer as streams give it out: features (N, C, h, w) -> a label map (N, H, W) or each frame's
        detections."""
        return self.head.predict(features, size)

    def forward(self, current: Tensor, key: Tensor | None = None, same: Tensor | None = None,
                source: FlowSource | None = None, **head_inputs: Any) -> Any:
        """The head on ``current``'s features (``features``): a segmenter's logits (N, classes, H, W); a
        detector's detections, or its losses given ``targets=``."""
        return self.head(self.features(current, key, same, source), tuple(current.shape[-2:]), **head_inputs)
