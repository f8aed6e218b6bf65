"""Flow-Guided Feature Aggregation (FGFA): the features of nearby frames, warped to the current frame
along the flow, averaged with adaptive per-pixel weights.

    f_t = sum_j w_{j->t} * W(f_j, F(I_t, I_j)),   w_{j->t} = softmax_j( cos(e(f_t), e(W(f_j, ...))) )

``e`` is the embedding network (1x1 C -> C/2, ReLU, 3x3 C/2 -> C/2, ReLU, 1x1 C/2 -> 2C; C = 1024 in the paper),
the cosine is per pixel over the L2-normalised embeddings, and the softmax runs across frames with no
temperature. There is no scale field. The module works on any task's features: a ``VideoModel`` of either task
holds one as its ``aggregator``. ``frame_features``, ``align`` and ``aggregated_features`` are FGFA's steps over
a video model's parts (N_feat, F, the aggregation); the FGFA stream (``featflow.methods.streams``) and training
both use them.

The paper's ablations come from the same module: ``adaptive=False`` averages the frames with equal weights
(no embedding network), and a model without a flow network aggregates unwarped features.

``learned_temperature`` (aggregation ``adaptive-temperature``, not in the paper) multiplies the cosines by a
learned temperature T before the softmax. Cosines lie in [-1, 1], so without it one frame's share of 2K+1 frames
can never exceed e / (e + 2K / e) (27% of 21 frames), and a trained embedding whose cosines sit near 1 averages
almost uniformly: the measured current-frame weight of the VID-geometry FGFA model was 0.052 of 21 frames.
The gradient of one scalar s is small beside the network's (about 5e-3 at the start of training there), so s
is stored as s / ``TEMPERATURE_RATE`` (T = exp(s)): under SGD that is a ``TEMPERATURE_RATE ** 2`` larger learning
rate for s. Trained there, T rose to about 1000 and the current frame's weight to 0.67 (reports/detection_vid.md).

``quality`` (aggregation ``adaptive-quality``, not in the paper) adds, to the learned temperature, a per-pixel
quality logit q_j = Q(e_j), a 1x1 convolution on each frame's own warped embedding:
w_{j->t} = softmax_j(T * cos(e_t, e_j) + q_j). The cosine can only favour frames that look like the current one,
blur and occlusion included; q lets a sharp neighbour outweigh a deteriorated current frame, the case FGFA exists
for. Q starts at zero, so training starts from the temperature model's (and at T = 1 the paper's) weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from featflow.modeling.warp import warp
from featflow.registry import AGGREGATIONS, check_choice

if TYPE_CHECKING:
    from featflow.methods.dff import FlowSource
    from featflow.methods.video_model import VideoModel

TEMPERATURE_RATE = 10.0  # T = exp(TEMPERATURE_RATE * log_temperature): a 100x learning rate for the one scalar


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
    """Per-pixel cosine of two embeddings (N, E, h, w) -> (N, 1, h, w), the logits of the aggregation weights.

    Always in float32, outside autocast: bfloat16 would round the dot product of E = 2048 channels, and its
    batched dot products ran 2.7x slower than casting first (channels-last at 38x63 on 2 AMX Xeon cores: 10.2 ms
    a frame against 3.8; float32 inputs 1.6 either way)."""
    with torch.autocast(current.device.type, enabled=False):
        current, embedding = current.float(), embedding.float()
        dot = torch.einsum("nchw,nchw->nhw", current, embedding)  # a batched dot product: no (N, E, h, w) temporary
        norms = torch.linalg.vector_norm(current, dim=1) * torch.linalg.vector_norm(embedding, dim=1)
        return (dot / norms.clamp_min(1e-12)).unsqueeze(1)


def aggregation_weights(similarities: Tensor, temperature: Tensor | float = 1.0,
                        quality: Tensor | None = None) -> Tensor:
    """Cosines of T frames (N, T, 1, h, w) -> their weights, a softmax across the frames of the cosines times
    ``temperature`` (the paper: 1), plus each frame's quality logits (N, T, 1, h, w) where given."""
    logits = similarities * temperature
    return (logits if quality is None else logits + quality).softmax(dim=1)


