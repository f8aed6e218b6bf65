"""Degradations that make single frames unreliable, each with a strength (0 = off, 1 = default).

- motion blur: each object (and the background, with the camera) is smeared along its own image
  motion over an exposure of 0.5-1.0 frame intervals times the strength;
- defocus: episodes of a few frames with Gaussian blur rising and falling (peak sigma up to 3 px per
  256 image rows times the strength);
- noise: Gaussian sensor noise (sigma 2-8 grey levels times the strength);
- flicker: per-frame exposure changes (smooth drift plus sudden jumps, up to about 25% times the strength);
- occluders: translucent blobs and streaks near the lens (opacity up to 0.7 times the strength), drifting
  slowly over the image.

Per-object changes of appearance over time, as real objects show them (off in ``"default"``, on in ``"video"``):
- bursts: an object's speed is not constant; it makes sudden moves (a head turns, an animal jumps) of
  0.2-0.7 of its size within 3-8 frames, so its motion blur peaks for a few frames (Poisson, about one
  burst per 20 frames per object times the strength);
- object_defocus: an object moves out of the focal plane for a few frames (blur of the object alone, peak
  sigma 1.5-4 px per 256 rows times the strength; about one episode per 25 frames per object);
- pose: out-of-plane rotation, the object turning towards and away from the camera, seen as foreshortening
  along one of its axes (yaw up to 70 degrees times the strength, periods of 20-80 frames).

Degradations change the images only: the labels and the flow describe the scene behind them (pose and bursts
are motion, so the labels and flow follow them).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import cv2
import numpy as np

from featflow.errors import FeatflowError


@dataclass(frozen=True)
class Degradations:
    motion_blur: float = 1.0
    defocus: float = 1.0
    noise: float = 1.0
    flicker: float = 1.0
    occluders: float = 1.0
    bursts: float = 0.0
    object_defocus: float = 0.0
    pose: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 10.0):
                raise FeatflowError(f"degradation {f.name} must be a strength in [0, 10], got {value!r}")

    @classmethod
    def off(cls) -> "Degradations":
        return cls(**{f.name: 0.0 for f in fields(cls)})

    @classmethod
    def video(cls) -> "Degradations":
        """Everything on: the frame-level degradations and the per-object appearance changes."""
        return cls(**{f.name: 1.0 for f in fields(cls)})

    @classmethod
    def parse(cls, text: str) -> "Degradations":
        """``"default"``, ``"video"``, ``"off"``, or ``"name=strength,..."`` over the default (e.g.
        ``"noise=2,flicker=0"``); ``"video,name=strength,..."`` starts from ``"video"`` instead."""
        text = text.strip()
        presets = {"": cls, "default": cls, "video": cls.video, "off": cls.off, "none": cls.off}
        head, _, rest = text.partition(",")
        if head.strip() in presets and "=" not in head:
            base, text = presets[head.strip()](), rest
        else:
            base = cls()
        if not text.strip():
            return base
        values: dict[str, float] = {}
        names = {f.name for f in fields(cls)}
        for item in text.split(","):
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in names:
                raise FeatflowError(f"bad degradation {item!r}: expected NAME=STRENGTH with NAME in {sorted(names)}")
            try:
                values[name] = float(value)
            except ValueError:
                raise FeatflowError(f"bad strength {value!r} for degradation {name}") from None
        return replace(base, **values)


def line_kernel(dx: float, dy: float) -> np.ndarray | None:
    """A normalised blur kernel along the segment (-d/2, d/2); None when shorter than one pixel."""
    length = float(np.hypot(dx, dy))
    if length < 1.0:
        return None
    half = int(np.ceil(length / 2)) + 1
    size = 2 * half + 1
    kernel = np.zeros((size, size), np.float32)
    steps = max(2, int(np.ceil(length * 2)) + 1)
    for s in np.linspace(-0.5, 0.5, steps):
        x, y = half + s * dx, half + s * dy
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        kernel[y0, x0] += (1 - fx) * (1 - fy)
        kernel[y0, x0 + 1] += fx * (1 - fy)
        kernel[y0 + 1, x0] += (1 - fx) * fy
        kernel[y0 + 1, x0 + 1] += fx * fy
    return kernel / kernel.sum()


def motion_blur(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Smear ``image`` along the displacement (dx, dy) pixels (the motion during the exposure)."""
    kernel = line_kernel(dx, dy)
    if kernel is None:
        return image
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


@dataclass(frozen=True)
class DefocusEpisode:
    start: float
    length: float
    peak_sigma: float

    def sigma(self, t: float) -> float:
        phase = (t - self.start) / self.length
        return self.peak_sigma * float(np.sin(np.pi * phase)) if 0.0 < phase < 1.0 else 0.0


@dataclass(frozen=True)
class Occluder:
    """A translucent lens-level blob: alpha map (h, w) in [0, 1], colour, and a slow drift."""

    alpha: np.ndarray
    color: np.ndarray
    position: np.ndarray  # top-left at t = 0, pixels (x, y)
    velocity: np.ndarray  # pixels per frame


