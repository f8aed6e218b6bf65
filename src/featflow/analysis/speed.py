"""Wall-clock speed of per-frame recognition against DFF, measured in one run on this machine.

Speed needs no training: the paper-sized networks (e.g. ResNet-101 N_feat with 1024 feature channels
and FlowNet) run with random weights on random frames. Per-frame runs N_feat + N_task on every frame;
DFF streams the frames with a fixed key-frame interval l (key frames: N_feat + N_task; the others:
F + W + N_task). Both are timed over the same number of frames after a warm-up. N_task is the
DeepLab-style head for segmentation (19 Cityscapes classes) and RPN + R-FCN for detection (30 VID
classes, 300 proposals). FGFA (``measure_fgfa_speed``) streams 2K+1-frame windows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from featflow.errors import FeatflowError
from featflow.methods.detection import VideoDetector
from featflow.methods.dff import propagate_features
from featflow.methods.schedulers import FixedInterval
from featflow.methods.segmentation import VideoSegmenter
from featflow.methods.streams import AggregatedFeatures
from featflow.methods.video_model import VideoModel
from featflow.registry import TASKS, check_choice

CITYSCAPES_CLASSES = 19
VID_CLASSES = 30


def paper_model(task: str, feature_net: str, flow_net: str | None, aggregation: str | None = None
                 ) -> tuple[VideoModel, Callable[[torch.Tensor, tuple[int, int]], object]]:
    """The paper-sized model of ``task`` (random weights) and its N_task as features -> a finished output."""
    check_choice("task", task, TASKS)
    if task == "seg":
        seg = VideoSegmenter(CITYSCAPES_CLASSES, feature_net, channels=1024, flow_net=flow_net)
        return seg, seg.predict
    if task == "det":
        det = VideoDetector(VID_CLASSES, feature_net, channels=1024, flow_net=flow_net, aggregation=aggregation)
        return det, det.predict
    raise AssertionError(f"TASKS names {task!r} but no paper model is built for it")


@dataclass(frozen=True)
class SpeedRow:
    task: str
    feature_net: str
    flow_net: str
    size: tuple[int, int]
    key_interval: int
    frames: int
    per_frame_fps: float
    dff_fps: float
    speedup: float
    key_frame_ms: float  # N_feat + N_task
    non_key_frame_ms: float  # F + W + N_task
    threads: int
    device: str

    def to_json(self) -> dict:
        return asdict(self)


@torch.no_grad()
def measure_speed(task: str = "seg", feature_net: str = "resnet101", flow_net: str = "flownet",
                  size: tuple[int, int] = (512, 1024), key_interval: int = 5, frames: int | None = None,
                  device: str = "cpu", seed: int = 0) -> SpeedRow:
    """Time per-frame and DFF on ``frames`` random frames (default: two key-frame intervals)."""
    check_choice("task", task, TASKS)
    if key_interval < 1:
        raise FeatflowError("key interval must be at least 1")
    frames = frames or 2 * key_interval
    torch.manual_seed(seed)
    model, head = paper_model(task, feature_net, flow_net)
    model.for_inference(device)
    images = [torch.rand(1, 3, *size, device=device) * 255 for _ in range(min(frames, 4))]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def per_frame(image: torch.Tensor) -> object:
        return head(model.key_features(image), size)

    def non_key(key_image: torch.Tensor, key_features: torch.Tensor, image: torch.Tensor) -> object:
        return head(propagate_features(model, key_features, image, key_image), size)

    # warm-up both paths once (allocations, kernel selection)
    key_features = model.key_features(images[0])
    per_frame(images[0])
    non_key(images[0], key_features, images[1 % len(images)])
    sync()

    start = time.perf_counter()
    for i in range(frames):
        per_frame(images[i % len(images)])
    sync()
    per_frame_seconds = time.perf_counter() - start

    scheduler = FixedInterval(key_interval)
    key_seconds = non_key_seconds = 0.0
    key_count = 0
    key_image = key_features = None
    for i in range(frames):
        image = images[i % len(images)]
        tick = time.perf_counter()
        if scheduler.is_key(i):
            key_image, key_features = image, model.key_features(image)
            head(key_features, size)
            sync()
            key_seconds += time.perf_counter() - tick
            key_count += 1
        else:
            non_key(key_image, key_features, image)
            sync()
            non_key_seconds += time.perf_counter() - tick
    dff_seconds = key_seconds + non_key_seconds
    return SpeedRow(
        task=task, feature_net=feature_net, flow_net=flow_net, size=size, key_interval=key_interval, frames=frames,
        per_frame_fps=frames / per_frame_seconds, dff_fps=frames / dff_seconds,
        speedup=per_frame_seconds / dff_seconds,
        key_frame_ms=1000 * key_seconds / key_count,
        non_key_frame_ms=1000 * non_key_seconds / max(1, frames - key_count),
        threads=torch.get_num_threads(), device=torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
    )


@dataclass(frozen=True)
class AggregationSpeedRow:
    feature_net: str
    flow_net: str
    size: tuple[int, int]
    window: int  # K: 2K+1 frames aggregated
    frames: int  # frames whose output was timed, each with a full window
    ms_per_frame: float  # steady state: N_feat + embedding once, F + W for 2K references, aggregation, N_task
    per_frame_ms: float  # the single-frame detector on the same frames, same run
    threads: int
    device: str

    @property
    def cost_ratio(self) -> float:
        return self.ms_per_frame / self.per_frame_ms

    def to_json(self) -> dict:
        return {**asdict(self), "cost_ratio": self.cost_ratio}


@torch.no_grad()
def measure_fgfa_speed(feature_net: str = "resnet101", flow_net: str = "flownet", size: tuple[int, int] = (600, 1000),
                       window: int = 10, frames: int = 4, device: str = "cpu", seed: int = 0) -> AggregationSpeedRow:
    """Time FGFA detection per frame in the steady state of the offline stream: the ring buffer is filled first
    (untimed), then each pushed frame outputs one frame that aggregates 2K+1 frames. The single-frame detector
    is timed on the same frames in the same run."""
    if window < 0 or frames < 1:
        raise FeatflowError("window must be >= 0 and frames >= 1")
    torch.manual_seed(seed)
    model, head = paper_model("det", feature_net, flow_net, aggregation="adaptive")
    model.for_inference(device)
    images = [torch.rand(1, 3, *size, device=device) * 255 for _ in range(min(2 * window + 1 + frames, 4))]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    head(model.key_features(images[0]), size)  # warm-up
    sync()
    start = time.perf_counter()
    for i in range(frames):
        head(model.key_features(images[i % len(images)]), size)
    sync()
    per_frame_ms = 1000 * (time.perf_counter() - start) / frames
    stream = AggregatedFeatures(model, window)
    for i in range(2 * window):  # fill the window; frame 0's output (with start padding) comes at push 2K - K
        for item in stream.push(images[i % len(images)]):
            head(item.features, size)
    sync()
    start = time.perf_counter()
    for i in range(2 * window, 2 * window + frames):  # each push now outputs a frame with a full, unpadded window
        for item in stream.push(images[i % len(images)]):
            head(item.features, size)
    sync()
    ms = 1000 * (time.perf_counter() - start) / frames
    return AggregationSpeedRow(feature_net, flow_net, size, window, frames, ms, per_frame_ms, torch.get_num_threads(),
                               torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu")


def dff_speedup(per_frame_ms: float, key_frame_ms: float, non_key_frame_ms: float, interval: int) -> float:
    """Speedup of DFF at key interval l over per-frame, from measured times: a DFF frame costs
    t(l) = (t_key + (l - 1) t_nonkey) / l on average."""
    return per_frame_ms / ((key_frame_ms + (interval - 1) * non_key_frame_ms) / interval)


def speedup_curve(row: SpeedRow, intervals: list[int]) -> dict[int, float]:
    """Speedup of DFF over per-frame at other key intervals, from the measured per-frame, key-frame and
    non-key-frame times."""
    per_frame_ms = 1000 / row.per_frame_fps
    return {l: dff_speedup(per_frame_ms, row.key_frame_ms, row.non_key_frame_ms, l) for l in intervals}


def format_row(row: SpeedRow) -> str:
    return (f"{row.feature_net} + {row.flow_net} at {row.size[0]}x{row.size[1]}, l={row.key_interval}: "
            f"per-frame {row.per_frame_fps:.3f} fps, DFF {row.dff_fps:.3f} fps, speedup {row.speedup:.2f}x "
            f"(key frame {row.key_frame_ms:.0f} ms, other frames {row.non_key_frame_ms:.0f} ms; "
            f"{row.frames} frames, {row.threads} threads, {row.device})")

