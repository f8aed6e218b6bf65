"""Middlebury ``.flo`` optical flow files (FlyingChairs, Sintel, ...).

Layout: the float32 magic 202021.25 (the bytes ``PIEH``), int32 width, int32 height, then
height x width x 2 float32 values (u, v interleaved, row-major), all little-endian.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from featflow.errors import FeatflowError, MissingInput
from featflow.utils.io import write_bytes

FLO_MAGIC = b"PIEH"
_MAX_SIDE = 1 << 15


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Write an (H, W, 2) flow field (dx, dy) atomically."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2), got {flow.shape}")
    h, w = flow.shape[:2]
    header = FLO_MAGIC + np.array([w, h], "<i4").tobytes()
    write_bytes(path, header + np.ascontiguousarray(flow, "<f4").tobytes())


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.flo`` file -> (H, W, 2) float32 (dx, dy)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"no such flow file: {path}")
    data = path.read_bytes()
    if len(data) < 12 or data[:4] != FLO_MAGIC:
        raise FeatflowError(f"{path} is not a .flo file (bad magic {data[:4]!r}, expected {FLO_MAGIC!r})")
    w, h = (int(v) for v in np.frombuffer(data, "<i4", 2, 4))
    if not (0 < w <= _MAX_SIDE and 0 < h <= _MAX_SIDE):
        raise FeatflowError(f"{path}: implausible flow size {w}x{h}")
    expected = 12 + h * w * 2 * 4
    if len(data) != expected:
        raise FeatflowError(f"{path}: {len(data)} bytes, expected {expected} for a {w}x{h} flow")
    return np.frombuffer(data, "<f4", h * w * 2, 12).reshape(h, w, 2).astype(np.float32)
