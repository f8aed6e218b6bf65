"""Flow accuracy: end-point error (EPE) at full resolution on held-out pairs, time per pair, and the photometric
warp error (how well the key frame warped along the flow reproduces the current frame: what can be measured on
real footage without flow ground truth)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from featflow.data.flow_pairs import SyntheticFlowPairs
from featflow.data.synthetic import SynthConfig

FlowEstimator = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FlowPair:
    current: np.ndarray  # (H, W, 3) uint8 RGB
    key: np.ndarray
    flow: np.ndarray  # (H, W, 2) current -> key, pixels
    valid: np.ndarray  # (H, W) bool: not occluded, stays in the frame


@dataclass(frozen=True)
class FlowScore:
    epe: float  # mean over all pixels
    epe_valid: float  # mean over pixels visible in both frames
    seconds_per_pair: float
    pairs: int


def end_point_error(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean Euclidean distance between (H, W, 2) flows, over ``mask`` if given."""
    if pred.shape != truth.shape:
        raise ValueError(f"predicted flow {pred.shape} and ground truth {truth.shape} differ in shape")
    err = np.linalg.norm(pred.astype(np.float64) - truth, axis=-1)
    return float(err[mask].mean() if mask is not None else err.mean())


@dataclass(frozen=True)
class DisplacementBin:
    """The error of a flow over the pixels whose true motion is ``low`` <= |motion| < ``high`` pixels."""

    low: float
    high: float
    share: float  # of the masked pixels
    epe: float
    predicted: float  # mean length of the predicted flow along the true motion's direction
    true: float  # mean length of the true motion


def error_by_displacement(pred: np.ndarray, truth: np.ndarray, edges: tuple[float, ...],
                          mask: np.ndarray | None = None) -> list[DisplacementBin]:
    """EPE of (H, W, 2) flows by the true motion's length, in the bins between consecutive ``edges`` (empty bins
    left out). ``predicted`` against ``true`` shows a flow that stops short of large motions, which a mean EPE
    hides."""
    if pred.shape != truth.shape:
        raise ValueError(f"predicted flow {pred.shape} and ground truth {truth.shape} differ in shape")
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"edges must rise, at least two of them, got {edges}")
    truth = truth.astype(np.float64)
    length = np.linalg.norm(truth, axis=-1)
    err = np.linalg.norm(pred.astype(np.float64) - truth, axis=-1)
    along = (pred * truth).sum(-1) / np.maximum(length, 1e-9)  # the prediction projected on the true direction
    keep = np.ones(length.shape, bool) if mask is None else mask
    bins = []
    for low, high in zip(edges, edges[1:]):
        m = keep & (length >= low) & (length < high)
        if m.any():
            bins.append(DisplacementBin(float(low), float(high), float(m.sum() / keep.sum()), float(err[m].mean()),
                                        float(along[m].mean()), float(length[m].mean())))
    return bins


def held_out_pairs(config: SynthConfig, count: int, seed: int = 0, split: str = "test",
                   max_gap: int = 9) -> list[FlowPair]:
    """``count`` synthetic pairs (one per video) of a split the flow networks never train on."""
    dataset = SyntheticFlowPairs(config, count, seed=seed, split=split, max_gap=max_gap, pairs_per_video=1)
    pairs = []
    for i in range(count):
        sample = dataset[i]
        pairs.append(FlowPair(
            current=sample["current"].permute(1, 2, 0).numpy().astype(np.uint8),
            key=sample["key"].permute(1, 2, 0).numpy().astype(np.uint8),
            flow=sample["flow"].permute(1, 2, 0).numpy(),
            valid=sample["valid"].numpy(),
        ))
    return pairs


def evaluate_flow(estimator: FlowEstimator, pairs: list[FlowPair], desc: str | None = None,
                  progress: bool = False) -> FlowScore:
    """EPE of ``estimator`` on ``pairs`` (averaged per pair) and its mean wall time per pair.

    The first pair is run once more before timing, so one-off start-up costs do not count.
    """
    if not pairs:
        raise ValueError("no pairs to evaluate on")
    estimator(pairs[0].current, pairs[0].key)  # warm-up
    epe, epe_valid, seconds = [], [], 0.0
    for pair in tqdm(pairs, desc=desc, disable=not progress, leave=False):
        start = time.perf_counter()
        pred = estimator(pair.current, pair.key)
        seconds += time.perf_counter() - start
        epe.append(end_point_error(pred, pair.flow))
        epe_valid.append(end_point_error(pred, pair.flow, pair.valid))
    return FlowScore(float(np.mean(epe)), float(np.mean(epe_valid)), seconds / len(pairs), len(pairs))


def photometric_error(current: np.ndarray, key: np.ndarray, flow: np.ndarray) -> float:
    """Mean absolute colour difference (gray levels, over channels) between ``current`` and ``key`` sampled
    bilinearly at p + ``flow``, over the pixels whose target lies inside the key frame. Zero flow gives the plain
    frame difference."""
    h, w = current.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = xs + flow[..., 0].astype(np.float32), ys + flow[..., 1].astype(np.float32)
    warped = cv2.remap(key, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    difference = np.abs(current.astype(np.float32) - warped.astype(np.float32)).mean(-1)
    return float(difference[inside].mean()) if inside.any() else float("nan")
