"""Procedural textures for the synthetic videos.

Patterns are functions of local pixel coordinates (u, v) returning values in [0, 1]; ``colorize``
maps a pattern between two colours with a lighting gradient. Each object class owns one pattern
family (its texture), with random parameters per object; the background draws on all of them.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

Pattern = Callable[[np.random.Generator, np.ndarray, np.ndarray, float], np.ndarray]


def _smooth_square(x: np.ndarray, sharpness: float = 4.0) -> np.ndarray:
    """A square wave in [0, 1] with soft edges from a sine (keeps textures free of aliasing)."""
    return 0.5 + 0.5 * np.tanh(sharpness * np.sin(x)) / np.tanh(sharpness)


def _rotated(u: np.ndarray, v: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    return c * u + s * v, -s * u + c * v


def value_noise(rng: np.random.Generator, height: int, width: int, cell: float, octaves: int = 1) -> np.ndarray:
    """Smooth random field in [0, 1]: random grids of ``cell``-pixel spacing, cubic-upsampled and summed."""
    out = np.zeros((height, width), np.float32)
    total = 0.0
    for k in range(octaves):
        c = max(cell / 2**k, 2.0)
        gh, gw = int(np.ceil(height / c)) + 3, int(np.ceil(width / c)) + 3
        grid = rng.random((gh, gw), dtype=np.float32)
        big = cv2.resize(grid, (int(gw * c), int(gh * c)), interpolation=cv2.INTER_CUBIC)
        oy, ox = int(rng.integers(0, max(1, big.shape[0] - height))), int(rng.integers(0, max(1, big.shape[1] - width)))
        weight = 0.5**k
        out += weight * big[oy : oy + height, ox : ox + width]
        total += weight
    return np.clip(out / total, 0.0, 1.0)


# Pattern families: (rng, u, v, size) -> (h, w) float32 in [0, 1]; size = object diameter in pixels.


def rings(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, size: float) -> np.ndarray:
    period = max(5.0, size * rng.uniform(0.12, 0.22))
    return _smooth_square(2 * np.pi * np.hypot(u, v) / period + rng.uniform(0, 2 * np.pi))


def checker(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, size: float) -> np.ndarray:
    cell = max(5.0, size * rng.uniform(0.14, 0.26))
    a, b = _rotated(u, v, rng.uniform(0, np.pi))
    return 0.5 + 0.5 * np.tanh(3 * np.sin(np.pi * a / cell) * np.sin(np.pi * b / cell) * 2)


def stripes(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, size: float) -> np.ndarray:
    period = max(5.0, size * rng.uniform(0.1, 0.2))
    a, _ = _rotated(u, v, rng.uniform(0, np.pi))
    return _smooth_square(2 * np.pi * a / period, sharpness=rng.uniform(2, 6))


def dots(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, size: float) -> np.ndarray:
    spacing = max(6.0, size * rng.uniform(0.16, 0.26))
    a, b = _rotated(u, v, rng.uniform(0, np.pi / 2))
    da = (a / spacing) % 1.0 - 0.5
    db = (b / spacing) % 1.0 - 0.5
    radius = rng.uniform(0.22, 0.36)
    return 0.5 - 0.5 * np.tanh((np.hypot(da, db) - radius) * spacing / 1.2)


def crosshatch(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, size: float) -> np.ndarray:
    spacing = max(6.0, size * rng.uniform(0.15, 0.25))
    a, b = _rotated(u, v, rng.uniform(0, np.pi / 2))
    width = rng.uniform(0.12, 0.22)
    line_a = np.abs((a / spacing) % 1.0 - 0.5)
    line_b = np.abs((b / spacing) % 1.0 - 0.5)
    d = np.minimum(0.5 - line_a, 0.5 - line_b)
    return 0.5 - 0.5 * np.tanh((d - width / 2) * spacing / 1.2)


def spokes(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, size: float) -> np.ndarray:
    count = int(rng.integers(6, 13))
    return _smooth_square(count * np.arctan2(v, u) + rng.uniform(0, 2 * np.pi))


def blotches(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, size: float) -> np.ndarray:
    h, w = u.shape
    field = value_noise(rng, h, w, cell=max(4.0, size * rng.uniform(0.12, 0.2)), octaves=2)
    return 0.5 + 0.5 * np.tanh((field - 0.5) * 12)


def chevrons(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, size: float) -> np.ndarray:
    period = max(6.0, size * rng.uniform(0.14, 0.24))
    a, b = _rotated(u, v, rng.uniform(0, 2 * np.pi))
    zig = np.abs((b / period) % 1.0 - 0.5) * period
    return _smooth_square(2 * np.pi * (a + zig) / period)


def random_color(rng: np.random.Generator) -> np.ndarray:
    """An RGB colour (0..255) with random hue, saturation and value."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(60, 255), rng.uniform(70, 255)]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def colorize(rng: np.random.Generator, pattern: np.ndarray, contrast: float = 1.0) -> np.ndarray:
    """Pattern (h, w) in [0, 1] -> (h, w, 3) float32 RGB between two random colours, with a lighting ramp."""
    c1, c2 = random_color(rng), random_color(rng)
    if np.abs(c1 - c2).sum() < 120:  # keep the texture visible
        c2 = 255.0 - c1
    c2 = c1 + np.float32(contrast) * (c2 - c1)
    h, w = pattern.shape
    angle = rng.uniform(0, 2 * np.pi)
    ramp_x = (np.cos(angle) * (np.arange(w, dtype=np.float32) / max(w, 1) - 0.5)).astype(np.float32)
    ramp_y = (np.sin(angle) * (np.arange(h, dtype=np.float32) / max(h, 1) - 0.5)).astype(np.float32)
    light = 1.0 + np.float32(rng.uniform(0.1, 0.3)) * (ramp_y[:, None] + ramp_x[None, :])  # (h, w)
    rgb = c1 + pattern[..., None] * (c2 - c1)
    rgb *= light[..., None]
    return np.clip(rgb, 0, 255, out=rgb)
