"""Video methods as streams: frames go in one at a time, each frame's features come out, and memory is
bounded by what the next frame needs, never by the video's length. Task heads run on the features.

Every method is a ``FeatureStream``: ``push(image)`` returns the frames whose features became ready, as
``StreamItem(index, features, is_key)``, and ``finish()`` the ones still waiting at the end. The same streams serve
every task (a segmenter and a detector are both a ``VideoModel``, with its own head). ``featflow.registry.STRATEGIES``
names each method once, as "module:Class"; ``build_stream`` builds one by name, and ``supported`` says which a model
can run. A new way of getting features is one class here (or anywhere) and one line there.

- ``KeyFrameFeatures``: per-frame (every frame a key frame) and DFF (the scheduler picks key frames; the
  others propagate the key frame's features). Holds the key frame's image and features. ``PerFrame``, ``DFF``
  and ``SFFSlow`` / ``SFFFast`` (propagation along OpenCV's DIS flow) are its named forms. With
  ``flow_batch`` b > 1 it runs offline: propagated frames wait until b of them share a key frame (or the next key
  frame or the end comes), and F runs on them in one batch, which reads F's weights once for b frames.
- ``AggregatedFeatures``: FGFA over the window t-K..t+K (offline: output delayed K frames, the ends padded
  by repeating the first / last frame) or t-K..t (online: no delay). Holds a ring buffer of the last 2K+1
  frames' images, features and embeddings, each computed once; F runs once per (current, reference) pair.
"""

from __future__ import annotations

import importlib
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor

from featflow.errors import FeatflowError
from featflow.methods.dff import FlowSource, ShallowFlow, StreamFlow, propagate_features
from featflow.methods.fgfa import aligned_similarity, frame_features, warped_similarity
from featflow.methods.schedulers import FixedInterval, KeyFrameScheduler
from featflow.methods.video_model import VideoModel
from featflow.modeling.precision import autocast, autocast_dtype
from featflow.modeling.preprocess import image_to_tensor
from featflow.modeling.shallow_flow import DISFlow
from featflow.modeling.warp import warp
from featflow.registry import STRATEGIES, check_choice


class StreamItem(NamedTuple):
    """One frame's features as a stream gives them out."""

    index: int  # the frame's position in the stream
    features: Tensor  # (1, C, h, w)
    is_key: bool  # N_feat ran on this frame


class FeatureStream(Protocol):
    """Frames in, features out, with bounded memory."""

    def reset(self) -> None:
        """Forget everything: a new video starts."""

    def push(self, image: Tensor) -> list[StreamItem]:
        """One (1, 3, H, W) RGB [0, 255] frame -> the frames whose features are now ready, in order."""

    def finish(self) -> list[StreamItem]:
        """The frames still waiting at the end of the video."""


@dataclass(frozen=True)
class StreamOptions:
    """What a stream may be told besides its model: the key-frame schedule (DFF, SFF), FGFA's window and mode,
    a flow source that replaces the model's F (the exact-flow diagnostic), and the numeric precision
    (``featflow.modeling.precision``: "bf16" autocasts N_feat, F, W and the aggregation; the heads' box arithmetic
    stays float32)."""

    scheduler: KeyFrameScheduler | None = None  # None: every frame is a key frame
    window: int = 10  # FGFA's K
    online: bool = False  # FGFA on frames t-K..t only
    source: FlowSource | None = None
    precision: str = "fp32"
    flow_batch: int = 1  # DFF / SFF: propagated frames per flow call (> 1: offline, up to flow_batch - 1 frames late)

    def __post_init__(self) -> None:
        if self.flow_batch < 1:
            raise FeatflowError(f"flow_batch must be at least 1, got {self.flow_batch}")


