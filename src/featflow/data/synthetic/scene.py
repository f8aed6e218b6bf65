"""What one synthetic video contains: a camera over a textured world, object tracks, degradations.

Everything is sampled once per video from its seed and is an analytic function of time, so any
frame, and the exact motion between any two frames, can be computed on its own.

Geometry: affine maps are (2, 3) float64 matrices acting on pixel centres (x, y, 1).
- ``Camera.matrix(t)``: world (background canvas pixels) -> image.
- ``Track.matrix(t)``: object sprite pixels -> image. Objects move in image space, independent of the
  camera, so their speed category (slow / medium / fast in motion-IoU terms) is under control. Sudden
  moves (bursts) and out-of-plane turns (foreshortening) are part of that map, so labels and flow follow them.

Object sizes are a fraction of the frame height (``SynthConfig.object_size``). The default (0.15-0.55)
gives objects of 2-8 cells of a stride-16 feature map at 192x384; ``SynthConfig.vid`` follows ImageNet
VID, where at 600x1000 most objects span 4 or more cells along their shorter side.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import cv2
import numpy as np

from featflow.data.synthetic import textures
from featflow.data.synthetic.classes import NUM_CLASSES, Sprite, blob, make_sprite, sample_object_sprite
from featflow.data.synthetic.degrade import DefocusEpisode, Degradations, DegradationSchedule, sample_schedule
from featflow.errors import FeatflowError
from featflow.registry import GEOMETRIES, check_choice

SPEED_CATEGORIES: tuple[str, ...] = ("slow", "medium", "fast")
#: Object speed per frame as a fraction of its diameter, by category. A box moving this fast keeps
#: a mean IoU with itself over +-10 frames above 0.9 (slow), 0.7-0.9 (medium) or below 0.7 (fast).
SPEED_RANGES: dict[str, tuple[float, float]] = {"slow": (0.0, 0.005), "medium": (0.013, 0.026), "fast": (0.045, 0.12)}
_SPIN = {"slow": 0.002, "medium": 0.008, "fast": 0.025}  # rad/frame (std)
_SCALE_AMP = {"slow": 0.04, "medium": 0.1, "fast": 0.2}
#: How much of the per-object appearance change (bursts, out-of-plane turns) an object of each speed category
#: shows: an object at rest rarely jumps or turns (its box would not stay put, which is what "slow" means in
#: motion-IoU terms), a fast one moves unevenly and turns as it goes.
_CHANGE = {"slow": 0.2, "medium": 0.6, "fast": 1.0}


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The affine map x -> a(b(x))."""
    return np.hstack([a[:, :2] @ b[:, :2], a[:, :2] @ b[:, 2:] + a[:, 2:]])


def invert(a: np.ndarray) -> np.ndarray:
    linear = np.linalg.inv(a[:, :2])
    return np.hstack([linear, -linear @ a[:, 2:]])


def similarity(scale: float, angle: float, src_center: np.ndarray, dst_center: np.ndarray) -> np.ndarray:
    """Rotate by ``angle`` and scale about ``src_center``, moving it to ``dst_center``."""
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    linear = np.array([[c, -s], [s, c]])
    return np.hstack([linear, (dst_center - linear @ src_center)[:, None]])


