"""Video I/O. In: a video file (anything PyAV decodes) or a folder of images, read as a stream of (H, W, 3)
uint8 RGB frames so that memory does not grow with the length of the video. Out: H.264 mp4 through PyAV.

Damage is reported, never hidden: a decoder error part-way, or a stream that ends well before the frame count
its header announces (a truncated file), raises ``DecodeError`` naming the file and the frame, after every frame
before the damage has been yielded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from featflow.errors import FeatflowError, MissingInput
from featflow.utils.io import atomic_path

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
_DEFAULT_FPS = 25.0


class DecodeError(FeatflowError):
    """A source could not be read past some frame; ``frame`` frames were read before the damage."""

    def __init__(self, message: str, frame: int) -> None:
        super().__init__(message)
        self.frame = frame


def natural_key(name: str) -> list:
    """'frame10.png' sorts after 'frame9.png': digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def to_rgb(frame: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) uint8 RGB (grey repeated, alpha dropped)."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frame.dtype}")
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4):
        raise ValueError(f"frames must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {frame.shape}")
    if frame.shape[2] == 1:
        return np.repeat(frame, 3, axis=2)
    return np.ascontiguousarray(frame[..., :3])


@dataclass(frozen=True)
class FrameSource:
    """Where frames come from. ``frames()`` streams them; ``num_frames`` is the announced count (None: unknown)."""

    path: Path
    fps: float
    num_frames: int | None
    images: tuple[Path, ...] = ()  # a folder's images, in natural order (empty for a video)

    @property
    def is_video(self) -> bool:
        return not self.images

    def frames(self) -> Iterator[np.ndarray]:
        return _video_frames(self) if self.is_video else _folder_frames(self)


def open_source(path: str | os.PathLike, fps: float | None = None) -> FrameSource:
    """A video file or a folder of images -> its ``FrameSource``; bad input raises with what is wrong.
    ``fps`` sets a folder's frame rate (default 25) or overrides a video's."""
    path = Path(path)
    if not path.exists():
        raise MissingInput(f"no such video or image folder: {path}")
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                       key=lambda p: natural_key(p.name))
        if not files:
            raise FeatflowError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return FrameSource(path, fps or _DEFAULT_FPS, len(files), tuple(files))
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise FeatflowError(f"cannot open {path} as a video ({err})") from None
    with container:
        if not container.streams.video:
            raise FeatflowError(f"{path} has no video stream")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 0) or _DEFAULT_FPS
        count = stream.frames or None
        if count is None and container.duration:
            count = round(container.duration / av.time_base * rate) or None
    return FrameSource(path, fps or rate, count)


def _video_frames(source: FrameSource) -> Iterator[np.ndarray]:
    index = 0
    try:
        with av.open(str(source.path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
                index += 1
    except av.error.FFmpegError as err:
        raise DecodeError(f"{source.path}: decoding failed at frame {index} ({err}); "
                          f"frames 0..{index - 1} were read", index) from None
    if index == 0:
        raise DecodeError(f"{source.path}: the video stream has no frames", 0)
    if source.num_frames is not None and index < source.num_frames - 1:
        raise DecodeError(f"{source.path}: the stream ends at frame {index} but announces {source.num_frames} "
                          f"frames (a truncated or damaged file); frames 0..{index - 1} were read", index)


def _folder_frames(source: FrameSource) -> Iterator[np.ndarray]:
    size: tuple[int, int] | None = None
    for index, path in enumerate(source.images):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise DecodeError(f"{path}: cannot decode image {index} of {source.path}", index)
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        image = to_rgb(image)
        if size is None:
            size = image.shape[:2]
        elif image.shape[:2] != size:
            raise DecodeError(f"{path}: image {index} is {image.shape[1]}x{image.shape[0]}, the images before it are "
                              f"{size[1]}x{size[0]} (one folder must hold frames of one size)", index)
        yield image


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