class KeyFrameFeatures:
    """(1, 3, H, W) frames -> (features (1, C, h, w), whether the frame was a key frame): ``step`` for one frame
    at a time, ``push`` / ``finish`` as a ``FeatureStream`` (no delay: every push gives out its own frame, unless
    ``flow_batch`` > 1: then propagated frames come out in batches, see ``push``)."""

    def __init__(self, model: VideoModel, propagate: bool, scheduler: KeyFrameScheduler | None = None,
                 source: FlowSource | None = None, flow_batch: int = 1) -> None:
        if propagate and model.flow_net is None and source is None:
            raise ValueError("propagating features needs a model with a flow network (a DFF checkpoint) "
                             "or a flow source")
        if flow_batch < 1:
            raise ValueError(f"flow_batch must be at least 1, got {flow_batch}")
        self.model, self.propagate, self.flow_batch = model, propagate, flow_batch
        # the key frame's input to F is prepared once, not once per frame that propagates from it
        self.source = source or (StreamFlow(model, with_scale=True, capacity=2) if propagate else None)
        self.scheduler = scheduler or FixedInterval(1)
        self.reset()

    def reset(self) -> None:
        self.index = 0
        self.key_image: Tensor | None = None
        self.key_features: Tensor | None = None
        self.pending: list[tuple[int, Tensor]] = []  # (index, image) of propagated frames not yet given out
        self.scheduler.reset()

    @torch.no_grad()
    def step(self, image: Tensor) -> tuple[Tensor, bool]:
        is_key = not self.propagate or self.key_features is None or self.scheduler.is_key(self.index)
        if is_key:
            self.key_image, self.key_features = image, self.model.key_features(image)
            features = self.key_features
        else:
            features = propagate_features(self.model, self.key_features, image, self.key_image, self.source)
        self.index += 1
        return features, is_key

    def push(self, image: Tensor) -> list[StreamItem]:
        """The frame's features at once (``flow_batch`` 1); else a key frame comes out at once, after the
        propagated frames still waiting from the previous key frame, and propagated frames wait until
        ``flow_batch`` of them are there."""
        if self.flow_batch == 1:
            index = self.index
            features, is_key = self.step(image)
            return [StreamItem(index, features, is_key)]
        is_key = not self.propagate or self.key_features is None or self.scheduler.is_key(self.index)
        ready: list[StreamItem] = []
        if is_key:
            ready = self._propagate_pending()
            self.key_image, self.key_features = image, self.model.key_features(image)
            ready.append(StreamItem(self.index, self.key_features, True))
        else:
            self.pending.append((self.index, image))
            if len(self.pending) == self.flow_batch:
                ready = self._propagate_pending()
        self.index += 1
        return ready

    @torch.no_grad()
    def _propagate_pending(self) -> list[StreamItem]:
        """The waiting frames' features, propagated from the current key frame with one flow call on all of
        them."""
        if not self.pending:
            return []
        indices, images = zip(*self.pending)
        self.pending = []
        features = propagate_features(self.model, self.key_features, torch.cat(images), self.key_image,
                                      self.source)  # (b, C, h, w)
        return [StreamItem(index, features[j:j + 1], False) for j, index in enumerate(indices)]

    def finish(self) -> list[StreamItem]:
        return self._propagate_pending()


@dataclass
class _Entry:
    index: int
    image: Tensor  # (1, 3, H, W)
    maps: Tensor  # (1, C + E, h, w): the frame's features and embedding, stacked to be warped in one pass