@dataclass(frozen=True)
class SynthConfig:
    """Size, length and content settings of the generated videos."""

    height: int = 256
    width: int = 512
    num_frames: int = 30
    degradations: Degradations = field(default_factory=Degradations)
    speed_mix: tuple[float, float, float] = (0.4, 0.35, 0.25)  # slow, medium, fast
    objects: tuple[int, int] = (6, 12)  # objects per video (per 60 frames for longer videos)
    object_size: tuple[float, float] = (0.15, 0.55)  # object diameter as a fraction of the height (log-uniform)
    placement: tuple[float, float] = (-0.05, 1.05)  # range of an object's centre, as a fraction of the frame

    def __post_init__(self) -> None:
        if self.height < 16 or self.width < 16:
            raise FeatflowError(f"frames must be at least 16x16, got {self.height}x{self.width}")
        if self.num_frames < 1:
            raise FeatflowError(f"a video needs at least one frame, got {self.num_frames}")
        if len(self.speed_mix) != 3 or min(self.speed_mix) < 0 or sum(self.speed_mix) <= 0:
            raise FeatflowError(f"speed_mix must be three non-negative weights, got {self.speed_mix}")
        if not 1 <= self.objects[0] <= self.objects[1]:
            raise FeatflowError(f"objects must be a range (min >= 1, max >= min), got {self.objects}")
        if not 0.01 <= self.object_size[0] <= self.object_size[1] <= 2.0:
            raise FeatflowError(f"object_size must be a range of fractions of the height in [0.01, 2], "
                                f"got {self.object_size}")
        if not -1.0 <= self.placement[0] <= self.placement[1] <= 2.0:
            raise FeatflowError(f"placement must be a range of fractions of the frame in [-1, 2], got {self.placement}")

    @classmethod
    def vid(cls, height: int = 224, width: int = 384, num_frames: int = 30,
            degradations: Degradations | None = None) -> "SynthConfig":
        """ImageNet VID's geometry: few, large objects (diameter 0.45-0.95 of the height, 2-5 per video),
        so that most boxes span 4 or more stride-16 cells along their shorter side, as VID's objects do
        at 600x1000, framed by the camera (centred in the middle 60% of the frame when their track is
        half-way; fast ones still cross the edge); every frame-level degradation and per-object appearance
        change is on."""
        return cls(height, width, num_frames, degradations or Degradations.video(), objects=(2, 5),
                   object_size=(0.45, 0.95), placement=(0.2, 0.8))

    @classmethod
    def build(cls, geometry: str, height: int, width: int, num_frames: int = 30,
              degradations: Degradations | None = None) -> "SynthConfig":
        """The config of a named geometry (one of GEOMETRIES): "shapes" (many small objects, the default) or
        "vid" (``SynthConfig.vid``)."""
        check_choice("synthetic geometry", geometry, GEOMETRIES)
        if geometry == "vid":
            return cls.vid(height, width, num_frames, degradations)
        return cls(height, width, num_frames, degradations if degradations is not None else Degradations())


    @classmethod
    def from_dict(cls, data: dict) -> "SynthConfig":
        """The config ``dataclasses.asdict`` wrote (``featflow_synth.json``); fields it lacks keep their default."""
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        if "degradations" in values:
            values["degradations"] = Degradations(**values["degradations"])
        return cls(**values)


@dataclass(frozen=True)
class Camera:
    """A camera panning over the world with slow zoom and roll."""

    center0: np.ndarray  # world point at the image centre at t = 0
    velocity: np.ndarray  # world pixels per frame
    zoom_amp: float
    zoom_freq: float
    zoom_phase: float
    roll_amp: float
    roll_freq: float
    roll_phase: float
    image_center: np.ndarray

    def matrix(self, t: float) -> np.ndarray:
        zoom = float(np.exp(self.zoom_amp * np.sin(self.zoom_freq * t + self.zoom_phase)))
        roll = float(self.roll_amp * np.sin(self.roll_freq * t + self.roll_phase))
        return similarity(zoom, roll, self.center0 + self.velocity * t, self.image_center)


def _smoothstep(x: float) -> float:
    """0 before 0, 1 after 1, 3x^2 - 2x^3 in between (continuous speed at both ends)."""
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass(frozen=True)
class Burst:
    """A sudden move: ``displacement`` (x, y) pixels covered between ``start`` and ``start + duration``."""

    start: float
    duration: float
    displacement: np.ndarray

    def offset(self, t: float) -> np.ndarray:
        return self.displacement * _smoothstep((t - self.start) / self.duration)


@dataclass(frozen=True)
class Appearance:
    """How one object's appearance changes over time, beyond its steady motion (none by default)."""

    bursts: tuple[Burst, ...] = ()
    defocus: tuple[DefocusEpisode, ...] = ()
    yaw_amp: float = 0.0  # out-of-plane turn (rad): the object is foreshortened by cos(yaw) along ``yaw_axis``
    yaw_freq: float = 0.0
    yaw_phase: float = 0.0
    yaw_axis: float = 0.0  # in the sprite's own frame (rad)

    def foreshortening(self, t: float) -> float:
        """cos(yaw) at time t, kept at 0.3 or more (an object seen edge-on is not annotated in VID either)."""
        return max(float(np.cos(self.yaw_amp * np.sin(self.yaw_freq * t + self.yaw_phase))), 0.3)

    def defocus_sigma(self, t: float) -> float:
        return max((e.sigma(t) for e in self.defocus), default=0.0)


