"""Video methods as streams: frames go in one at a time, each frame's features come out, and memory is
bounded by what the next frame needs, never by the video's length. Task heads run on the features.

- ``KeyFrameFeatures``: per-frame (every frame a key frame) and DFF (the scheduler picks key frames; the
  others propagate the key frame's features). Holds the key frame's image and features.
- ``AggregatedFeatures``: FGFA over the window t-K..t+K (offline: output delayed K frames, the ends padded
  by repeating the first / last frame) or t-K..t (online: no delay). Holds a ring buffer of the last 2K+1
  frames' images, features and embeddings, each computed once; F runs once per (current, reference) pair.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch
from torch import Tensor

from featflow.methods.dff import DeepFeatureFlow, FlowSource, StreamFlow
from featflow.methods.schedulers import FixedInterval, KeyFrameScheduler


class KeyFrameFeatures:
    """(1, 3, H, W) frames -> (features (1, C, h, w), whether the frame was a key frame)."""

    def __init__(self, model: DeepFeatureFlow, propagate: bool, scheduler: KeyFrameScheduler | None = None,
                 source: FlowSource | None = None) -> None:
        if propagate and model.flow_net is None and source is None:
            raise ValueError("propagating features needs a model with a flow network (a DFF checkpoint) or a flow source")
        self.model, self.propagate = model, propagate
        # the key frame's input to F is prepared once, not once per frame that propagates from it
        self.source = source or (StreamFlow(model, with_scale=True, capacity=2) if propagate else None)
        self.scheduler = scheduler or FixedInterval(1)
        self.reset()

    def reset(self) -> None:
        self.index = 0
        self.key_image: Tensor | None = None
        self.key_features: Tensor | None = None
        self.scheduler.reset()

    @torch.no_grad()
    def step(self, image: Tensor) -> tuple[Tensor, bool]:
        is_key = not self.propagate or self.key_features is None or self.scheduler.is_key(self.index)
        if is_key:
            self.key_image, self.key_features = image, self.model.key_features(image)
            features = self.key_features
        else:
            features = self.model.propagate(self.key_features, image, self.key_image, self.source)
        self.index += 1
        return features, is_key


@dataclass
class _Entry:
    index: int
    image: Tensor  # (1, 3, H, W)
    maps: Tensor  # (1, C + E, h, w): the frame's features and embedding, stacked to be warped in one pass


class AggregatedFeatures:
    """FGFA as a stream. ``push(image)`` returns the (frame index, aggregated features) pairs that became
    ready (offline: frame t once frame t+K has arrived; online: the frame itself); ``finish()`` the rest.

    Each reference is compared with the current frame as soon as it is warped; only its warped features
    and its cosine map are kept for the weighted sum."""

    def __init__(self, model: DeepFeatureFlow, window: int = 10, online: bool = False,
                 source: FlowSource | None = None) -> None:
        if window < 0:
            raise ValueError(f"the aggregation window K must be >= 0, got {window}")
        if model.aggregator is None:
            raise ValueError("FGFA needs a model with an aggregation (embedding) network (an FGFA checkpoint)")
        self.model, self.window, self.online = model, window, online
        # each frame's input to F is prepared once for its 2K pairings (FGFA uses no scale field)
        learned = StreamFlow(model, with_scale=False, capacity=2 * window + 2) if model.flow_net is not None else None
        self.source = source or learned
        self.aggregator = model.aggregator
        self.reset()

    def reset(self) -> None:
        self.buffer: deque[_Entry] = deque(maxlen=2 * self.window + 1)
        self.next_out = 0  # the next frame whose features are due
        self.count = 0
        self.channels = 0  # C: where the features end and the embedding begins in an entry's maps

    def _aggregate(self, t: int, last: int) -> Tensor:
        """Frame t from the window t-K..t+K (online: t-K..t), clipped to frames 0..last and padded by repeats."""
        high = t if self.online else t + self.window
        by_index = {e.index: e for e in self.buffer}
        current = by_index[t]
        own_features, own_embedding = current.maps.split([self.channels, current.maps.shape[1] - self.channels], 1)
        aligned = {t: (own_features, self.aggregator.similarity(own_embedding, own_embedding))}
        features, similarities = [], []
        for j in range(t - self.window, high + 1):
            j = min(max(j, 0), last)  # the ends repeat the first / last frame
            if j not in aligned:  # F once per (current, reference) pair
                ref = by_index[j]
                warped = self.model.align(ref.maps, current.image, ref.image, self.source)
                f, e = warped.split([self.channels, warped.shape[1] - self.channels], 1)
                aligned[j] = (f, self.aggregator.similarity(own_embedding, e))
            features.append(aligned[j][0])
            similarities.append(aligned[j][1])
        return self.aggregator(features, similarities)

    @torch.no_grad()
    def push(self, image: Tensor) -> list[tuple[int, Tensor]]:
        features, embedding = self.model.frame_features(image)
        self.channels = features.shape[1]
        # channels-last: the warp gathers whole pixels (all C + E channels in one run of memory)
        maps = torch.cat([features, embedding], 1).contiguous(memory_format=torch.channels_last)
        self.buffer.append(_Entry(self.count, image, maps))
        self.count += 1
        ready = []
        while self.next_out < self.count and (self.online or self.next_out + self.window < self.count):
            ready.append((self.next_out, self._aggregate(self.next_out, self.count - 1)))
            self.next_out += 1
        return ready

    @torch.no_grad()
    def finish(self) -> list[tuple[int, Tensor]]:
        """The frames still waiting for their future neighbours, with the last frame repeated as padding."""
        ready = []
        while self.next_out < self.count:
            ready.append((self.next_out, self._aggregate(self.next_out, self.count - 1)))
            self.next_out += 1
        return ready
