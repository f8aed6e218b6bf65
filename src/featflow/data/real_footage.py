"""Real two-view footage with known motion, for evaluating flow only (never for training).

No real video with flow ground truth can be downloaded here; the one real pair this machine has is the rectified
stereo pair "motorcycle" of the Middlebury 2014 benchmark (Scharstein et al.), which scikit-image ships, down-sampled
4x, with its ground-truth disparity. A stereo pair is two real photographs of one scene from two camera positions:
every point moves along its scanline by its disparity (10 to 60 pixels here), with real occlusions, sensor noise and
lighting, which is what synthetic pairs lack. It is read from the installed scikit-image and not redistributed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from featflow.errors import FeatflowError


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