@dataclass(frozen=True)
class Track:
    """One object: class, appearance, depth order and an analytic image-space trajectory."""

    track_id: int
    label: int
    sprite: Sprite
    depth: float  # larger is nearer the camera
    category: str  # the speed category it was drawn from
    t_center: float
    center: np.ndarray  # image position at t_center
    speed: float  # pixels per frame
    heading: float  # direction of motion at t_center (rad)
    turn: float  # change of heading (rad per frame)
    angle0: float
    spin: float  # rad per frame
    scale_amp: float
    scale_freq: float
    scale_phase: float
    appearance: Appearance = Appearance()

    def position(self, t: float) -> np.ndarray:
        dt = t - self.t_center
        if abs(self.turn) < 1e-9:
            step = self.speed * dt * np.array([np.cos(self.heading), np.sin(self.heading)])
        else:
            h1 = self.heading + self.turn * dt
            r = self.speed / self.turn
            step = r * np.array([np.sin(h1) - np.sin(self.heading), np.cos(self.heading) - np.cos(h1)])
        for burst in self.appearance.bursts:
            step = step + burst.offset(t)
        return self.center + step

    def scale(self, t: float) -> float:
        return float(np.exp(self.scale_amp * np.sin(self.scale_freq * (t - self.t_center) + self.scale_phase)))

    def matrix(self, t: float) -> np.ndarray:
        sprite_center = np.full(2, (self.sprite.size - 1) / 2.0)
        angle = self.angle0 + self.spin * (t - self.t_center)
        matrix = similarity(self.scale(t), angle, sprite_center, self.position(t))
        squash = self.appearance.foreshortening(t)
        if squash < 1.0:  # foreshorten about the sprite's centre along its yaw axis, before the similarity
            c, s = np.cos(self.appearance.yaw_axis), np.sin(self.appearance.yaw_axis)
            axis = np.array([[c, -s], [s, c]])
            linear = axis @ np.diag([squash, 1.0]) @ axis.T
            matrix = compose(matrix, np.hstack([linear, (sprite_center - linear @ sprite_center)[:, None]]))
        return matrix


@dataclass(frozen=True)
class Scene:
    config: SynthConfig
    background: np.ndarray  # (Hc, Wc, 3) uint8 world texture (reflected beyond its borders)
    camera: Camera
    tracks: tuple[Track, ...]  # in drawing order (far to near)
    schedule: DegradationSchedule