@dataclass(frozen=True)
class DegradationSchedule:
    """The degradations of one video, sampled once so any frame can be rendered on its own."""

    exposure: float  # fraction of a frame interval the shutter is open (0 = no motion blur)
    defocus: tuple[DefocusEpisode, ...]
    noise_sigma: float
    gain: np.ndarray  # (T,) per-frame exposure gain
    occluders: tuple[Occluder, ...]

    def defocus_sigma(self, t: int) -> float:
        return max((e.sigma(t) for e in self.defocus), default=0.0)


def sample_schedule(
    rng: np.random.Generator, deg: Degradations, num_frames: int, height: int, width: int
) -> DegradationSchedule:
    """Draw one video's degradations. Every draw happens whatever the strengths (a strength only scales
    its result), so turning one degradation off leaves the others exactly as they were."""
    unit = height / 256.0
    exposure = deg.motion_blur * rng.uniform(0.5, 1.0)
    episodes = tuple(
        DefocusEpisode(start=rng.uniform(-4, num_frames), length=rng.uniform(4, 12),
                       peak_sigma=deg.defocus * unit * rng.uniform(1.0, 3.0))
        for _ in range(rng.poisson(num_frames / 15.0))
    )
    noise_sigma = deg.noise * rng.uniform(2.0, 8.0)
    drift = np.cumsum(rng.normal(0, 0.02, num_frames))
    drift = drift - drift.mean()
    jumps = np.where(rng.random(num_frames) < 0.08, rng.uniform(-0.25, 0.25, num_frames), 0.0)
    gain = np.clip(1.0 + deg.flicker * (np.clip(drift, -0.12, 0.12) + jumps), 0.3, 2.0).astype(np.float32)
    occluders = tuple(_sample_occluder(rng, deg.occluders, height, width) for _ in range(rng.poisson(1.2)))
    return DegradationSchedule(exposure, episodes if deg.defocus > 0 else (), noise_sigma, gain,
                               occluders if deg.occluders > 0 else ())


def _sample_occluder(rng: np.random.Generator, strength: float, height: int, width: int) -> Occluder:
    h = int(rng.uniform(0.15, 0.45) * height)
    w = int(rng.uniform(0.1, 0.5) * width)
    canvas = np.zeros((h, w), np.float32)
    if rng.random() < 0.5:  # a blob (dirt, a leaf out of focus)
        cv2.ellipse(canvas, (w // 2, h // 2), (max(1, w // 2 - 2), max(1, h // 2 - 2)), rng.uniform(0, 180), 0, 360,
                    1.0, -1)
    else:  # streaks (rain, a twig)
        for _ in range(int(rng.integers(2, 6))):
            p1 = (int(rng.uniform(0, w)), 0)
            p2 = (int(rng.uniform(0, w)), h - 1)
            cv2.line(canvas, p1, p2, 1.0, int(rng.integers(2, 7)))
    blur = max(1.0, 0.04 * min(h, w))
    canvas = cv2.GaussianBlur(canvas, (0, 0), blur)
    alpha = canvas * min(0.95, strength * rng.uniform(0.3, 0.7))
    color = (rng.uniform(0, 255, 3).astype(np.float32) if rng.random() < 0.5
             else np.full(3, rng.uniform(0, 60), np.float32))
    position = np.array([rng.uniform(-0.2 * w, width - 0.8 * w), rng.uniform(-0.2 * h, height - 0.8 * h)])
    velocity = rng.normal(0, 0.3 * height / 256.0, 2)
    return Occluder(alpha, color, position, velocity)


def apply_occluders(frame: np.ndarray, occluders: tuple[Occluder, ...], t: int) -> None:
    """Blend the occluders into ``frame`` (H, W, 3) float32, in place."""
    height, width = frame.shape[:2]
    for occ in occluders:
        x0, y0 = np.round(occ.position + occ.velocity * t).astype(int)
        h, w = occ.alpha.shape
        fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
        if fx0 >= fx1 or fy0 >= fy1:
            continue
        a = occ.alpha[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0, None]
        region = frame[fy0:fy1, fx0:fx1]
        region += a * (occ.color - region)


def sensor_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean noise of std ``sigma``: the difference of two uniform bytes (a triangular distribution),
    several times cheaper than numpy's normal sampler, which matters at 100+ frames per second."""
    draws = rng.integers(0, 256, (2, *shape), dtype=np.uint8)
    noise = draws[0].astype(np.float32)
    noise -= draws[1]
    noise *= np.float32(sigma / 104.5)  # the std of the difference is sqrt(2 * (256**2 - 1) / 12) ~= 104.5
    return noise


def finish_frame(frame: np.ndarray, schedule: DegradationSchedule, t: int, rng: np.random.Generator) -> np.ndarray:
    """Lens and sensor stages on the composited scene (H, W, 3) float32 -> uint8 RGB."""
    apply_occluders(frame, schedule.occluders, t)
    sigma = schedule.defocus_sigma(t)
    if sigma > 0.3:
        frame = cv2.GaussianBlur(frame, (0, 0), sigma)
    gain = float(schedule.gain[t]) if 0 <= t < len(schedule.gain) else 1.0
    if gain != 1.0:
        frame *= gain
    if schedule.noise_sigma > 0:
        frame += sensor_noise(rng, frame.shape, schedule.noise_sigma)
    frame += 0.5
    np.clip(frame, 0, 255, out=frame)
    return frame.astype(np.uint8)
