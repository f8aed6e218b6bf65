"""Video I/O. In: a video file (anything PyAV decodes) or a folder of images, read as a stream of (H, W, 3)
uint8 RGB frames so that memory does not grow with the length of the video, upright (a rotation in the file's
display matrix, as phones record, is applied). Out: the container named by the file's extension (``VIDEO_FORMATS``:
H.264 mp4 / mkv, VP9 webm, MPEG-4 avi, GIF) through PyAV.

Timestamps are the truth. Frames come with their presentation time in seconds (``timed_frames``), as the file
gives it: variable frame rates, dropped-frame slots and a non-zero start are kept, and ``write_video`` given
``TimedFrame`` items writes those times back, so an annotated copy plays in sync with its source.

Damage is reported, never hidden: a decoder error part-way, or a stream whose frames end well before the duration
the container announces (a truncated file), raises ``DecodeError`` naming the file and the frame, after every frame
before the damage has been yielded. A header's frame count is not evidence: an AVI's counts its dropped-frame slots.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

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


class TimedFrame(NamedTuple):
    """A decoded frame and its presentation time in seconds (a folder's frames: index / fps)."""

    time: float
    image: np.ndarray  # (H, W, 3) uint8 RGB


#: A stream is truncated when its frames end more than this share of its duration (and two frame intervals)
#: before the duration its container announces.
TRUNCATION_SHARE = 0.1


@dataclass(frozen=True)
class FrameSource:
    """Where frames come from. ``frames()`` streams them (``timed_frames()`` with their times); ``num_frames`` is
    the announced count (None: unknown; a header's count, so only an estimate for a progress bar)."""

    path: Path
    fps: float  # the nominal rate (variable-rate video: the average)
    num_frames: int | None
    images: tuple[Path, ...] = ()  # a folder's images, in natural order (empty for a video)
    start_time: float = 0.0  # seconds: the first frame's presentation time as the container announces it
    duration: float | None = None  # seconds the video stream lasts (None: unknown)

    @property
    def is_video(self) -> bool:
        return not self.images

    def timed_frames(self, start: int = 0) -> Iterator[TimedFrame]:
        """(time, frame) from frame index ``start`` on (a video decodes and drops the ones before)."""
        if self.is_video:
            return _video_frames(self, start)
        return (TimedFrame(index / self.fps, image) for index, image in _folder_frames(self, start))

    def frames(self, start: int = 0) -> Iterator[np.ndarray]:
        """The frames from index ``start`` on (a video decodes and drops the ones before; a folder skips them)."""
        return (frame.image for frame in self.timed_frames(start))


def upright(frame: np.ndarray, rotation: float) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, as ``av.VideoFrame.rotation`` gives it) to a decoded
    frame: the picture as a player shows it. Rotations are multiples of 90 degrees (others are rounded)."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(frame, turns)) if turns else frame


def check_image_sizes(source: FrameSource) -> None:
    """A folder whose images differ in size raises ``FeatflowError`` naming the first odd one, before any frame is
    decoded (reads the image headers only; an image whose header cannot be read is left to decoding)."""
    if source.is_video or len(source.images) < 2:
        return
    from PIL import Image, UnidentifiedImageError

    first: tuple[int, int] | None = None
    for index, path in enumerate(source.images):
        try:
            with Image.open(path) as image:
                size = image.size
        except (OSError, UnidentifiedImageError):
            continue
        if first is None:
            first, first_path = size, path
        elif size != first:
            raise FeatflowError(f"{path}: image {index} of {source.path} is {size[0]}x{size[1]}, {first_path.name} "
                                f"is {first[0]}x{first[1]} (one folder must hold frames of one size)")


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
        start_time = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        duration = _stream_duration(container, stream)
        count = stream.frames or None
        if count is None and duration:
            count = round(duration * rate) or None
    return FrameSource(path, fps or rate, count, start_time=start_time, duration=duration)


