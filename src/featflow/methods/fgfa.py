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

import torch.nn.functional as F
from torch import Tensor, nn

#: FGFA's aggregation: none, adaptive weights from the embedding network, or the plain mean (an ablation).
AGGREGATIONS: tuple[str | None, ...] = (None, "adaptive", "mean")


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


def aggregation_weights(current: Tensor, references: Tensor) -> Tensor:
    """Embeddings of the current frame (N, E, h, w) and of T warped frames (N, T, E, h, w) -> (N, T, 1, h, w)."""
    cos = (F.normalize(references, dim=2) * F.normalize(current, dim=1).unsqueeze(1)).sum(2, keepdim=True)
    return cos.softmax(dim=1)


class FlowGuidedAggregation(nn.Module):
    """The embedding network and the weighted average of already-warped features."""

    def __init__(self, channels: int, adaptive: bool = True) -> None:
        super().__init__()
        self.adaptive = adaptive
        self.embedding = EmbeddingNet(channels) if adaptive else None

    def embed(self, features: Tensor) -> Tensor:
        """(N, C, h, w) -> (N, E, h, w); E = 0 without adaptive weights (nothing to compare)."""
        if self.embedding is None:
            return features.new_zeros(features.shape[0], 0, *features.shape[2:])
        return self.embedding(features)

    def forward(self, current_embedding: Tensor, features: Tensor, embeddings: Tensor) -> Tensor:
        """current_embedding (N, E, h, w); warped features (N, T, C, h, w) and their embeddings (N, T, E, h, w)
        -> aggregated features (N, C, h, w)."""
        if features.shape[1] == 0:
            raise ValueError("aggregation needs at least one frame")
        if not self.adaptive:
            return features.mean(1)
        weights = aggregation_weights(current_embedding, embeddings)  # (N, T, 1, h, w)
        return (weights * features).sum(1)
