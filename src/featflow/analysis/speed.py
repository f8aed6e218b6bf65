"""Wall-clock speed of per-frame recognition against DFF, measured in one run on this machine.

Speed needs no training: the paper-sized networks (e.g. ResNet-101 N_feat with 1024 feature channels
and FlowNet) run with random weights on random frames. Per-frame runs N_feat + N_task on every frame;
DFF streams the frames with a fixed key-frame interval l (key frames: N_feat + N_task; the others:
F + W + N_task). Both are timed over the same number of frames after a warm-up.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from featflow.methods.schedulers import FixedInterval
from featflow.methods.segmentation import VideoSegmenter

TASKS = ("seg",)
CITYSCAPES_CLASSES = 19


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
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if key_interval < 1:
        raise ValueError("key interval must be at least 1")
    frames = frames or 2 * key_interval
    torch.manual_seed(seed)
    model = VideoSegmenter(CITYSCAPES_CLASSES, feature_net, channels=1024, flow_net=flow_net).eval().to(device)
    images = [torch.rand(1, 3, *size, device=device) * 255 for _ in range(min(frames, 4))]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def per_frame(image: torch.Tensor) -> torch.Tensor:
        return model.segment(model.key_features(image), size).argmax(1)

    def non_key(key_image: torch.Tensor, key_features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return model.segment(model.propagate(key_features, image, key_image), size).argmax(1)

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
            model.segment(key_features, size).argmax(1)
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


def speedup_curve(row: SpeedRow, intervals: list[int]) -> dict[int, float]:
    """Speedup of DFF over per-frame at other key intervals, from the measured per-frame, key-frame and
    non-key-frame times: t(l) = (t_key + (l - 1) t_nonkey) / l."""
    per_frame_ms = 1000 / row.per_frame_fps
    return {l: per_frame_ms / ((row.key_frame_ms + (l - 1) * row.non_key_frame_ms) / l) for l in intervals}


def format_row(row: SpeedRow) -> str:
    return (f"{row.feature_net} + {row.flow_net} at {row.size[0]}x{row.size[1]}, l={row.key_interval}: "
            f"per-frame {row.per_frame_fps:.3f} fps, DFF {row.dff_fps:.3f} fps, speedup {row.speedup:.2f}x "
            f"(key frame {row.key_frame_ms:.0f} ms, other frames {row.non_key_frame_ms:.0f} ms; "
            f"{row.frames} frames, {row.threads} threads, {row.device})")