def _stream_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """Seconds the video stream lasts: its own duration, else the container's when the video is its only stream
    (with audio beside it the container's may be the audio's)."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def _video_frames(source: FrameSource, start: int = 0) -> Iterator[TimedFrame]:
    index, end = 0, source.start_time  # end: where the frames decoded so far stop (the last one's time + duration)
    interval = 1.0 / source.fps
    try:
        with av.open(str(source.path)) as container:
            for frame in container.decode(video=0):
                time = float(frame.time) if frame.time is not None else source.start_time + index * interval
                shown = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else interval
                end = max(end, time + shown)
                if index >= start:
                    yield TimedFrame(time, upright(frame.to_ndarray(format="rgb24"), frame.rotation))
                index += 1
    except av.error.FFmpegError as err:
        raise DecodeError(f"{source.path}: decoding failed at frame {index} ({err}); "
                          f"frames 0..{index - 1} were read", index) from None
    if index == 0:
        raise DecodeError(f"{source.path}: the video stream has no frames", 0)
    if source.duration:
        # containers disagree on whether a duration counts from the start time (mp4) or from 0 (Matroska): the
        # frames must reach the nearer of the two ends (a cut smaller than a late start goes unnoticed)
        expected = min(source.start_time + source.duration, max(source.duration, source.start_time))
        if end < expected - max(2 * interval, TRUNCATION_SHARE * source.duration):
            raise DecodeError(f"{source.path}: the stream ends at frame {index}, {end - source.start_time:.2f} s "
                              f"in, but lasts {source.duration:.2f} s (a truncated or damaged file); frames "
                              f"0..{index - 1} were read", index)


def _folder_frames(source: FrameSource, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    size: tuple[int, int] | None = None
    for index, path in enumerate(source.images[start:], start):
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
        yield index, image


#: container -> the time base of the timestamps ``write_video`` writes for ``TimedFrame`` items (AVI counts frame
#: slots at the nominal rate: a gap becomes dropped-frame slots; GIF delays are in hundredths of a second).
_TIME_BASES: dict[str, Fraction | None] = {"mp4": Fraction(1, 90000), "matroska": Fraction(1, 1000),
                                           "webm": Fraction(1, 1000), "avi": None, "gif": Fraction(1, 100)}

#: extension -> (container, codec, pixel format) of the videos ``write_video`` writes.
VIDEO_FORMATS: dict[str, tuple[str, str, str]] = {
    ".mp4": ("mp4", "libx264", "yuv420p"), ".mkv": ("matroska", "libx264", "yuv420p"),
    ".webm": ("webm", "libvpx-vp9", "yuv420p"), ".avi": ("avi", "mpeg4", "yuv420p"), ".gif": ("gif", "gif", "rgb8")}
#: The extensions of video files a folder of videos is read for (PyAV decodes more; these are the usual ones).
VIDEO_SUFFIXES: tuple[str, ...] = (*VIDEO_FORMATS, ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp")


def video_format(path: str | os.PathLike) -> tuple[str, str, str]:
    """The (container, codec, pixel format) for a video file named ``path``; an unknown extension raises."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise FeatflowError(f"{path}: cannot tell the video format from the extension {suffix or '(none)'!r}; "
                            f"choose one of {', '.join(VIDEO_FORMATS)}")
    return VIDEO_FORMATS[suffix]


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray | TimedFrame], fps: float = 10.0,
                crf: int = 20) -> int:
    """Encode (H, W, 3) uint8 RGB frames in the container the extension names (``VIDEO_FORMATS``), atomically;
    -> the number of frames. ``crf`` sets the quality of H.264 (VP9 gets ``crf + 12``, its scale).

    ``TimedFrame`` items are written at their times (a source's timing kept; strictly increasing after rounding
    to the container's time base), plain arrays one every 1 / ``fps`` seconds. Odd frame sizes are padded by one
    pixel (4:2:0 chroma needs even sizes).
    """
    fmt, codec, pix_fmt = video_format(path)
    even = pix_fmt == "yuv420p"
    rate = Fraction(fps).limit_denominator(1000)
    time_base = _TIME_BASES[fmt] or 1 / rate
    count, last_pts = 0, -1
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format=fmt) as container:
            stream = None
            for item in frames:
                seconds, frame = (item.time, item.image) if isinstance(item, TimedFrame) else (None, item)
                if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                    raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
                h, w = frame.shape[:2]
                if stream is None:
                    stream = container.add_stream(codec, rate=rate)
                    stream.time_base = time_base
                    stream.width, stream.height = (w + w % 2, h + h % 2) if even else (w, h)
                    stream.pix_fmt = pix_fmt
                    if codec == "libx264":
                        stream.options = {"crf": str(crf), "preset": "medium"}
                    elif codec == "libvpx-vp9":
                        stream.bit_rate = 0
                        stream.options = {"crf": str(crf + 12), "deadline": "realtime", "cpu-used": "8"}
                    elif codec == "mpeg4":
                        stream.bit_rate = max(500_000, int(4 * w * h * fps))
                    size = (h, w)
                elif (h, w) != size:
                    raise ValueError(f"frame {count} is {w}x{h}, the video is {size[1]}x{size[0]}")
                if even and (h % 2 or w % 2):
                    frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                pts = round(seconds / time_base) if seconds is not None else round(count / rate / time_base)
                picture.pts, picture.time_base = max(pts, last_pts + 1), time_base
                last_pts = picture.pts
                for packet in stream.encode(picture):
                    container.mux(packet)
                count += 1
            if stream is None:
                raise ValueError("no frames to write")
            for packet in stream.encode():
                container.mux(packet)
    return count
