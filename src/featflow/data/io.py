"""Reading and writing images (RGB uint8 arrays) with clear errors and atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from featflow.errors import FeatflowError, MissingInput
from featflow.utils.io import atomic_path

_JPEG_QUALITY = 95


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB."""
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"no such image: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FeatflowError(f"cannot decode {path} as an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label_image(path: str | os.PathLike) -> np.ndarray:
    """A single-channel label PNG (8 or 16 bit) -> (H, W) array, values unchanged."""
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"no such label image: {path}")
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None or label.ndim != 2:
        raise FeatflowError(f"{path} is not a single-channel label image")
    return label


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an (H, W, 3) RGB uint8 image, or an (H, W) uint8/uint16 label map, atomically.

    The format follows the suffix (.png, .jpg/.JPEG, .ppm); JPEGs use quality 95.
    """
    if image.ndim == 3:
        if image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected an (H, W) uint8/uint16 label map, got {image.shape} {image.dtype}")
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY] if Path(path).suffix.lower() in (".jpg", ".jpeg") else []
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image, params):
            raise OSError(f"could not write {path}")
