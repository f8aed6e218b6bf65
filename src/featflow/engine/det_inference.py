"""Running video detection: per-frame, DFF and FGFA as streams, box post-processing, and the ImageNet VID
evaluation (mAP all / slow / medium / fast) on VID-layout data.

Methods (one detector, different ways to get a frame's features):
- ``frame``: N_feat on every frame;
- ``dff``: N_feat on key frames (every ``key_interval``-th), F + W + scale on the others;
- ``fgfa``: features of frames t-K..t+K warped to frame t and aggregated (``online``: t-K..t).
Post-processing (``featflow.postprocess``) runs on each video's detections: ``seq-nms``, ``mgp`` (motion-guided
propagation along DIS flow) or ``tubelet`` (tubelet rescoring).
With a ``Resize`` (the papers' shorter side 600, longer at most 1000; ``checkpoint.trained_resize`` gives a
detector's own) the model sees each frame resized, and its boxes are divided back into the original frame's
pixels before post-processing and evaluation, where the annotations are.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from featflow.data.resize import Resize, ResizedStream
from featflow.data.vid import VideoBoxesBase
from featflow.engine.distributed import context, gather, shard
from featflow.errors import FeatflowError
from featflow.evaluation.vid_map import VidResult, evaluate_vid, write_vid_results
from featflow.methods.detection import VideoDetector
from featflow.methods.schedulers import FixedInterval
from featflow.methods.streams import StreamOptions, run_stream
from featflow.postprocess import dis_flows, motion_guided_propagation, seq_nms, tubelet_rescoring
from featflow.registry import DET_METHODS, POSTPROCESS, PRECISIONS, check_choice
from featflow.structures import Detections, VideoDetections, VideoGroundTruth


@dataclass(frozen=True)
class DetStreamConfig:
    method: str = "frame"
    key_interval: int = 10  # DFF
    window: int = 10  # FGFA's K: 2K+1 frames offline
    online: bool = False  # FGFA on past frames only
    precision: str = "fp32"  # featflow.modeling.precision: "bf16" autocasts the features (the heads stay float32)

    def __post_init__(self) -> None:
        check_choice("detection method", self.method, DET_METHODS)
        check_choice("precision", self.precision, PRECISIONS, key="precision")
        if self.key_interval < 1:
            raise FeatflowError(f"the key interval must be at least 1, got {self.key_interval}")
        if self.window < 0:
            raise FeatflowError(f"the FGFA window K must be >= 0, got {self.window}")


def detect_stream(model: VideoDetector, frames: Iterable[np.ndarray], config: DetStreamConfig = DetStreamConfig(),
                  timing: list[float] | None = None) -> Iterator[tuple[int, Detections]]:
    """(H, W, 3) uint8 RGB frames -> (frame index, detections), in frame order (FGFA offline: K frames late).
    Seconds spent in the model are appended to ``timing``, one entry per frame (decoding excluded)."""
    options = StreamOptions(FixedInterval(config.key_interval), config.window, config.online,
                            precision=config.precision)
    for item, detections, seconds in run_stream(model, frames, config.method, options):
        if timing is not None:
            timing.append(seconds)
        yield item.index, detections


def postprocess_video(video: VideoDetections, name: str, frames: list[np.ndarray] | None = None) -> VideoDetections:
    """One of ``POSTPROCESS`` on a video's detections (MGP needs the frames for its flow)."""
    if name == "seq-nms":
        return seq_nms(video)
    if name == "tubelet":
        return tubelet_rescoring(video)
    if name == "mgp":
        if frames is None:
            raise ValueError("motion-guided propagation needs the video's frames")
        return motion_guided_propagation(video, dis_flows(frames))
    check_choice("post-processing", name, POSTPROCESS)
    raise AssertionError(f"POSTPROCESS names {name!r} but nothing runs it")


@dataclass(frozen=True)
class DetEvaluation:
    config: DetStreamConfig
    postprocess: str | None
    result: VidResult
    frames: int
    ms_per_frame: float  # model time per frame on this machine (decoding and post-processing excluded)
    resize: Resize | None = None  # the frames as the model saw them (None: at their own size)

    def to_json(self) -> dict:
        resize = None if self.resize is None else {"short": self.resize.short, "long": self.resize.long}
        return {"method": self.config.method, "key_interval": self.config.key_interval, "window": self.config.window,
                "online": self.config.online, "postprocess": self.postprocess, "frames": self.frames,
                "ms_per_frame": self.ms_per_frame, "resize": resize, **self.result.to_json()}


@torch.no_grad()
def detect_dataset(model: VideoDetector, data: VideoBoxesBase, config: DetStreamConfig,
                   progress: bool = True, resize: Resize | None = None) -> tuple[list[VideoDetections], float]:
    """Every video of ``data`` through the stream -> (detections per video, in the original frames' pixels; model
    ms per frame). With ``resize`` the model sees resized frames. Under torchrun the videos are dealt out to the
    ranks and the results gathered: every rank returns the whole set."""
    if model.num_classes != len(data.classes):
        raise FeatflowError(f"the model detects {model.num_classes} classes, the data has {len(data.classes)}")
    ctx = context()
    timing: list[float] = []
    mine: dict[int, VideoDetections] = {}
    for v in tqdm(shard(list(range(len(data))), ctx), desc=f"detect {config.method}",
                  disable=not (progress and ctx.is_main), leave=False):
        video: VideoDetections = [Detections.empty()] * data.num_frames(v)
        resized = ResizedStream(resize)
        frames = (data.image(v, t) for t in range(data.num_frames(v)))
        for index, dets in detect_stream(model, resized.frames(frames), config, timing):
            video[index] = resized.to_original(index, dets)
        mine[v] = video
    parts = gather((mine, sum(timing)), ctx)  # under torchrun: every rank's videos, merged in video order
    merged = {v: video for videos, _ in parts for v, video in videos.items()}
    frames = sum(data.num_frames(v) for v in range(len(data)))
    return [merged[v] for v in range(len(data))], 1000 * sum(seconds for _, seconds in parts) / max(frames, 1)


def ground_truth(data: VideoBoxesBase) -> list[VideoGroundTruth]:
    """Every video's ground truth, in video order."""
    return [VideoGroundTruth.from_frames([data.targets(v, t) for t in range(data.num_frames(v))])
            for v in range(len(data))]


def evaluate_detection(model: VideoDetector, data: VideoBoxesBase, config: DetStreamConfig = DetStreamConfig(),
                       postprocess: str | None = None, save_detections: str | os.PathLike | None = None,
                       progress: bool = True, resize: Resize | None = None) -> DetEvaluation:
    """VID mAP (all / slow / medium / fast) and model time per frame of one method on a VID-layout split; with
    ``resize`` the model sees resized frames and its boxes are scored (and saved) in the original pixels."""
    detections, ms = detect_dataset(model, data, config, progress, resize)
    if postprocess is not None:
        detections = [postprocess_video(d, postprocess, [data.image(v, t) for t in range(data.num_frames(v))]
                                        if postprocess == "mgp" else None) for v, d in enumerate(detections)]
    if save_detections is not None and context().is_main:
        write_vid_results(save_detections, detections, [list(v.frame_ids) for v in data.videos])
    result = evaluate_vid(detections, ground_truth(data), len(data.classes))
    return DetEvaluation(config, postprocess, result, sum(len(d) for d in detections), ms, resize)
