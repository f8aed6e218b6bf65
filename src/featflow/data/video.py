"""Video files through PyAV (FFmpeg bundled in its wheels): frames in presentation order, H.264 mp4 out."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from featflow.utils.io import atomic_path


def read_video(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield the frames of a video file as (H, W, 3) uint8 RGB, in presentation order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such video: {path}")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise ValueError(f"cannot open {path} as a video ({err})") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def video_fps(path: str | os.PathLike) -> float:
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
        return float(rate) if rate else 25.0


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 10.0, crf: int = 20) -> int:
    """Encode (H, W, 3) uint8 RGB frames as H.264 (yuv420p) mp4, atomically; -> the number of frames.

    Odd frame sizes are padded by one pixel (H.264 with 4:2:0 chroma needs even sizes).
    """
    count = 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = None
            for frame in frames:
                if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                    raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
                h, w = frame.shape[:2]
                if stream is None:
                    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
                    stream.width, stream.height = w + w % 2, h + h % 2
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": str(crf), "preset": "medium"}
                    size = (h, w)
                elif (h, w) != size:
                    raise ValueError(f"frame {count} is {w}x{h}, the video is {size[1]}x{size[0]}")
                if h % 2 or w % 2:
                    frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    container.mux(packet)
                count += 1
            if stream is None:
                raise ValueError("no frames to write")
            for packet in stream.encode():
                container.mux(packet)
    return count
