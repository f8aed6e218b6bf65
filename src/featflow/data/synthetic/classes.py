"""The object classes of the synthetic videos: each is a shape family and a texture family.

Colours are drawn at random for every object, so a class is told apart by its shape and texture,
never by colour; shape and texture parameters vary within each class. Background clutter (static
blobs in the background) uses the same textures with other shapes, so texture alone is not enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from featflow.data.synthetic import textures
from featflow.data.synthetic.textures import Pattern

Shape = Callable[[np.random.Generator, np.ndarray, np.ndarray], np.ndarray]


def polygon_mask(vertices: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of every (x, y) against (K, 2) vertices."""
    inside = np.zeros(x.shape, bool)
    xj, yj = vertices[-1]
    for xi, yi in vertices:
        if yi != yj:
            crosses = ((yi > y) != (yj > y)) & (x < (xj - xi) * (y - yi) / (yj - yi) + xi)
            inside ^= crosses
        xj, yj = xi, yi
    return inside


def disc(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    aspect = rng.uniform(0.65, 1.0)
    return (x / 0.95) ** 2 + (y / (0.95 * aspect)) ** 2 <= 1.0


def box(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    half_w, half_h = 0.9, 0.9 * rng.uniform(0.55, 1.0)
    corner = rng.uniform(0.0, 0.3) * half_h
    qx, qy = np.abs(x) - half_w + corner, np.abs(y) - half_h + corner
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
    return outside <= corner


def triangle(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    angles = np.pi / 2 + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.2, 0.2, 3)
    radii = 0.95 - rng.uniform(0.0, 0.1, 3)
    return polygon_mask(np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1), x, y)


def star(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    points = int(rng.integers(5, 8))
    inner = rng.uniform(0.38, 0.55)
    angles = np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 0.95, 0.95 * inner)
    return polygon_mask(np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1), x, y)


def cross(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    arm = rng.uniform(0.2, 0.36)
    long_x, long_y = rng.uniform(0.8, 0.95), rng.uniform(0.8, 0.95)
    return ((np.abs(x) <= arm) & (np.abs(y) <= long_y)) | ((np.abs(y) <= arm) & (np.abs(x) <= long_x))


def ring(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    aspect = rng.uniform(0.8, 1.0)
    r2 = (x / 0.95) ** 2 + (y / (0.95 * aspect)) ** 2
    return (r2 <= 1.0) & (r2 >= rng.uniform(0.4, 0.62) ** 2)


def crescent(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    bite = 0.95 * rng.uniform(0.7, 0.9)
    offset = rng.uniform(0.3, 0.55)
    direction = rng.uniform(0, 2 * np.pi)
    cx, cy = offset * np.cos(direction), offset * np.sin(direction)
    return (np.hypot(x, y) <= 0.95) & (np.hypot(x - cx, y - cy) > bite)


def arrow(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    shaft, head, head_len = rng.uniform(0.15, 0.28), rng.uniform(0.5, 0.8), rng.uniform(0.4, 0.6)
    neck = 0.95 - head_len
    vertices = np.array(
        [(-0.95, -shaft), (neck, -shaft), (neck, -head), (0.95, 0.0), (neck, head), (neck, shaft), (-0.95, shaft)]
    )
    return polygon_mask(vertices, x, y)


def blob(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A random smooth blob (background clutter, not an object class)."""
    harmonics = rng.normal(0, 0.2, (4, 2)) / np.arange(1, 5)[:, None]
    phi = np.arctan2(y, x)
    radius = 0.7 + sum(a * np.cos((k + 1) * phi) + b * np.sin((k + 1) * phi) for k, (a, b) in enumerate(harmonics))
    return np.hypot(x, y) <= np.clip(radius, 0.3, 0.95)


@dataclass(frozen=True)
class ObjectClass:
    name: str
    shape: Shape
    pattern: Pattern


#: The object classes; their label is their index + 1 (0 is the background).
OBJECT_CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("disc", disc, textures.rings),
    ObjectClass("box", box, textures.checker),
    ObjectClass("triangle", triangle, textures.stripes),
    ObjectClass("star", star, textures.dots),
    ObjectClass("cross", cross, textures.crosshatch),
    ObjectClass("ring", ring, textures.spokes),
    ObjectClass("crescent", crescent, textures.blotches),
    ObjectClass("arrow", arrow, textures.chevrons),
)

#: Semantic labels: 0 = background, k = OBJECT_CLASSES[k - 1].
CLASS_NAMES: tuple[str, ...] = ("background",) + tuple(c.name for c in OBJECT_CLASSES)
NUM_CLASSES = len(CLASS_NAMES)


@dataclass(frozen=True)
class Sprite:
    """An object's appearance in its own frame: RGB texture over the whole canvas and a 0/255 alpha."""

    rgba: np.ndarray  # (S, S, 4) uint8
    area: float  # pixels inside the shape at scale 1

    @property
    def size(self) -> int:
        return self.rgba.shape[0]


def _canvas(diameter: float) -> tuple[int, np.ndarray, np.ndarray]:
    side = int(np.ceil(diameter)) + 4
    center = (side - 1) / 2.0
    v, u = np.mgrid[0:side, 0:side].astype(np.float32) - center
    return side, u, v


def make_sprite(rng: np.random.Generator, shape: Shape, pattern: Pattern, diameter: float) -> Sprite:
    """Render one object (or clutter blob) of ``diameter`` pixels with random parameters."""
    side, u, v = _canvas(diameter)
    radius = diameter / 2.0
    mask = shape(rng, u / radius, v / radius)
    rgb = textures.colorize(rng, pattern(rng, u, v, diameter))
    rgba = np.empty((side, side, 4), np.uint8)
    rgba[..., :3] = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    rgba[..., 3] = np.where(mask, 255, 0).astype(np.uint8)
    return Sprite(rgba, float(mask.sum()))


def sample_object_sprite(rng: np.random.Generator, label: int, diameter: float) -> Sprite:
    """A sprite of object class ``label`` (1..8)."""
    cls = OBJECT_CLASSES[label - 1]
    return make_sprite(rng, cls.shape, cls.pattern, diameter)
