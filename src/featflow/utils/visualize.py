"""Pictures people would rather look at than read: colour-coded flow fields."""

from __future__ import annotations

import cv2
import numpy as np


def flow_to_color(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """(H, W, 2) flow -> (H, W, 3) uint8 RGB: hue = direction, saturation = speed (white = still).

    ``max_magnitude`` sets the speed of full saturation (default: the 99th percentile of the field).
    """
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2), got {flow.shape}")
    dx, dy = flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32)
    magnitude, angle = cv2.cartToPolar(dx, dy, angleInDegrees=True)
    scale = max_magnitude if max_magnitude is not None else float(np.percentile(magnitude, 99))
    hsv = np.empty((*flow.shape[:2], 3), np.uint8)
    hsv[..., 0] = (angle / 2).astype(np.uint8)  # OpenCV hue is 0..179
    hsv[..., 1] = np.clip(255 * magnitude / max(scale, 1e-6), 0, 255).astype(np.uint8)
    hsv[..., 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
