"""Flow-Guided Feature Aggregation (FGFA): the features of nearby frames, warped to the current frame
along the flow, averaged with adaptive per-pixel weights.

    f_t = sum_j w_{j->t} * W(f_j, F(I_t, I_j)),   w_{j->t} = softmax_j( cos(e(f_t), e(W(f_j, ...))) )

``e`` is the embedding network (1x1 C -> C/2, ReLU, 3x3 C/2 -> C/2, ReLU, 1x1 C/2 -> 2C; C = 1024 in the paper),
the cosine is per pixel over the L2-normalised embeddings, and the softmax runs across frames with no
temperature. There is no scale field. The module works on any task's features (the detection and the
segmentation models hold one the same way, see ``DeepFeatureFlow``).

The paper's ablations come from the same module: ``adaptive=False`` averages the frames with equal weights
(no embedding network), and a model without a flow network aggregates unwarped features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from featflow.registry import AGGREGATIONS  # noqa: F401  (the aggregations this module implements)


class EmbeddingNet(nn.Module):
    """features (N, C, h, w) -> embeddings (N, 2C, h, w), the similarity space of the aggregation weights."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // 2, 1)
        self.layers = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 2 * channels, 1))

    def forward(self, features: Tensor) -> Tensor:
        return self.layers(features)


def cosine_similarity(current: Tensor, embedding: Tensor) -> Tensor:
    """Per-pixel cosine of two embeddings (N, E, h, w) -> (N, 1, h, w), the logits of the aggregation weights."""
    dot = torch.einsum("nchw,nchw->nhw", current, embedding)  # a batched dot product: no (N, E, h, w) temporary
    norms = torch.linalg.vector_norm(current, dim=1) * torch.linalg.vector_norm(embedding, dim=1)
    return (dot / norms.clamp_min(1e-12)).unsqueeze(1)


def aggregation_weights(similarities: Tensor) -> Tensor:
    """Cosines of T frames (N, T, 1, h, w) -> their weights, a softmax across the frames (no temperature)."""
    return similarities.softmax(dim=1)


class FlowGuidedAggregation(nn.Module):
    """The embedding network and the weighted average of already-warped features.

    The aggregation takes one cosine map per frame rather than the warped embeddings themselves, so that a
    stream can compare each reference with the current frame as soon as it is warped and drop its
    embedding (2C channels) at once: memory and time then grow with the features alone.
    """

    def __init__(self, channels: int, adaptive: bool = True) -> None:
        super().__init__()
        self.adaptive = adaptive
        self.embedding = EmbeddingNet(channels) if adaptive else None

    def embed(self, features: Tensor) -> Tensor:
        """(N, C, h, w) -> (N, E, h, w); E = 0 without adaptive weights (nothing to compare)."""
        if self.embedding is None:
            return features.new_zeros(features.shape[0], 0, *features.shape[2:])
        return self.embedding(features)

    def similarity(self, current_embedding: Tensor, embedding: Tensor) -> Tensor | None:
        """The cosine map (N, 1, h, w) of a warped frame's embedding against the current frame's; None
        without adaptive weights."""
        return cosine_similarity(current_embedding, embedding) if self.adaptive else None

    def forward(self, features: Sequence[Tensor], similarities: Sequence[Tensor | None]) -> Tensor:
        """Warped features [(N, C, h, w)] * T and their cosine maps [(N, 1, h, w)] * T -> (N, C, h, w)."""
        if not features:
            raise ValueError("aggregation needs at least one frame")
        if len(similarities) != len(features):
            raise ValueError(f"{len(features)} frames but {len(similarities)} similarity maps")
        if self.adaptive:
            weights = aggregation_weights(torch.stack(list(similarities), 1)).unbind(1)  # [(N, 1, h, w)] * T
        else:
            weights = [1.0 / len(features)] * len(features)
        out = features[0] * weights[0]
        for f, w in zip(features[1:], weights[1:]):  # accumulated: no (N, T, C, h, w) copy of the features
            out = out + f * w
        return out
