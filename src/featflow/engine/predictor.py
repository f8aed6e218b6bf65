"""A loaded model and its stream of per-frame results: what ``featflow.load`` returns.

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from featflow.data.resize import Resize, ResizedStream
from featflow.data.video import to_rgb
from featflow.engine.checkpoint import DETECTOR, load_model, task_of, trained_resize
from featflow.errors import FeatflowError
from featflow.methods.schedulers import FixedInterval
from featflow.methods.streams import StreamOptions, run_stream, supported
from featflow.methods.video_model import VideoModel
from featflow.registry import DEFAULT_KEY_INTERVAL, resolve_weights
from featflow.structures import Detections


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

    def __init__(self, net: VideoModel, metadata: dict[str, str], source: Path) -> None:
        self.net = net.eval()
        self.metadata, self.source = metadata, source
        self.task = "det" if task_of(net) is DETECTOR else "seg"
        self.class_names: list[str] = json.loads(metadata.get("class_names", "[]"))
        #: How frames are resized before the model (a detector trained on a folder: as its training resized them,
        #: e.g. shorter side 600, longer at most 1000); its boxes come back in the frames' own pixels. None: frames
        #: as they come. Set it to change that (``featflow infer --resize``).
        self.resize: Resize | None = trained_resize(metadata) if self.task == "det" else None

    @property
    def methods(self) -> tuple[str, ...]:
        """What this checkpoint can run (``featflow.registry.STRATEGIES``): per-frame and SFF always; DFF with a
        flow net; FGFA with an embedding net. Both tasks run every method the same way."""
        return supported(self.net)

    @property
    def default_method(self) -> str:
        return "fgfa" if "fgfa" in self.methods else "dff" if "dff" in self.methods else "frame"

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device, compile: bool = False) -> "Model":
        """On ``device`` for inference; ``compile``: through ``torch.compile`` (``VideoModel.for_inference``)."""
        self.net.for_inference(device, compile)
        return self

    def stream(self, frames: Iterable[np.ndarray | torch.Tensor], method: str | None = None,
               key_interval: int | None = None, window: int = 10, online: bool = False,
               precision: str = "fp32", flow_batch: int = 1) -> Iterator[FrameResult]:
        """One ``FrameResult`` per frame, in frame order (FGFA offline: ``window`` frames late). Frames are
        (H, W, 3) RGB uint8 (grey or RGBA is converted); memory stays bounded whatever the length. A detector sees
        them resized as ``self.resize`` says and gives its boxes in their own pixels.
        ``precision`` "bf16" autocasts the feature computation where the device runs bfloat16 natively
        (``featflow.modeling.precision``; fp32 with a warning elsewhere). ``flow_batch`` b > 1 runs DFF / SFF
        offline: F on b propagated frames of a key interval at once, those frames up to b - 1 frames late."""
        method = method or self.default_method
        if method not in self.methods:
            raise FeatflowError(f"this {self.task} model runs {', '.join(self.methods)}; not {method!r}")
        interval = DEFAULT_KEY_INTERVAL[self.task] if key_interval is None else key_interval
        if interval < 1:
            raise FeatflowError(f"the key interval must be at least 1, got {interval}")
        options = StreamOptions(FixedInterval(interval), window, online, precision=precision, flow_batch=flow_batch)
        if self.task == "seg":
            for item, output, seconds in run_stream(self.net, _frames(frames), method, options):
                yield FrameResult(item.index, 1000 * seconds, item.is_key, labels=output.cpu().numpy())
            return
        resized = ResizedStream(self.resize)
        for item, output, seconds in run_stream(self.net, resized.frames(_frames(frames)), method, options):
            yield FrameResult(item.index, 1000 * seconds, item.is_key,
                              detections=resized.to_original(item.index, output))


def load(name_or_path: str | os.PathLike, device: str | torch.device = "cpu", compile: bool = False) -> Model:
    """A shipped model by name (``featflow.shipped_models()``) or a checkpoint path -> a ``Model`` on ``device``
    (``compile``: its networks through ``torch.compile``, faster after the first frame's compilation).
    Weights that are not a featflow segmenter or detector, or do not fit the model their metadata describes
    (another architecture, class count, a truncated file), raise ``ValueError`` naming what does not match."""
    path = resolve_weights(name_or_path)
    net, metadata = load_model(path)
    return Model(net, metadata, path).to(device, compile)
