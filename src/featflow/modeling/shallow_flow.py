"""Off-the-shelf optical flow (OpenCV): the "shallow flow" of the SFF baselines and the yardstick
for the flow networks.

Each estimator maps (current, key) RGB uint8 images to the (H, W, 2) float32 displacement of each
current-frame pixel to the key frame, the direction DFF warps with: current(y, x) ~ key(y + dy, x + dx).
"""

from __future__ import annotations

import cv2
import numpy as np

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _check_pair(current: np.ndarray, key: np.ndarray) -> None:
    if current.shape != key.shape:
        raise ValueError(f"current {current.shape} and key {key.shape} differ in size")


class DISFlow:
    """OpenCV's DIS optical flow (Kroeger et al. 2016) with one of its presets."""

    def __init__(self, preset: str = "medium") -> None:
        if preset not in DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; choose one of {', '.join(DIS_PRESETS)}")
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])

    def __call__(self, current: np.ndarray, key: np.ndarray) -> np.ndarray:
        _check_pair(current, key)
        return self._dis.calc(_gray(current), _gray(key), None)


class FarnebackFlow:
    """OpenCV's Farneback dense flow (pyramid 0.5, 3 levels, window 15)."""

    def __call__(self, current: np.ndarray, key: np.ndarray) -> np.ndarray:
        _check_pair(current, key)
        return cv2.calcOpticalFlowFarneback(_gray(current), _gray(key), None, 0.5, 3, 15, 3, 5, 1.2, 0)


def zero_flow(current: np.ndarray, key: np.ndarray) -> np.ndarray:
    """No motion at all: the floor any estimator must beat."""
    _check_pair(current, key)
    return np.zeros((*current.shape[:2], 2), np.float32)