def make_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured world: large colour regions, fine detail for flow, and object-like clutter."""
    base = textures.colorize(rng, textures.value_noise(rng, height, width, cell=height / 3, octaves=4), 0.8)
    shade = textures.value_noise(rng, height, width, cell=height / 6, octaves=3)[..., None]  # (h, w, 1)
    regions = np.zeros((height, width), np.uint8)  # 0 = none, k = k-th large region (later ones on top)
    count = int(rng.integers(2, 6))
    for k in range(1, count + 1):
        points = np.stack([rng.uniform(-0.2, 1.2, 5) * width, rng.uniform(-0.2, 1.2, 5) * height], 1)
        cv2.fillConvexPoly(regions, cv2.convexHull(points.astype(np.int32)), k)
    colors = np.stack([np.stack([textures.random_color(rng), textures.random_color(rng)]) for _ in range(count + 1)])
    weight = np.full((count + 1, 1), 0.5, np.float32)
    weight[0] = 0.0
    low, high, mix = colors[regions, 0], colors[regions, 1], weight[regions]  # (h, w, 3), (h, w, 3), (h, w, 1)
    base += mix * (low + shade * (high - low) - base)
    detail = textures.value_noise(rng, height, width, cell=rng.uniform(4.0, 8.0), octaves=2) - 0.5
    base += np.float32(rng.uniform(40, 90)) * detail[..., None]
    patterns = [textures.rings, textures.checker, textures.stripes, textures.dots, textures.crosshatch,
                textures.spokes, textures.blotches, textures.chevrons]
    for _ in range(int(rng.poisson(0.00004 * height * width) + 2)):  # clutter with object textures
        diameter = rng.uniform(0.06, 0.25) * min(height, width)
        sprite = make_sprite(rng, blob, patterns[int(rng.integers(len(patterns)))], diameter)
        x0, y0 = int(rng.uniform(0, width - sprite.size)), int(rng.uniform(0, height - sprite.size))
        alpha = sprite.rgba[..., 3:] / 255.0
        patch = base[y0 : y0 + sprite.size, x0 : x0 + sprite.size]
        patch += alpha * (sprite.rgba[..., :3] - patch)
    return np.clip(base + 0.5, 0, 255).astype(np.uint8)


def _sample_camera(rng: np.random.Generator, config: SynthConfig) -> tuple[Camera, tuple[int, int]]:
    """A camera and the size of the world it needs: every frame's view, at the widest zoom and with
    the roll, stays on the world canvas over the whole video (no mirrored texture at its borders)."""
    unit = config.height / 256.0
    direction = rng.uniform(0, 2 * np.pi)
    velocity = rng.uniform(0.0, 2.5) * unit * np.array([np.cos(direction), np.sin(direction)])
    zoom_amp, zoom_freq, zoom_phase = (rng.uniform(0.0, 0.12), 2 * np.pi / rng.uniform(50, 200),
                                       rng.uniform(0, 2 * np.pi))
    roll_amp, roll_freq, roll_phase = (rng.uniform(0.0, 0.05), 2 * np.pi / rng.uniform(60, 200),
                                       rng.uniform(0, 2 * np.pi))
    h, w, span = config.height, config.width, max(config.num_frames - 1, 0)
    widest = np.exp(zoom_amp)  # world pixels per image pixel at the smallest zoom
    reach = 0.5 * widest * np.array([w * np.cos(roll_amp) + h * np.sin(roll_amp),
                                     h * np.cos(roll_amp) + w * np.sin(roll_amp)]) + 4  # half-extent (x, y)
    travel = np.abs(velocity) * span
    world = (int(np.ceil(2 * reach[1] + travel[1])), int(np.ceil(2 * reach[0] + travel[0])))  # (height, width)
    start = reach + np.maximum(-velocity, 0) * span  # world point at the image centre at t = 0
    camera = Camera(start, velocity, zoom_amp, zoom_freq, zoom_phase, roll_amp, roll_freq, roll_phase,
                    image_center=np.array([(w - 1) / 2.0, (h - 1) / 2.0]))
    return camera, world


def _sample_track(rng: np.random.Generator, config: SynthConfig, track_id: int) -> Track:
    h, w = config.height, config.width
    label = int(rng.integers(1, NUM_CLASSES))
    diameter = float(np.exp(rng.uniform(*np.log(config.object_size))) * h)
    mix = np.asarray(config.speed_mix, float)
    category = SPEED_CATEGORIES[int(rng.choice(3, p=mix / mix.sum()))]
    lo, hi = SPEED_RANGES[category]
    return Track(
        track_id=track_id,
        label=label,
        sprite=sample_object_sprite(rng, label, diameter),
        depth=rng.random(),
        category=category,
        t_center=rng.uniform(0, max(config.num_frames - 1, 1)),
        center=np.array([rng.uniform(*config.placement) * w, rng.uniform(*config.placement) * h]),
        speed=rng.uniform(lo, hi) * diameter,
        heading=rng.uniform(0, 2 * np.pi),
        turn=rng.normal(0, 0.01),
        angle0=rng.uniform(0, 2 * np.pi),
        spin=rng.normal(0, _SPIN[category]),
        scale_amp=rng.uniform(0, _SCALE_AMP[category]),
        scale_freq=2 * np.pi / rng.uniform(40, 150),
        scale_phase=rng.uniform(0, 2 * np.pi),
    )


def sample_appearance(rng: np.random.Generator, deg: Degradations, num_frames: int, height: int,
                      diameter: float, category: str) -> Appearance:
    """One object's appearance changes over the video. Every draw happens whatever the strengths (a strength
    only scales its result), so turning one change off leaves the others exactly as they were."""
    unit, change = height / 256.0, _CHANGE[category]
    bursts = tuple(
        Burst(start=rng.uniform(-4, num_frames), duration=rng.uniform(3, 8),
              displacement=deg.bursts * rng.uniform(0.2, 0.7) * diameter * _unit_vector(rng.uniform(0, 2 * np.pi)))
        for _ in range(rng.poisson(change * num_frames / 20.0)))
    defocus = tuple(
        DefocusEpisode(start=rng.uniform(-4, num_frames), length=rng.uniform(3, 10),
                       peak_sigma=deg.object_defocus * unit * rng.uniform(1.5, 4.0))
        for _ in range(rng.poisson(num_frames / 25.0)))
    yaw_amp = deg.pose * change * rng.uniform(0.0, np.radians(70))
    yaw_freq, yaw_phase, yaw_axis = 2 * np.pi / rng.uniform(20, 80), rng.uniform(0, 2 * np.pi), rng.uniform(0, np.pi)
    return Appearance(bursts if deg.bursts > 0 else (), defocus if deg.object_defocus > 0 else (),
                      yaw_amp, yaw_freq, yaw_phase, yaw_axis)


def _unit_vector(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


def sample_scene(config: SynthConfig, rng: np.random.Generator,
                 appearance_rng: np.random.Generator | None = None) -> Scene:
    """Draw everything one video needs from ``rng``; the per-object appearance changes come from their own
    ``appearance_rng`` (default: a generator seeded from ``rng``'s first draw after the scene), so that with
    those changes off a video is exactly what it was before they existed."""
    camera, world = _sample_camera(rng, config)
    background = make_background(rng, *world)
    lo, hi = config.objects
    count = int(round(rng.integers(lo, hi + 1) * max(1.0, config.num_frames / 60.0)))
    tracks = [_sample_track(rng, config, i) for i in range(count)]
    schedule = sample_schedule(rng, config.degradations, config.num_frames, config.height, config.width)
    if appearance_rng is None:
        appearance_rng = np.random.default_rng(int(rng.integers(2 ** 63)))
    tracks = [replace(tr, appearance=sample_appearance(appearance_rng, config.degradations, config.num_frames,
                                                       config.height, tr.sprite.size - 4, tr.category))
              for tr in tracks]
    tracks.sort(key=lambda tr: tr.depth)
    return Scene(config, background, camera, tuple(tracks), schedule)
