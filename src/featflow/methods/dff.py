"""Deep Feature Flow: run N_feat on sparse key frames and propagate its features to the other frames
by warping them (W) along the flow from F, multiplied by F's scale field.

``propagate_features`` and ``pair_features`` are DFF's steps over a video model's parts (N_feat and F, see
``featflow.methods.video_model``): a frame's features propagated from a key frame's. The DFF stream
(``featflow.methods.streams``) and training both use them, for every task.

Where the flow comes from is pluggable: the learned F (trained end to end, gradients reach it), or an
off-the-shelf estimator (``ShallowFlow``, the SFF baselines: no scale field, no gradients).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from featflow.modeling.feature_net import FEATURE_STRIDE
from featflow.modeling.preprocess import flow_input
from featflow.modeling.warp import propagate

if TYPE_CHECKING:
    from featflow.methods.video_model import VideoModel


class FlowSource(Protocol):
    def __call__(self, current: Tensor, key: Tensor) -> tuple[Tensor, Tensor | None]:
        """(N, 3, H, W) RGB frames in [0, 255] and their key frames (N, or 1 shared by all N) -> (flow (N, 2, h, w)
        in feature pixels, scale or None)."""


class ShallowFlow:
    """Off-the-shelf flow (e.g. OpenCV DIS or Farneback) as a flow source: the full-resolution
    current -> key flow, averaged over a 17x17 window centred on image pixel 16j (where feature
    pixel j sits) and divided by 16 (feature-map pixels)."""

    def __init__(self, estimator: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        self.estimator = estimator

    @torch.no_grad()
    def __call__(self, current: Tensor, key: Tensor) -> tuple[Tensor, None]:
        flows = []
        for cur, k in zip(current, key.expand_as(current)):  # (3, H, W) each
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

    def __init__(self, model: "VideoModel", with_scale: bool = True, capacity: int = 2) -> None:
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
        prepared = self._prepared(current)
        out = self.flow_net(prepared, self._prepared(key).expand_as(prepared), with_scale=self.with_scale)
        return out.flow, out.scale

    def pairs(self, current: Tensor, others: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        """One frame (1, 3, H, W) against each of ``others`` [(1, 3, H, W)] in one F call (FGFA's 2K pairs of a
        frame: a batch of b pairs keeps F's small convolutions busier than b calls) -> the current -> other flows
        (b, 2, h, w) and scale fields (or None), in the order of ``others``."""
        prepared = self._prepared(current)
        keys = torch.cat([self._prepared(other) for other in others])  # (b, 3, H/2, W/2)
        out = self.flow_net(prepared.expand(len(others), -1, -1, -1), keys, with_scale=self.with_scale)
        return out.flow, out.scale


def propagate_features(model: "VideoModel", key_features: Tensor, current: Tensor, key: Tensor,
                       source: FlowSource | None = None) -> Tensor:
    """Features of ``current`` warped from the key frame's: W(key_features, flow) * scale, the flow (and scale
    field) from ``source`` or else the model's F. ``current`` (N, 3, H, W) may be N frames of one key frame
    (``key`` and ``key_features`` of batch 1): F then runs on the N pairs in one batch (offline DFF)."""
    flow, scale = (source or model.learned_flow)(current, key)
    return propagate(key_features, flow, scale)


def pair_features(model: "VideoModel", current: Tensor, key: Tensor, same: Tensor | None = None,
                  source: FlowSource | None = None) -> Tensor:
    """DFF's training path: features of ``current`` (N, 3, H, W) propagated from N_feat on ``key``.

    ``same`` (N,) bool marks pairs whose key is the current frame itself; they use the key frame's features
    unwarped, as in DFF's training.
    """
    key_features = model.key_features(key)
    propagated = propagate_features(model, key_features, current, key, source)
    if same is not None:
        propagated = torch.where(same.view(-1, 1, 1, 1), key_features, propagated)
    return propagated
