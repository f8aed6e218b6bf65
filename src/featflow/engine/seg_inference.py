"""Running video segmentation: as a stream (frames in, labels out, bounded memory) and under the DFF
evaluation protocol on Cityscapes-layout data.

Methods (one model, different ways to get a frame's features):
- ``frame``: N_feat on every frame;
- ``dff``: N_feat on key frames, the learned F + W + scale on the others;
- ``sff-slow`` / ``sff-fast``: key-frame features propagated along off-the-shelf flow (OpenCV DIS
  medium / ultrafast), no scale field;
- ``fgfa``: the features of frames t-K..t+K (online: t-K..t) warped to frame t and aggregated. In the DFF protocol
  it has one "offset": the labelled frame aggregated from its snippet's neighbours (K at most 10 offline: the
  snippets hold 10 frames after the labelled one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from featflow.data.cityscapes import CityscapesVideo
from featflow.data.formats import cityscapes as cs
from featflow.data.io import write_image
from featflow.engine.distributed import context, gather, shard
from featflow.errors import FeatflowError
from featflow.evaluation.segmentation import ConfusionMatrix
from featflow.methods.dff import FlowSource, ShallowFlow, propagate_features
from featflow.methods.fgfa import window_features
from featflow.methods.schedulers import FixedInterval, KeyFrameScheduler
from featflow.methods.segmentation import VideoSegmenter
from featflow.methods.streams import SFFFast, SFFSlow, StreamOptions, build_stream, run_stream, strategy
from featflow.modeling.preprocess import image_to_tensor
from featflow.modeling.shallow_flow import DISFlow
from featflow.registry import SEG_METHODS as METHODS, check_choice


def flow_source(method: str) -> FlowSource | None:
    """The flow a method propagates with (None: the model's learned F, or no propagation)."""
    check_choice("method", method, METHODS)
    if method == "sff-slow":
        return ShallowFlow(DISFlow(SFFSlow.preset))
    if method == "sff-fast":
        return ShallowFlow(DISFlow(SFFFast.preset))
    return None


class SegmentationStream:
    """Segment a video frame by frame, each frame as it comes (``frame``, ``dff``, ``sff-*``: no delay). Key frames
    (by the scheduler) run N_feat; the others propagate the key frame's features (the method's stream in
    ``featflow.methods.streams``). It keeps only the key frame's image and features, so memory does not grow with
    the length of the video."""

    def __init__(self, model: VideoSegmenter, method: str = "dff", scheduler: KeyFrameScheduler | None = None) -> None:
        check_choice("method", method, METHODS)
        if method == "fgfa":  # its output waits for future frames: featflow.methods.streams.run_stream
            raise FeatflowError("SegmentationStream gives each frame's labels as it comes; FGFA waits K frames for "
                                "its neighbours: run it with featflow.methods.streams.run_stream")
        self.model = model.eval()
        self.method = method
        self.features = build_stream(method, model, StreamOptions(scheduler))

    def reset(self) -> None:
        self.features.reset()

    @torch.no_grad()
    def step(self, frame: np.ndarray) -> tuple[np.ndarray, bool]:
        """One (H, W, 3) uint8 RGB frame -> ((H, W) uint8 class ids, whether it was a key frame)."""
        image = image_to_tensor(frame, next(self.model.parameters()).device)
        (item,) = self.features.push(image)
        return self.model.predict(item.features, image.shape[-2:])[0].cpu().numpy(), item.is_key


@dataclass
class SegEvaluation:
    method: str
    key_interval: int
    miou: float  # mean over key offsets of each offset's mIoU
    iou: list[float]  # per class, pooled over offsets (NaN: class absent)
    miou_by_offset: list[float]
    fps: float | None  # frames per second of the stream on this machine (None: not timed)
    class_names: list[str] = field(default_factory=list)
    # (offsets, snippets, C, C) int64: each snippet's confusion at each key offset (for intervals; not in to_json)
    snippet_confusion: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        return {"method": self.method, "key_interval": self.key_interval, "miou": self.miou,
                "iou": {n: (None if np.isnan(v) else v) for n, v in zip(self.class_names, self.iou)},
                "miou_by_offset": self.miou_by_offset, "fps": self.fps}


@dataclass(frozen=True)
class Window:
    """FGFA's test window: frames t-K..t+K (online: t-K..t) of the labelled frame t."""

    size: int = 10  # K
    online: bool = False

    def offsets(self) -> range:
        return range(-self.size, 1 if self.online else self.size + 1)


@torch.no_grad()
def predict_labelled_frame(model: VideoSegmenter, video: CityscapesVideo, index: int, method: str, offset: int,
                           source: FlowSource | None, window: Window = Window()) -> np.ndarray:
    """Train ids predicted for snippet ``index``'s labelled frame, reached from a key frame ``offset``
    frames before it (offset 0: the frame itself); FGFA aggregates its ``window`` instead."""
    labelled = video.snippets[index].frame
    device = next(model.parameters()).device
    current = image_to_tensor(video.image(index, labelled), device)
    if method == "fgfa":
        frames = [image_to_tensor(video.image(index, labelled + o), device) if o else current
                  for o in window.offsets()]
        features = window_features(model, frames, window.size)
    elif method == "frame" or offset == 0:
        features = model.key_features(current)
    else:
        key = image_to_tensor(video.image(index, labelled - offset), device)
        features = propagate_features(model, model.key_features(key), current, key, source)
    return model.predict(features, current.shape[-2:])[0].cpu().numpy()


@dataclass(frozen=True)
class StreamTiming:
    fps: float
    key_frame_ms: float
    non_key_frame_ms: float  # NaN when every frame is a key frame


def time_stream(model: VideoSegmenter, video: CityscapesVideo, method: str, key_interval: int,
                snippets: int = 2, window: Window = Window(), repeats: int = 3) -> StreamTiming:
    """Time the method's stream (``run_stream``: features and labels) over whole snippets, image decoding excluded.
    The snippets run ``repeats`` times and the run of median length is reported: one pass of a fast stream lasts
    under a second, and a single pass swung by 1.6x between two runs of the same report."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    frames = [video.image(i, f) for i in range(min(snippets, len(video)))
              for f in range(video.snippets[i].frame - video.frames_before,
                             video.snippets[i].frame + video.frames_after + 1)]
    options = StreamOptions(FixedInterval(key_interval), window.size, window.online)
    for _ in run_stream(model, frames[:2], method, options):  # warm-up: a key frame and a propagated one
        pass
    runs = []
    for _ in range(repeats):
        times: dict[bool, list[float]] = {True: [], False: []}
        for item, _, seconds in run_stream(model, frames, method, options):
            times[item.is_key].append(seconds)
        runs.append((sum(times[True]) + sum(times[False]), times))
    total, times = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
    return StreamTiming(len(frames) / total, 1000 * float(np.mean(times[True])),
                        1000 * float(np.mean(times[False])) if times[False] else float("nan"))


def snippet_confusions(model: VideoSegmenter, video: CityscapesVideo, method: str, offsets: list[int],
                       save_predictions: str | os.PathLike | None = None, progress: bool = True,
                       window: Window = Window()) -> np.ndarray:
    """Per key offset and snippet, the confusion matrix of the snippet's labelled frame predicted from the key
    frame ``offset`` frames before it: (len(offsets), snippets, C, C) int64 [truth, prediction]. Kept per
    snippet so that intervals can resample snippets (``featflow.evaluation.bootstrap``). Under torchrun the
    snippets are dealt out to the ranks and their counts gathered: every rank returns the whole set."""
    if model.num_classes != video.num_classes:
        raise FeatflowError(f"the model predicts {model.num_classes} classes, the data has {video.num_classes}")
    reason = strategy(method).unsupported(model)
    if reason is not None:
        hint = " (or give a per-frame checkpoint one: --flow-net)" if method == "dff" else ""
        raise FeatflowError(f"method {method!r} cannot run on this model: {reason}{hint}")
    if max(offsets) > video.frames_before:
        raise FeatflowError(f"key offsets go up to {video.frames_before} in 30-frame snippets")
    if method == "fgfa":
        after = 0 if window.online else window.size
        if window.size > video.frames_before or after > video.frames_after:
            raise FeatflowError(f"the FGFA window K={window.size} leaves the snippets: they hold "
                                f"{video.frames_before} frames before the labelled one and {video.frames_after} "
                                f"after it (K at most {video.frames_after}, or {video.frames_before} online)")
    model.eval()
    source = flow_source(method)
    counts = np.zeros((len(offsets), len(video), video.num_classes, video.num_classes), np.int64)
    to_id = video.table.train_id_to_id()
    ctx = context()
    for index in tqdm(shard(list(range(len(video))), ctx), desc=f"eval {method}",
                      disable=not (progress and ctx.is_main), leave=False):
        truth = video.label(index)
        for k, offset in enumerate(offsets):
            pred = predict_labelled_frame(model, video, index, method, offset, source, window)
            matrix = ConfusionMatrix(video.num_classes)
            matrix.update(pred, truth)
            counts[k, index] = matrix.matrix
            if save_predictions is not None:  # label-id PNGs, one folder per key offset
                s = video.snippets[index]
                name = f"{cs.frame_stem(s.city, s.seq, s.frame)}_pred_labelIds.png"
                write_image(Path(save_predictions) / f"offset_{offset}" / name, to_id[pred])
    if ctx.distributed:  # each rank filled its own snippets; the others are zero
        counts = sum(gather(counts, ctx))
    return counts


def offset_matrices(model: VideoSegmenter, video: CityscapesVideo, method: str, offsets: list[int],
                    save_predictions: str | os.PathLike | None = None, progress: bool = True) -> list[ConfusionMatrix]:
    """One confusion matrix per key offset over every snippet (``snippet_confusions`` added up)."""
    return _per_offset(snippet_confusions(model, video, method, offsets, save_predictions, progress))


def _per_offset(counts: np.ndarray) -> list[ConfusionMatrix]:
    """(offsets, snippets, C, C) per-snippet counts -> one matrix per offset over every snippet."""
    matrices = []
    for per_snippet in counts:
        matrix = ConfusionMatrix(counts.shape[-1])
        matrix.matrix = per_snippet.sum(0)
        matrices.append(matrix)
    return matrices


def evaluate_segmentation(model: VideoSegmenter, video: CityscapesVideo, method: str = "dff", key_interval: int = 5,
                          save_predictions: str | os.PathLike | None = None, fps_snippets: int = 2,
                          progress: bool = True, window: Window = Window()) -> SegEvaluation:
    """The DFF protocol: the labelled frame of every snippet is predicted from key frames 0..l-1 frames
    before it; mIoU is computed per offset and averaged (per frame and FGFA, which runs N_feat on every frame,
    have one offset). The stream is then timed over ``fps_snippets`` snippets; 0 skips the timing (fps None), for
    callers that time the streams themselves."""
    if key_interval < 1 or key_interval > video.frames_before + 1:
        raise FeatflowError(f"key interval must be in 1..{video.frames_before + 1} for 30-frame snippets")
    interval = 1 if method in ("frame", "fgfa") else key_interval
    counts = snippet_confusions(model, video, method, list(range(interval)), save_predictions, progress, window)
    matrices = _per_offset(counts)
    pooled = ConfusionMatrix(video.num_classes)
    pooled.matrix = counts.sum((0, 1))
    by_offset = [m.miou() for m in matrices]
    fps = time_stream(model, video, method, interval, fps_snippets, window).fps if fps_snippets > 0 else None
    return SegEvaluation(method, interval, float(np.mean(by_offset)), pooled.iou().tolist(), by_offset, fps,
                         video.table.class_names, counts)
