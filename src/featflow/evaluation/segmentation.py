"""Semantic segmentation metrics: a confusion matrix over the evaluated classes and mean IoU.

IoU of a class = TP / (TP + FP + FN); pixels labelled 255 are ignored; the mean runs over the classes
present (in the ground truth or the predictions), as Cityscapes' evaluation does.
"""

from __future__ import annotations

import numpy as np

IGNORE = 255


class ConfusionMatrix:
    """Accumulates (ground truth, prediction) pixel counts for ``num_classes`` classes."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), np.int64)  # [truth, prediction]

    def update(self, prediction: np.ndarray, truth: np.ndarray) -> None:
        """Add one or more label maps (any matching shapes) of train ids; 255 in ``truth`` is ignored."""
        prediction, truth = np.asarray(prediction), np.asarray(truth)
        if prediction.shape != truth.shape:
            raise ValueError(f"prediction {prediction.shape} and ground truth {truth.shape} differ in shape")
        keep = truth != IGNORE
        t, p = truth[keep].astype(np.int64), prediction[keep].astype(np.int64)
        if t.size and (t.max() >= self.num_classes or p.min() < 0 or p.max() >= self.num_classes):
            raise ValueError(f"labels must be in 0..{self.num_classes - 1} (or 255 in the ground truth)")
        self.matrix += np.bincount(t * self.num_classes + p, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes)

    def iou(self) -> np.ndarray:
        """(num_classes,) IoU per class; NaN for classes absent from both truth and predictions."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")
