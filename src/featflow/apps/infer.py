"""``featflow infer``: a video file or image folder through a model, as a stream.

Frames are decoded, run through the model (``featflow.api.Model.stream``), annotated and encoded one at a time,
so memory is bounded by the method (FGFA offline holds its 2K+1 window), never by the video's length. Per-frame
results go to JSON lines: boxes with class and score, or the label map run-length encoded
(``featflow.structures.encode_labels``). A source damaged part-way keeps everything before the damage: those
frames are written, and the summary's ``error`` names the file and the frame.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from featflow.data.video import DecodeError, FrameSource, write_video
from featflow.engine.predictor import FrameResult, Model
from featflow.structures import encode_labels
from featflow.utils.io import atomic_path
from featflow.utils.visualize import class_palette, draw_boxes, overlay


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

    def to_json(self) -> dict:
        return asdict(self)


def result_record(result: FrameResult, class_names: list[str]) -> dict:
    """One JSON line: the frame index, key frame or not, model ms, and the boxes or the encoded label map."""
    record = {"frame": result.index, "key": result.is_key, "ms": round(result.ms, 3)}
    if result.detections is not None:
        d = result.detections
        record.update(boxes=np.round(d.boxes, 2).tolist(), scores=np.round(d.scores, 4).tolist(),
                      labels=d.labels.tolist(), classes=[class_names[int(k) - 1] for k in d.labels])
    if result.labels is not None:
        record["mask"] = encode_labels(result.labels)
    return record


def annotate(frame: np.ndarray, result: FrameResult, class_names: list[str], palette: np.ndarray,
             min_score: float = 0.3) -> np.ndarray:
    """The frame with its label map blended in (segmentation) or its boxes drawn (detection)."""
    if result.labels is not None:
        return overlay(frame, result.labels, palette[1:])  # label ids are 0-based train ids
    d = result.detections
    return draw_boxes(frame, d.boxes, d.labels, d.scores, class_names, palette, min_score)


def run_infer(source: FrameSource, model: Model, method: str | None = None, key_interval: int | None = None,
              window: int = 10, online: bool = False, out_video: str | os.PathLike | None = None,
              out_json: str | os.PathLike | None = None, progress: bool = True, min_score: float = 0.3) -> InferSummary:
    """Run ``model`` over ``source``, writing the annotated video and / or the JSON lines; -> the summary.
    A source damaged part-way: the frames before the damage are processed and written, and the summary's
    ``error`` says where decoding stopped (a source with no frame at all raises ``DecodeError``)."""
    method = method or model.default_method
    palette = class_palette(len(model.class_names))
    pending: deque[np.ndarray] = deque()  # frames waiting for their result (FGFA offline: K of them)
    damage: list[DecodeError] = []
    counts = {"frames": 0, "keys": 0, "ms": 0.0}
    bar = tqdm(total=source.num_frames, desc=f"{model.task} {method}", unit="frame", disable=not progress)

    def frames() -> Iterator[np.ndarray]:
        try:
            for frame in source.frames():
                pending.append(frame)
                yield frame
        except DecodeError as err:
            damage.append(err)

    def annotated(lines) -> Iterator[np.ndarray]:
        for result in model.stream(frames(), method, key_interval, window, online):
            frame = pending.popleft()
            counts["frames"] += 1
            counts["keys"] += int(result.is_key)
            counts["ms"] += result.ms
            if lines is not None:
                lines.write(json.dumps(result_record(result, model.class_names)) + "\n")
            bar.update()
            yield annotate(frame, result, model.class_names, palette, min_score) if out_video is not None else frame

    start = time.perf_counter()
    with atomic_path(out_json) if out_json is not None else nullcontext() as json_path:
        lines = open(json_path, "w") if json_path is not None else None
        try:
            if out_video is not None:
                try:
                    write_video(out_video, annotated(lines), fps=source.fps)
                except ValueError:
                    if not (damage and counts["frames"] == 0):
                        raise
            else:
                for _ in annotated(lines):
                    pass
            if damage and counts["frames"] == 0:  # not one frame decoded: the damage is the error
                raise damage[0]
        finally:
            if lines is not None:
                lines.close()
            bar.close()
    wall = time.perf_counter() - start
    n = counts["frames"]
    summary = InferSummary(str(source.path), model.task, method, n, counts["keys"],
                           1000 * n / counts["ms"] if counts["ms"] else 0.0, n / wall if wall else 0.0,
                           str(out_video) if out_video is not None else None,
                           str(out_json) if out_json is not None else None, str(damage[0]) if damage else None)
    return summary

