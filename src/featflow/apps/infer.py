"""``featflow infer``: a video file or image folder through a model, as a stream.

Frames are decoded, run through the model (``featflow.api.Model.stream``), annotated and encoded one at a time,
so memory is bounded by the method (FGFA offline holds its 2K+1 window), never by the video's length. Per-frame
results go to JSON lines: boxes with class and score, or the label map run-length encoded
(``featflow.structures.encode_labels``). A source damaged part-way keeps everything before the damage: those
frames are written, and the summary's ``error`` names the file and the frame. A run stopped on request (``stop``:
the command line's SIGINT / SIGTERM) also keeps every frame processed so far, and the summary says ``interrupted``.
``start`` / ``max_frames`` run a part of the source; the JSON's frame indices stay those of the source. Each line
carries the frame's timestamp in seconds, and the annotated video keeps the source's timing (variable frame rate
and a non-zero start included), so that it plays in sync with the source.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from featflow.data.video import DecodeError, FrameSource, TimedFrame, write_video
from featflow.engine.predictor import FrameResult, Model
from featflow.errors import FeatflowError
from featflow.structures import encode_labels
from featflow.utils.io import atomic_path
from featflow.utils.visualize import class_palette, draw_boxes, legend, overlay, segmentation_palette


@dataclass
class InferSummary:
    source: str
    task: str
    method: str
    frames: int
    key_frames: int  # frames on which N_feat ran
    model_fps: float  # frames per second of model time (decoding, drawing and encoding excluded)
    wall_fps: float  # frames per second end to end
    video: str | None
    json: str | None
    error: str | None = None  # the damage that stopped decoding, if any
    interrupted: bool = False  # stopped on request (``stop``) with the frames processed so far written
    start: int = 0  # index in the source of the first frame processed

    def to_json(self) -> dict:
        return asdict(self)


def result_record(result: FrameResult, class_names: list[str], min_score: float = 0.0, start: int = 0,
                  time: float | None = None) -> dict:
    """One JSON line: the frame index in the source (``start`` + the stream's index), its presentation ``time`` in
    seconds (the source's timestamp), key frame or not, model ms, and the boxes scoring >= ``min_score`` or the
    encoded label map."""
    record: dict = {"frame": start + result.index}
    if time is not None:
        record["time"] = round(time, 6)
    record.update(key=result.is_key, ms=round(result.ms, 3))
    if result.detections is not None:
        d = result.detections
        keep = d.scores >= min_score
        boxes, scores, labels = d.boxes[keep], d.scores[keep], d.labels[keep]
        record.update(boxes=np.round(boxes, 2).tolist(), scores=np.round(scores, 4).tolist(),
                      labels=labels.tolist(), classes=[class_names[int(k) - 1] for k in labels])
    if result.labels is not None:
        record["mask"] = encode_labels(result.labels)
    return record


def annotate(frame: np.ndarray, result: FrameResult, class_names: list[str], palette: np.ndarray,
             min_score: float = 0.3) -> np.ndarray:
    """The frame with its label map blended in and a legend of the classes (segmentation: class 0, the background,
    is left unpainted; ``palette[k]`` is class k's colour) or its boxes drawn (detection: 1-based labels)."""
    if result.labels is not None:
        return legend(overlay(frame, result.labels, palette, background=0), class_names, palette)
    d = result.detections
    return draw_boxes(frame, d.boxes, d.labels, d.scores, class_names, palette, min_score)


class _Stop(Exception):
    """Stopped on request before any frame was processed: nothing is written."""


def run_infer(source: FrameSource, model: Model, method: str | None = None, key_interval: int | None = None,
              window: int = 10, online: bool = False, out_video: str | os.PathLike | None = None,
              out_json: str | os.PathLike | None = None, progress: bool = True, min_score: float = 0.3,
              start: int = 0, max_frames: int | None = None,
              stop: Callable[[], bool] | None = None, precision: str = "fp32", flow_batch: int = 1,
              between_frames: Callable[[], object] | None = None) -> InferSummary:
    """Run ``model`` over ``source`` (from frame ``start``, at most ``max_frames`` frames), writing the annotated
    video and / or the JSON lines (boxes scoring >= ``min_score``); -> the summary.
    A source damaged part-way: the frames before the damage are processed and written, and the summary's
    ``error`` says where decoding stopped (a source with no frame at all raises ``DecodeError``). ``stop()``
    turning true (checked before each frame) ends the run the same way, keeping the frames processed so far; the
    summary's ``interrupted`` is then true (stopped before the first frame: nothing is written).
    ``between_frames()`` runs before each frame is decoded, on the thread that runs the model (the command line
    re-balances its threads there: ``featflow.utils.threads.CoreShare.update``)."""
    method = method or model.default_method
    if source.num_frames is not None and start >= source.num_frames:
        raise FeatflowError(f"--start {start}: {source.path} has {source.num_frames} frames "
                            f"(0..{source.num_frames - 1})")
    seg = model.task == "seg"
    palette = segmentation_palette(len(model.class_names)) if seg else class_palette(len(model.class_names))
    pending: deque[TimedFrame] = deque()  # frames waiting for their result (FGFA offline: K of them)
    damage: list[DecodeError] = []
    counts = {"frames": 0, "keys": 0, "ms": 0.0}
    stopped: list[bool] = []
    total = source.num_frames - start if source.num_frames is not None else None
    if max_frames is not None:
        total = min(total, max_frames) if total is not None else max_frames
    bar = tqdm(total=total, desc=f"{model.task} {method}", unit="frame", disable=not progress)

    def frames() -> Iterator[np.ndarray]:
        try:
            for k, frame in enumerate(source.timed_frames(start)):
                if max_frames is not None and k >= max_frames:
                    break
                if between_frames is not None:
                    between_frames()
                pending.append(frame)
                yield frame.image
        except DecodeError as err:
            damage.append(err)

    def annotated(lines) -> Iterator[TimedFrame]:  # at the source's times: the output plays in sync with it
        for result in model.stream(frames(), method, key_interval, window, online, precision, flow_batch):
            if stop is not None and stop():
                stopped.append(True)
                if counts["frames"] == 0:
                    raise _Stop
                return
            time, frame = pending.popleft()
            counts["frames"] += 1
            counts["keys"] += int(result.is_key)
            counts["ms"] += result.ms
            if lines is not None:
                lines.write(json.dumps(result_record(result, model.class_names, min_score, start, time)) + "\n")
            bar.update()
            drawn = annotate(frame, result, model.class_names, palette, min_score) if out_video is not None else frame
            yield TimedFrame(time, drawn)

    began = time.perf_counter()
    try:
        with atomic_path(out_json) if out_json is not None else nullcontext() as json_path:
            lines = open(json_path, "w") if json_path is not None else None
            try:
                if out_video is not None:
                    try:
                        write_video(out_video, annotated(lines), fps=source.fps)
                    except ValueError:  # "no frames to write": the checks below say why
                        if counts["frames"]:
                            raise
                else:
                    for _ in annotated(lines):
                        pass
                if damage and counts["frames"] == 0:  # not one frame decoded: the damage is the error
                    raise damage[0]
                if counts["frames"] == 0:
                    raise FeatflowError(f"--start {start}: {source.path} ends before frame {start}")
            finally:
                if lines is not None:
                    lines.close()
                bar.close()
    except _Stop:
        pass
    wall = time.perf_counter() - began
    n = counts["frames"]
    written = n > 0
    summary = InferSummary(str(source.path), model.task, method, n, counts["keys"],
                           1000 * n / counts["ms"] if counts["ms"] else 0.0, n / wall if wall else 0.0,
                           str(out_video) if out_video is not None and written else None,
                           str(out_json) if out_json is not None and written else None,
                           str(damage[0]) if damage else None, bool(stopped), start)
    return summary