def build_aggregation(name: str | None, channels: int) -> "FlowGuidedAggregation | None":
    """The aggregation ``name`` (``featflow.registry.AGGREGATIONS``) over ``channels`` feature channels; None
    for a model without one."""
    if name is None:
        return None
    check_choice("aggregation", name, AGGREGATIONS)
    aggregation = FlowGuidedAggregation(channels, adaptive=name != "mean",
                                        learned_temperature=name in ("adaptive-temperature", "adaptive-quality"),
                                        quality=name == "adaptive-quality")
    aggregation.name = name
    return aggregation


class FlowGuidedAggregation(nn.Module):
    """The embedding network and the weighted average of already-warped features.

    The aggregation takes one similarity map per frame (``similarity``) rather than the warped embeddings, so that a
    stream can compare each reference with the current frame as soon as it is warped and drop its
    embedding (2C channels) at once: memory and time then grow with the features alone.
    """

    name: str = ""  # the registry's name (``build_aggregation`` sets it): what checkpoints record

    def __init__(self, channels: int, adaptive: bool = True, learned_temperature: bool = False,
                 quality: bool = False) -> None:
        super().__init__()
        if (learned_temperature or quality) and not adaptive:
            raise ValueError("a learned temperature or quality needs adaptive weights")
        self.adaptive = adaptive
        self.embedding = EmbeddingNet(channels) if adaptive else None
        # T = exp(TEMPERATURE_RATE * log_temperature); starts at the paper's T = 1
        self.log_temperature = nn.Parameter(torch.zeros(())) if learned_temperature else None
        # Q: a frame's embedding (N, 2C, h, w) -> its quality logit (N, 1, h, w); zero at the start
        self.quality = nn.Conv2d(2 * channels, 1, 1) if quality else None
        if self.quality is not None:
            nn.init.zeros_(self.quality.weight)
            nn.init.zeros_(self.quality.bias)

    @property
    def temperature(self) -> Tensor | float:
        """The factor on the cosines before the softmax (1.0 without a learned temperature)."""
        return 1.0 if self.log_temperature is None else (TEMPERATURE_RATE * self.log_temperature).exp()

    def embed(self, features: Tensor) -> Tensor:
        """(N, C, h, w) -> (N, E, h, w); E = 0 without adaptive weights (nothing to compare)."""
        if self.embedding is None:
            return features.new_zeros(features.shape[0], 0, *features.shape[2:])
        return self.embedding(features)

    def similarity(self, current_embedding: Tensor, embedding: Tensor) -> Tensor | None:
        """What a warped frame's weight depends on, per pixel: the cosine of its embedding against the current
        frame's (N, 1, h, w), and with a quality head its quality logit as a second channel (N, 2, h, w); None
        without adaptive weights."""
        if not self.adaptive:
            return None
        cosine = cosine_similarity(current_embedding, embedding)
        if self.quality is None:
            return cosine
        return torch.cat([cosine, self.quality(embedding).float()], 1)

    def weights(self, similarities: Sequence[Tensor]) -> Tensor:
        """The similarity maps of T frames [(N, 1 or 2, h, w)] * T -> their weights (N, T, 1, h, w)."""
        maps = torch.stack(list(similarities), 1)  # (N, T, 1 or 2, h, w)
        quality = maps[:, :, 1:] if self.quality is not None else None
        return aggregation_weights(maps[:, :, :1], self.temperature, quality)

    def forward(self, features: Sequence[Tensor], similarities: Sequence[Tensor | None]) -> Tensor:
        """Warped features [(N, C, h, w)] * T and their similarity maps [(N, 1 or 2, h, w)] * T -> (N, C, h, w)."""
        if not features:
            raise ValueError("aggregation needs at least one frame")
        if len(similarities) != len(features):
            raise ValueError(f"{len(features)} frames but {len(similarities)} similarity maps")
        if self.adaptive:
            weights = self.weights(similarities).unbind(1)  # [(N, 1, h, w)] * T
        else:
            weights = [1.0 / len(features)] * len(features)
        out = features[0] * weights[0]
        for f, w in zip(features[1:], weights[1:]):  # accumulated in place: no (N, T, C, h, w) copy, no temporaries
            if isinstance(w, Tensor):
                out.addcmul_(f, w)
            else:
                out.add_(f, alpha=w)
        return out

    def aggregate(self, current_embedding: Tensor, features: Sequence[Tensor], embeddings: Sequence[Tensor]) -> Tensor:
        """Aligned features [(N, C, h, w)] * T and embeddings [(N, E, h, w)] * T -> the aggregated features."""
        return self(features, [self.similarity(current_embedding, e) for e in embeddings])