class AggregatedFeatures:
    """FGFA as a stream. ``push(image)`` returns the frames whose aggregated features became ready (offline:
    frame t once frame t+K has arrived; online: the frame itself); ``finish()`` the rest. N_feat runs on every
    frame, so every item is a key frame.

    Each reference is compared with the current frame as soon as it is warped; only its warped features
    and its cosine map are kept for the weighted sum."""

    def __init__(self, model: VideoModel, window: int = 10, online: bool = False,
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
        window = [min(max(j, 0), last) for j in range(t - self.window, high + 1)]  # the ends repeat the first / last
        others = list(dict.fromkeys(j for j in window if j != t))  # F once per (current, reference) pair
        if isinstance(self.source, StreamFlow) and others:  # the learned F: every pair of frame t in one call
            flows, _ = self.source.pairs(current.image, [by_index[j].image for j in others])  # (b, 2, h, w)
            for i, j in enumerate(others):
                aligned[j] = warped_similarity(self.model, warp(by_index[j].maps, flows[i:i + 1]), own_embedding,
                                               self.channels)
        else:  # another flow source (shallow flow, the exact-flow diagnostic) or none: pair by pair
            for j in others:
                ref = by_index[j]
                aligned[j] = aligned_similarity(self.model, ref.maps, current.image, ref.image, own_embedding,
                                                self.channels, self.source)
        features, similarities = [], []
        for j in window:
            features.append(aligned[j][0])
            similarities.append(aligned[j][1])
        return self.aggregator(features, similarities)

    @torch.no_grad()
    def push(self, image: Tensor) -> list[StreamItem]:
        features, embedding = frame_features(self.model, image)
        self.channels = features.shape[1]
        # channels-last: the warp gathers whole pixels (all C + E channels in one run of memory)
        maps = torch.cat([features, embedding], 1).contiguous(memory_format=torch.channels_last)
        self.buffer.append(_Entry(self.count, image, maps))
        self.count += 1
        ready = []
        while self.next_out < self.count and (self.online or self.next_out + self.window < self.count):
            ready.append(StreamItem(self.next_out, self._aggregate(self.next_out, self.count - 1), True))
            self.next_out += 1
        return ready

    @torch.no_grad()
    def finish(self) -> list[StreamItem]:
        """The frames still waiting for their future neighbours, with the last frame repeated as padding."""
        ready = []
        while self.next_out < self.count:
            ready.append(StreamItem(self.next_out, self._aggregate(self.next_out, self.count - 1), True))
            self.next_out += 1
        return ready


# ---- the named methods (featflow.registry.STRATEGIES) --------------------------------------------------------


class PerFrame(KeyFrameFeatures):
    """``frame``: N_feat on every frame (the per-frame baseline)."""

    def __init__(self, model: VideoModel, options: StreamOptions = StreamOptions()) -> None:
        super().__init__(model, propagate=False)

    @staticmethod
    def unsupported(model: VideoModel) -> str | None:
        """Why ``model`` cannot run this method (None: it can)."""
        return None


class DFF(KeyFrameFeatures):
    """``dff``: N_feat on the scheduler's key frames, the others warped from it along F (x the scale field)."""

    def __init__(self, model: VideoModel, options: StreamOptions = StreamOptions()) -> None:
        super().__init__(model, True, options.scheduler, options.source, options.flow_batch)

    @staticmethod
    def unsupported(model: VideoModel) -> str | None:
        return None if model.flow_net is not None else "it has no flow network (a DFF checkpoint has one)"


class SFFSlow(KeyFrameFeatures):
    """``sff-slow``: DFF's propagation along OpenCV's DIS flow (medium preset) instead of F: shallow feature flow."""

    preset = "medium"

    def __init__(self, model: VideoModel, options: StreamOptions = StreamOptions()) -> None:
        super().__init__(model, True, options.scheduler, options.source or ShallowFlow(DISFlow(self.preset)),
                         options.flow_batch)

    @staticmethod
    def unsupported(model: VideoModel) -> str | None:
        return None


class SFFFast(SFFSlow):
    """``sff-fast``: shallow feature flow along DIS's ultrafast preset."""

    preset = "ultrafast"


class FGFA(AggregatedFeatures):
    """``fgfa``: the features of frames t-K..t+K (online: t-K..t) warped to frame t and averaged with adaptive
    weights."""

    def __init__(self, model: VideoModel, options: StreamOptions = StreamOptions()) -> None:
        super().__init__(model, options.window, options.online, options.source)

    @staticmethod
    def unsupported(model: VideoModel) -> str | None:
        return None if model.aggregator is not None else "it has no aggregation network (an FGFA checkpoint has one)"


def strategy(method: str) -> type:
    """The stream class ``featflow.registry.STRATEGIES`` names for ``method``."""
    check_choice("method", method, STRATEGIES)
    module, _, name = STRATEGIES[method].partition(":")
    return getattr(importlib.import_module(module), name)


def supported(model: VideoModel) -> tuple[str, ...]:
    """The methods ``model`` can run, in the registry's order."""
    return tuple(m for m in STRATEGIES if strategy(m).unsupported(model) is None)


def build_stream(method: str, model: VideoModel, options: StreamOptions = StreamOptions()) -> FeatureStream:
    """The stream of ``method`` over ``model`` (a ``FeatflowError`` when the model cannot run it)."""
    cls = strategy(method)
    reason = cls.unsupported(model)
    if reason is not None and options.source is None:
        raise FeatflowError(f"method {method!r} cannot run on this model: {reason}")
    return cls(model, options)


@torch.no_grad()
def run_stream(model: VideoModel, frames: Iterable[np.ndarray], method: str,
               options: StreamOptions = StreamOptions()) -> Iterator[tuple[StreamItem, Any, float]]:
    """(H, W, 3) uint8 RGB frames -> (item, the task head's output for that frame, model seconds), in frame order
    (FGFA offline: K frames late). The head is the model's ``predict(features, size)``: a segmenter's label map,
    a detector's detections. The seconds are the model's time since the previous output (decoding excluded), so
    they add up to the stream's total."""
    model.eval()
    stream = build_stream(method, model, options)
    device = next(model.parameters()).device
    cast = autocast_dtype(options.precision, device, purpose="inference")
    size: tuple[int, int] | None = None
    spent = 0.0

    def outputs(items: list[StreamItem]) -> Iterator[tuple[StreamItem, Any, float]]:
        nonlocal spent
        for item in items:
            start = time.perf_counter()
            with autocast(device, cast):  # entered per call: a generator must not leave it on for its caller
                output = model.predict(item.features, size)[0]
            spent += time.perf_counter() - start
            yield item, output, spent
            spent = 0.0

    for frame in frames:
        start = time.perf_counter()
        image = image_to_tensor(frame, device)
        size = tuple(image.shape[-2:])
        with autocast(device, cast):
            ready = stream.push(image)
        spent += time.perf_counter() - start
        yield from outputs(ready)
    start = time.perf_counter()
    with autocast(device, cast):
        ready = stream.finish()
    spent += time.perf_counter() - start
    yield from outputs(ready)
