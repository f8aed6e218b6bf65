"""The scale of N_feat's features (and of DFF's scale field) while a model evaluates.

Training N_feat can make its features grow without bound (the BatchNorm statistics and affine weights drift, or the
optimizer inflates ``feat_conv``) long before the held-out metric shows it. ``FeatureScale`` hooks N_feat and F for
the duration of an evaluation and reports the standard deviation of every feature value N_feat produced and the
mean of the scale field F produced, so each evaluation in a run's history shows whether the scale holds still. The
hooks only sum what the forward pass computes anyway.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle


class _Moments:
    """Count, sum and sum of squares of every value seen (float64, so long evaluations do not lose precision)."""

    def __init__(self) -> None:
        self.count, self.total, self.squares = 0, 0.0, 0.0

    def add(self, values: Tensor) -> None:
        values = values.detach().double()
        self.count += values.numel()
        self.total += float(values.sum())
        self.squares += float(values.square().sum())

    def mean(self) -> float:
        return self.total / self.count

    def std(self) -> float:
        return math.sqrt(max(self.squares / self.count - self.mean() ** 2, 0.0))


class FeatureScale:
    """``with FeatureScale(model) as scale: evaluate(model)``, then ``scale.metrics()``: ``feat_std`` (N_feat's output
    features, all frames, channels and pixels) and, when F computed a scale field, ``scale_mean``."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.features, self.scale = _Moments(), _Moments()
        self._handles: list[RemovableHandle] = []

    def _on_features(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        self.features.add(output)  # (N, C, h, w)

    def _on_flow(self, module: nn.Module, inputs: Any, output: Any) -> None:
        scale = getattr(output, "scale", None)  # (N, C, h, w) or None (FGFA skips the scale head)
        if scale is not None:
            self.scale.add(scale)

    def __enter__(self) -> "FeatureScale":
        self._handles.append(self.model.feature_net.register_forward_hook(self._on_features))
        if getattr(self.model, "flow_net", None) is not None:
            self._handles.append(self.model.flow_net.register_forward_hook(self._on_flow))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def metrics(self) -> dict[str, float]:
        """What was seen: {"feat_std": ..., "scale_mean": ...}, each only when there was something to measure."""
        out = {}
        if self.features.count:
            out["feat_std"] = self.features.std()
        if self.scale.count:
            out["scale_mean"] = self.scale.mean()
        return out


@torch.no_grad()
def feature_std(model: nn.Module, images: Tensor) -> float:
    """The standard deviation of N_feat's features of ``images`` (N, 3, H, W) RGB [0, 255] in inference mode (the
    model's mode is restored)."""
    training = model.training
    model.eval()
    with FeatureScale(model) as scale:
        model.key_features(images)
    model.train(training)
    return scale.metrics()["feat_std"]
