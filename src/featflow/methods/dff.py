"""Deep Feature Flow: run N_feat on sparse key frames and propagate its features to the other frames
by warping them (W) along the flow from F, multiplied by F's scale field.

``DeepFeatureFlow`` holds N_feat and F and computes the features of a frame, either directly (a key
frame, or the per-frame baseline) or propagated from a key frame. Task models (segmentation,
detection) subclass it and add their head, so one DFF implementation serves every task.

With an aggregator (``featflow.methods.fgfa``) the same model also runs FGFA: the features of nearby
frames are warped to the current frame along F's flow (no scale field) and averaged with adaptive weights.

Where the flow comes from is pluggable: the learned F (trained end to end, gradients reach it), or an
off-the-shelf estimator (``ShallowFlow``, the SFF baselines: no scale field, no gradients).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featflow.methods.fgfa import FlowGuidedAggregation
from featflow.modeling.feature_net import FEATURE_STRIDE, FeatureNet
from featflow.modeling.flow_net import FlowNetBase
from featflow.modeling.preprocess import feature_input, flow_input
from featflow.modeling.warp import propagate, warp


class FlowSource(Protocol):
    def __call__(self, current: Tensor, key: Tensor) -> tuple[Tensor, Tensor | None]:
        """(N, 3, H, W) RGB frames in [0, 255] -> (flow (N, 2, h, w) in feature pixels, scale or None)."""


class ShallowFlow:
    """Off-the-shelf flow (e.g. OpenCV DIS or Farneback) as a flow source: the full-resolution
    current -> key flow, averaged over a 17x17 window centred on image pixel 16j (where feature
    pixel j sits) and divided by 16 (feature-map pixels)."""

    def __init__(self, estimator: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        self.estimator = estimator

    @torch.no_grad()
    def __call__(self, current: Tensor, key: Tensor) -> tuple[Tensor, None]:
        flows = []
        for cur, k in zip(current, key):  # (3, H, W) each
            a = cur.permute(1, 2, 0).clamp(0, 255).round().byte().cpu().numpy()
            b = k.permute(1, 2, 0).clamp(0, 255).round().byte().cpu().numpy()
            flows.append(torch.from_numpy(self.estimator(a, b)).permute(2, 0, 1))
        full = torch.stack(flows).to(current.device, current.dtype)  # (N, 2, H, W) image pixels
        pooled = F.avg_pool2d(full, FEATURE_STRIDE + 1, stride=FEATURE_STRIDE, padding=FEATURE_STRIDE // 2,
                              count_include_pad=False)  # (N, 2, ceil(H/16), ceil(W/16)): floor((H - 1) / 16) + 1
        return pooled / FEATURE_STRIDE, None


class StreamFlow:
    """A model's F as a flow source for streams, which pair each frame with many others: every frame's
    half-resolution input (``flow_input``) is prepared once and kept for the last ``capacity`` distinct frames
    (at 600x1000 on the CPU that is about 2 ms a frame, paid once instead of once per pair).

    Frames are recognised by identity: the streams pass the tensors they were given, and the cache holds each
    frame it remembers, so no other tensor can take its identity while it is there."""

    def __init__(self, model: "DeepFeatureFlow", with_scale: bool = True, capacity: int = 2) -> None:
        if model.flow_net is None:
            raise RuntimeError("this model has no flow network: it can only run per frame")
        if capacity < 2:
            raise ValueError(f"a pair needs room for two frames, got capacity {capacity}")
        self.flow_net, self.with_scale, self.capacity = model.flow_net, with_scale, capacity
        self._inputs: OrderedDict[int, tuple[Tensor, Tensor]] = OrderedDict()  # id -> (frame, its F input)

    def _prepared(self, image: Tensor) -> Tensor:
        hit = self._inputs.get(id(image))
        if hit is not None and hit[0] is image:
            self._inputs.move_to_end(id(image))
            return hit[1]
        prepared = flow_input(image)  # (N, 3, H/2, W/2)
        self._inputs[id(image)] = (image, prepared)
        while len(self._inputs) > self.capacity:
            self._inputs.popitem(last=False)
        return prepared

    def __call__(self, current: Tensor, key: Tensor) -> tuple[Tensor, Tensor | None]:
        out = self.flow_net(self._prepared(current), self._prepared(key), with_scale=self.with_scale)
        return out.flow, out.scale


class DeepFeatureFlow(nn.Module):
    """N_feat and F (and FGFA's aggregator). ``flow_net=None`` gives a per-frame model (features always
    computed directly); with an aggregator, it aggregates unwarped features (FGFA's "without flow" ablation)."""

    def __init__(self, feature_net: FeatureNet, flow_net: FlowNetBase | None = None,
                 aggregator: FlowGuidedAggregation | None = None) -> None:
        super().__init__()
        self.feature_net = feature_net
        self.flow_net = flow_net
        self.aggregator = aggregator

    @property
    def norm(self) -> str:
        """N_feat's normalisation: "batch" (trained BatchNorm) or "frozen" (fixed statistics and affine)."""
        return self.feature_net.norm

    def train(self, mode: bool = True) -> "DeepFeatureFlow":
        """Frozen parts (DFF fix N / fix F) stay in inference mode: their batch-norm statistics are
        part of what is frozen."""
        super().train(mode)
        for part in (self.feature_net, self.flow_net, self.aggregator):
            if part is not None and not any(p.requires_grad for p in part.parameters()):
                part.train(False)
        return self

    def for_inference(self, device: torch.device | str | None = None) -> "DeepFeatureFlow":
        """Evaluation mode on ``device`` (default: where the model is). On the CPU the weights are stored
        channels-last, oneDNN's fast layout for convolutions (ResNet-101 at 600x1000: 1.43 s -> 1.16 s)."""
        device = torch.device(device) if device is not None else next(self.parameters()).device
        self.eval().to(device)
        if device.type == "cpu":
            self.to(memory_format=torch.channels_last)
        return self

    def key_features(self, images: Tensor) -> Tensor:
        """N_feat: (N, 3, H, W) RGB [0, 255] -> (N, C, ceil(H/16), ceil(W/16))."""
        return self.feature_net(feature_input(images))

    def learned_flow(self, current: Tensor, key: Tensor, with_scale: bool = True) -> tuple[Tensor, Tensor | None]:
        """F: the current -> key flow (feature pixels) and the scale field (None unless ``with_scale``)."""
        if self.flow_net is None:
            raise RuntimeError("this model has no flow network: it can only run per frame")
        out = self.flow_net(flow_input(current), flow_input(key), with_scale=with_scale)
        return out.flow, out.scale

    def propagate(self, key_features: Tensor, current: Tensor, key: Tensor, source: FlowSource | None = None) -> Tensor:
        """Features of ``current`` warped from the key frame's: W(key_features, flow) * scale."""
        flow, scale = (source or self.learned_flow)(current, key)
        return propagate(key_features, flow, scale)

    def features(self, current: Tensor, key: Tensor | None = None, same: Tensor | None = None,
                 source: FlowSource | None = None) -> Tensor:
        """Features of ``current``: directly when ``key`` is None, else propagated from ``key``.

        ``same`` (N,) bool marks pairs whose key is the current frame itself; they use the key frame's
        features unwarped, as in DFF's training.
        """
        if key is None:
            return self.key_features(current)
        key_features = self.key_features(key)
        propagated = self.propagate(key_features, current, key, source)
        if same is not None:
            propagated = torch.where(same.view(-1, 1, 1, 1), key_features, propagated)
        return propagated

    # FGFA -------------------------------------------------------------------------------------------------

    def _aggregator(self) -> FlowGuidedAggregation:
        if self.aggregator is None:
            raise RuntimeError("this model has no aggregation network: it cannot run FGFA")
        return self.aggregator

    def frame_features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """N_feat and the embedding of frames (N, 3, H, W): what FGFA computes once per frame."""
        features = self.key_features(images)
        return features, self._aggregator().embed(features)

    def align(self, maps: Tensor, current: Tensor, reference: Tensor, source: FlowSource | None = None) -> Tensor:
        """A reference frame's maps (N, M, h, w), e.g. its features and embedding stacked along channels, warped
        to ``current`` along the current -> reference flow in one sampling pass (unchanged when the model has
        no flow: the "without flow" ablation). FGFA uses no scale field."""
        if source is not None:
            flow, _ = source(current, reference)
        elif self.flow_net is not None:
            flow, _ = self.learned_flow(current, reference, with_scale=False)
        else:
            return maps
        return warp(maps, flow)

    def aggregate(self, current_embedding: Tensor, features: list[Tensor], embeddings: list[Tensor]) -> Tensor:
        """Aligned features [(N, C, h, w)] * T and embeddings [(N, E, h, w)] * T -> the aggregated features."""
        aggregator = self._aggregator()
        return aggregator(features, [aggregator.similarity(current_embedding, e) for e in embeddings])

    def aggregated_features(self, current: Tensor, references: list[Tensor], include_current: bool = False,
                            source: FlowSource | None = None) -> Tensor:
        """FGFA's training path: features of ``current`` aggregated from the reference frames [(N, 3, H, W)]
        (and from itself when ``include_current``), every frame's N_feat run in one batch."""
        n = len(current)
        features, embeddings = self.frame_features(torch.cat([current, *references]))
        channels = features.shape[1]
        maps = torch.cat([features, embeddings], 1).split(n)  # [(N, C + E, h, w)] per frame
        aligned = [maps[0]] if include_current else []
        aligned += [self.align(m, current, reference, source) for m, reference in zip(maps[1:], references)]
        aligned_f, aligned_e = zip(*(a.split([channels, a.shape[1] - channels], dim=1) for a in aligned))
        return self.aggregate(embeddings[:n], list(aligned_f), list(aligned_e))
