"""Pictures people would rather look at than read: colour-coded flow fields, label overlays, boxes."""

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


def colorize_labels(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours from a (K, 3) palette (ids beyond it are black)."""
    table = np.zeros((256, 3), np.uint8)
    table[: len(palette)] = palette
    return table[labels]


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.55,
            background: int | None = None) -> np.ndarray:
    """Blend the colour-coded labels over an RGB image; pixels of class ``background`` (if given) stay as they are."""
    colors = colorize_labels(labels, palette).astype(np.float32)
    out = np.clip(image.astype(np.float32) * (1 - alpha) + colors * alpha, 0, 255).astype(np.uint8)
    if background is not None:
        keep = labels == background
        out[keep] = image[keep]
    return out


def segmentation_palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8: a fixed colour per class id, class 0 (the background) black (it is left unpainted)."""
    return class_palette(max(num_classes - 1, 0))


def legend(image: np.ndarray, names: list[str], palette: np.ndarray, skip: tuple[int, ...] = (0,)) -> np.ndarray:
    """A small key in the top-right corner: a swatch of ``palette[k]`` and ``names[k]`` for each class k not in
    ``skip`` (the background). It takes at most half the frame's width and height: as many rows as fit, none on a
    frame too small for one."""
    out = image.copy()
    h, w = image.shape[:2]
    font = max(0.3, h / 900)
    entries = [(k, name) for k, name in enumerate(names) if k not in skip and k < len(palette)]
    if not entries:
        return out
    sizes = [cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, font, 1) for _, name in entries]
    row = max(th + base for (_, th), base in sizes) + 4
    swatch = row - 4
    width = swatch + 8 + max(tw for (tw, _), _ in sizes) + 4
    rows = min(len(entries), (h // 2) // row)
    if rows == 0 or width > w // 2:
        return out
    x0 = w - width
    cv2.rectangle(out, (x0, 0), (w - 1, rows * row + 1), (0, 0, 0), -1)
    for r, ((k, name), ((_, th), base)) in enumerate(zip(entries[:rows], sizes)):
        top = r * row + 2
        color = tuple(int(c) for c in palette[k])
        cv2.rectangle(out, (x0 + 2, top), (x0 + 1 + swatch, top + swatch - 1), color, -1)
        cv2.putText(out, name, (x0 + swatch + 6, top + th), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


def caption(image: np.ndarray, text: str, color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Write ``text`` in the top-left corner on a dark band."""
    out = image.copy()
    scale = max(0.35, image.shape[0] / 600)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(out, (0, 0), (w + 6, h + base + 6), (0, 0, 0), -1)
    cv2.putText(out, text, (3, h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    return out


def side_by_side(panels: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Panels of equal height next to each other, separated by ``gap`` black columns."""
    height = panels[0].shape[0]
    if any(p.shape[0] != height for p in panels):
        raise ValueError("panels must have the same height")
    spacer = np.zeros((height, gap, 3), np.uint8)
    parts = [panels[0]]
    for panel in panels[1:]:
        parts += [spacer, panel]
    return np.concatenate(parts, axis=1)


def draw_boxes(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray, names: list[str],
               palette: np.ndarray, min_score: float = 0.3, scale: float = 1.0) -> np.ndarray:
    """Boxes (n, 4) in image pixels (inclusive x2, y2) with 'class score' tags, those scoring >= ``min_score``;
    ``scale`` maps box coordinates onto ``image`` when it was resized. Labels are 1-based into ``names``."""
    out = image.copy()
    font = max(0.3, image.shape[0] / 900)
    for box, label, score in sorted(zip(boxes, labels, scores), key=lambda d: d[2]):  # best drawn last, on top
        if score < min_score:
            continue
        x1, y1, x2, y2 = (int(round(v * scale)) for v in box)
        color = tuple(int(c) for c in palette[int(label) % len(palette)])
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        text = f"{names[int(label) - 1]} {score:.2f}"
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
        top = max(y1 - h - base - 2, 0)
        cv2.rectangle(out, (x1, top), (x1 + w + 4, top + h + base + 2), color, -1)
        cv2.putText(out, text, (x1 + 2, top + h + 1), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def class_palette(num_classes: int) -> np.ndarray:
    """(num_classes + 1, 3) uint8 distinct colours (index 0: black, the background), evenly spaced hues."""
    hsv = np.zeros((num_classes + 1, 1, 3), np.uint8)
    hsv[1:, 0, 0] = (np.arange(num_classes) * 180 * 0.618034).astype(np.int64) % 180  # golden-ratio hue steps
    hsv[1:, 0, 1], hsv[1:, 0, 2] = 200, 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[:, 0]
