"""The Python API: a model by shipped name or checkpoint path, and a stream of per-frame results.

    import featflow
    model = featflow.load("det-fgfa-r18-synth")          # or a path to a trained checkpoint
    for result in model.stream(frames, method="fgfa"):   # frames: (H, W, 3) uint8 arrays or tensors
        print(result.index, result.detections, result.ms)

Shipped models are listed in ``featflow/weights/models.json`` (``featflow models`` prints them with their
benchmark figures, which come from the reports in ``reports/``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featflow.data.video import open_source, to_rgb
from featflow.engine.checkpoint import load_model
from featflow.engine.det_inference import DetStreamConfig, detect_stream
from featflow.engine.seg_inference import SegmentationStream
from featflow.methods.detection import VideoDetector
from featflow.methods.schedulers import FixedInterval
from featflow.methods.segmentation import VideoSegmenter
from featflow.structures import Detections

__all__ = ["FrameResult", "Model", "ModelInfo", "load", "open_source", "shipped_models"]

DEFAULT_KEY_INTERVAL: dict[str, int] = {"seg": 5, "det": 10}  # the papers' settings


@dataclass(frozen=True)
class ModelInfo:
    """A shipped model: its name, weights file, task, methods it can run, trained frame size and figures."""

    name: str
    file: str
    task: str
    methods: tuple[str, ...]
    size: tuple[int, int]
    description: str
    benchmark: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(str(resources.files("featflow") / "weights" / self.file))


def shipped_models() -> list[ModelInfo]:
    """The models shipped in the package, from ``featflow/weights/models.json``."""
    catalog = json.loads((resources.files("featflow") / "weights" / "models.json").read_text())
    return [ModelInfo(name, m["file"], m["task"], tuple(m["methods"]), tuple(m["size"]), m["description"],
                      m.get("benchmark", {})) for name, m in catalog.items()]


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A shipped model's name or a checkpoint path -> the weights file."""
    for info in shipped_models():
        if str(name_or_path) == info.name:
            return info.path
    path = Path(name_or_path)
    if path.is_file():
        return path
    names = ", ".join(m.name for m in shipped_models())
    raise FileNotFoundError(f"{name_or_path} is neither a shipped model ({names}) nor a weights file")


@dataclass
class FrameResult:
    """One frame's answer. ``labels``: (H, W) uint8 class ids (segmentation); ``detections``: boxes in frame
    pixels with 1-based labels (detection). ``ms``: model time spent on it; ``is_key``: N_feat ran on it."""

    index: int
    ms: float
    is_key: bool
    labels: np.ndarray | None = None
    detections: Detections | None = None


def _frames(frames: Iterable[np.ndarray | torch.Tensor]) -> Iterator[np.ndarray]:
    for frame in frames:
        if isinstance(frame, torch.Tensor):
            frame = frame.detach().cpu().numpy()
        yield to_rgb(frame)


class Model:
    """A loaded segmenter or detector with the methods its checkpoint supports."""

    def __init__(self, net: VideoSegmenter | VideoDetector, metadata: dict[str, str], source: Path) -> None:
        self.net = net.eval()
        self.metadata, self.source = metadata, source
        self.task = "det" if isinstance(net, VideoDetector) else "seg"
        self.class_names: list[str] = json.loads(metadata.get("class_names", "[]"))

    @property
    def methods(self) -> tuple[str, ...]:
        """What this checkpoint can run: per-frame always; DFF with a flow net; FGFA (detection) with an
        embedding net; segmentation also propagates along off-the-shelf flow (SFF)."""
        methods = ["frame"] + (["dff"] if self.net.flow_net is not None else [])
        if self.task == "det" and self.net.aggregator is not None:
            methods.append("fgfa")
        if self.task == "seg":
            methods += ["sff-slow", "sff-fast"]
        return tuple(methods)

    @property
    def default_method(self) -> str:
        return "fgfa" if "fgfa" in self.methods else "dff" if "dff" in self.methods else "frame"

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device) -> "Model":
        self.net.for_inference(device)
        return self

    def stream(self, frames: Iterable[np.ndarray | torch.Tensor], method: str | None = None,
               key_interval: int | None = None, window: int = 10, online: bool = False) -> Iterator[FrameResult]:
        """One ``FrameResult`` per frame, in frame order (FGFA offline: ``window`` frames late). Frames are
        (H, W, 3) RGB uint8 (grey or RGBA is converted); memory stays bounded whatever the length."""
        method = method or self.default_method
        if method not in self.methods:
            raise ValueError(f"this {self.task} model runs {', '.join(self.methods)}; not {method!r}")
        interval = DEFAULT_KEY_INTERVAL[self.task] if key_interval is None else key_interval
        if interval < 1:
            raise ValueError(f"the key interval must be at least 1, got {interval}")
        schedule = FixedInterval(1 if method == "frame" else interval)
        if self.task == "seg":
            stream = SegmentationStream(self.net, method, schedule)
            for index, frame in enumerate(_frames(frames)):
                start = time.perf_counter()
                labels, is_key = stream.step(frame)
                yield FrameResult(index, 1000 * (time.perf_counter() - start), is_key, labels=labels)
            return
        timing: list[float] = []
        spent = 0
        config = DetStreamConfig(method, interval, window, online)
        for index, dets in detect_stream(self.net, _frames(frames), config, timing):
            ms, spent = 1000 * sum(timing[spent:]), len(timing)
            yield FrameResult(index, ms, method != "dff" or schedule.is_key(index), detections=dets)


def load(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> Model:
    """A shipped model by name (``featflow.shipped_models()``) or a checkpoint path -> a ``Model`` on ``device``.
    Weights that are not a featflow segmenter or detector, or do not fit the model their metadata describes
    (another architecture, class count, a truncated file), raise ``ValueError`` naming what does not match."""
    path = resolve(name_or_path)
    net, metadata = load_model(path)
    return Model(net, metadata, path).to(device)
