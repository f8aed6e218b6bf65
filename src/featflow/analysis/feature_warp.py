"""Flow judged as recognition uses it: the feature warp error.

End-point error weighs every pixel's motion alike. DFF needs something else: the key frame's features, warped along
the flow at stride 16, should be the current frame's features. The feature warp error of a flow source on a pair is

    ||W(N_feat(key), flow) - N_feat(current)|| / ||N_feat(key) - N_feat(current)||

(Euclidean norms over feature cells and channels): 1 means the warp did no better than keeping the key frame's
features as they are (zero flow), 0 that it reproduced the current frame's features exactly. The norms run over the
cells whose content is in the key frame (the pair's exact flow, averaged to stride 16, keeps them inside the map),
the same cells for every source: a cell whose content left the frame has nothing to be warped from, and the warp's
zeros there would outweigh everything else. It is measured with a
trained N_feat, every flow source at the resolution DFF warps with: a flow network's own stride-16 output (in
feature pixels), and full-resolution flow (OpenCV's, or the exact flow of a synthetic pair) averaged to stride 16 as
DFF's shallow-flow rows do (``featflow.methods.dff.ShallowFlow``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from featflow.evaluation.flow_metrics import FlowEstimator, FlowPair
from featflow.methods.dff import ShallowFlow
from featflow.modeling.flow_net import FlowNetBase
from featflow.modeling.preprocess import flow_input, image_to_tensor
from featflow.modeling.warp import warp

#: A flow source for features: (pair, current (1, 3, H, W), key) -> the current -> key flow (1, 2, h, w) in
#: feature pixels at stride 16.
FeatureFlow = Callable[[FlowPair, Tensor, Tensor], Tensor]


def zero_feature_flow(pair: FlowPair, current: Tensor, key: Tensor) -> Tensor:
    """No motion: the key frame's features as they are."""
    h, w = -(-current.shape[-2] // 16), -(-current.shape[-1] // 16)
    return current.new_zeros(1, 2, h, w)


def exact_feature_flow(pair: FlowPair, current: Tensor, key: Tensor) -> Tensor:
    """The pair's exact flow, averaged to stride 16 as shallow flow is: the best a flow at this stride can do by
    following the pixels (it is not the best warp of the features: a cell's features mix its objects' motions)."""
    return ShallowFlow(lambda a, b: pair.flow)(current, key)[0]


def estimator_feature_flow(estimator: FlowEstimator) -> FeatureFlow:
    """A full-resolution estimator (OpenCV DIS, Farneback) averaged to stride 16."""
    source = ShallowFlow(estimator)
    return lambda pair, current, key: source(current, key)[0]


def network_feature_flow(net: FlowNetBase) -> FeatureFlow:
    """A flow network's own stride-16 output, the flow DFF warps with (no scale field)."""
    net = net.eval()
    return lambda pair, current, key: net(flow_input(current), flow_input(key), with_scale=False).flow


def _stays_inside(flow: Tensor) -> Tensor:
    """(1, 2, h, w) flow in cells -> (1, 1, h, w) 1 where the cell's target lies inside the map."""
    h, w = flow.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    x, y = xs + flow[:, 0:1], ys + flow[:, 1:2]
    return ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).to(flow.dtype)


@dataclass(frozen=True)
class FeatureWarpScore:
    error: float  # mean over pairs of ||W(f_key, flow) - f_cur|| / ||f_key - f_cur||
    pairs: int


@torch.no_grad()
def feature_warp_error(features: Callable[[Tensor], Tensor], source: FeatureFlow, pairs: list[FlowPair],
                       desc: str | None = None, progress: bool = False) -> FeatureWarpScore:
    """The feature warp error of ``source`` over ``pairs``, with ``features`` ((1, 3, H, W) RGB [0, 255] ->
    (1, C, h, w): a trained N_feat, e.g. ``VideoModel.key_features``)."""
    if not pairs:
        raise ValueError("no pairs to evaluate on")
    ratios = []
    for pair in tqdm(pairs, desc=desc, disable=not progress, leave=False):
        current, key = image_to_tensor(pair.current), image_to_tensor(pair.key)
        f_cur, f_key = features(current), features(key)  # (1, C, h, w)
        flow = source(pair, current, key).to(f_key.dtype)
        if flow.shape[-2:] != f_key.shape[-2:]:
            raise ValueError(f"flow {tuple(flow.shape)} does not match the features {tuple(f_key.shape)}")
        inside = _stays_inside(exact_feature_flow(pair, current, key))  # (1, 1, h, w)
        moved = torch.linalg.vector_norm((f_key - f_cur) * inside)
        ratios.append(float(torch.linalg.vector_norm((warp(f_key, flow) - f_cur) * inside) / moved.clamp_min(1e-12)))
    return FeatureWarpScore(float(np.mean(ratios)), len(pairs))