def _aggregator(model: "VideoModel") -> FlowGuidedAggregation:
    if model.aggregator is None:
        raise RuntimeError("this model has no aggregation network: it cannot run FGFA")
    return model.aggregator


def frame_features(model: "VideoModel", images: Tensor) -> tuple[Tensor, Tensor]:
    """N_feat and the embedding of frames (N, 3, H, W): what FGFA computes once per frame."""
    features = model.key_features(images)
    return features, _aggregator(model).embed(features)


def align(model: "VideoModel", maps: Tensor, current: Tensor, reference: Tensor,
          source: "FlowSource | None" = None) -> Tensor:
    """A reference frame's maps (N, M, h, w), e.g. its features and embedding stacked along channels, warped to
    ``current`` along the current -> reference flow in one sampling pass (unchanged when the model has no flow:
    the "without flow" ablation). FGFA uses no scale field."""
    if source is not None:
        flow, _ = source(current, reference)
    elif model.flow_net is not None:
        flow, _ = model.learned_flow(current, reference, with_scale=False)
    else:
        return maps
    return warp(maps, flow)


def aligned_similarity(model: "VideoModel", maps: Tensor, current: Tensor, reference: Tensor,
                       current_embedding: Tensor, channels: int, source: "FlowSource | None" = None
                       ) -> tuple[Tensor, Tensor | None]:
    """A reference frame's maps (N, C + E, h, w) aligned to ``current``: its warped features (N, C, h, w) and their
    similarity map against the current frame's embedding (``FlowGuidedAggregation.similarity``)."""
    return warped_similarity(model, align(model, maps, current, reference, source), current_embedding, channels)


def warped_similarity(model: "VideoModel", warped: Tensor, current_embedding: Tensor, channels: int
                      ) -> tuple[Tensor, Tensor | None]:
    """A reference frame's warped maps (N, C + E, h, w) -> its features (N, C, h, w) and their similarity map
    against the current frame's embedding (``FlowGuidedAggregation.similarity``; None without adaptive weights)."""
    features, embedding = warped.split([channels, warped.shape[1] - channels], 1)
    return features, _aggregator(model).similarity(current_embedding, embedding)


def window_features(model: "VideoModel", frames: Sequence[Tensor], t: int,
                    source: "FlowSource | None" = None) -> Tensor:
    """FGFA at test time for one frame: frame ``t`` of the window ``frames`` [(1, 3, H, W)] (its neighbours t-K..t+K
    in order) aggregated from every frame of it, as the stream does. Each frame's N_feat runs on its own, so memory
    holds one frame's activations, not the window's: the evaluation of one labelled frame."""
    current = frames[t]
    features, embedding = frame_features(model, current)
    channels = features.shape[1]
    aligned, similarities = [], []
    for j, frame in enumerate(frames):
        if j == t:
            f, sim = features, _aggregator(model).similarity(embedding, embedding)
        else:
            maps = torch.cat(frame_features(model, frame), 1)
            f, sim = aligned_similarity(model, maps, current, frame, embedding, channels, source)
        aligned.append(f)
        similarities.append(sim)
    return _aggregator(model)(aligned, similarities)


def aggregated_features(model: "VideoModel", current: Tensor, references: list[Tensor], include_current: bool = False,
                        source: "FlowSource | None" = None) -> Tensor:
    """FGFA's training path: features of ``current`` aggregated from the reference frames [(N, 3, H, W)] (and
    from itself when ``include_current``), every frame's N_feat run in one batch."""
    n = len(current)
    features, embeddings = frame_features(model, torch.cat([current, *references]))
    channels = features.shape[1]
    maps = torch.cat([features, embeddings], 1).split(n)  # [(N, C + E, h, w)] per frame
    aligned = [maps[0]] if include_current else []
    aligned += [align(model, m, current, reference, source) for m, reference in zip(maps[1:], references)]
    aligned_f, aligned_e = zip(*(a.split([channels, a.shape[1] - channels], dim=1) for a in aligned))
    return _aggregator(model).aggregate(embeddings[:n], list(aligned_f), list(aligned_e))
