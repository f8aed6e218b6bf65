"""Does the synthetic benchmark leave room? A difficulty probe: a per-frame segmentation model trained
for a fixed wall-clock budget on the CPU, evaluated on held-out videos rendered with and without
degradations (same scenes, same labels), and per motion-IoU speed category.

Per category, pixels of objects in other categories are ignored (FGFA's rule for its slow / medium /
fast mAP), so each number says how well objects moving at that speed are segmented.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from featflow.analysis.reports import machine_description, write_report
from featflow.data.synthetic import CLASS_NAMES, NUM_CLASSES, Degradations, SynthConfig, SyntheticVideo
from featflow.data.segmentation_pairs import SyntheticSegmentationPairs
from featflow.evaluation.motion_iou import motion_category, motion_iou
from featflow.evaluation.segmentation import IGNORE, ConfusionMatrix
from featflow.methods.segmentation import VideoSegmenter

CATEGORIES = ("slow", "medium", "fast")


def train_probe(minutes: float, size: tuple[int, int], batch_size: int = 8, seed: int = 0, lr: float = 1e-3,
                arch: str = "resnet18", channels: int = 128, progress: bool = True) -> tuple[VideoSegmenter, int]:
    """Train a per-frame segmenter from scratch on generated frames for ``minutes`` of wall time."""
    torch.manual_seed(seed)
    model = VideoSegmenter(NUM_CLASSES, arch, channels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    dataset = SyntheticSegmentationPairs(SynthConfig(size[0], size[1], 30), length=10**7, seed=seed)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=1, shuffle=False)
    budget = 60.0 * minutes
    start = time.monotonic()
    iterations = 0
    model.train()
    with tqdm(total=int(budget), desc="difficulty probe (s)", disable=not progress) as bar:
        for batch in loader:
            elapsed = time.monotonic() - start
            if elapsed >= budget:
                break
            for group in optimizer.param_groups:  # cosine decay over the time budget
                group["lr"] = lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * elapsed / budget)))
            loss = F.cross_entropy(model(batch["current"]), batch["label"], ignore_index=IGNORE)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            iterations += 1
            bar.n = min(int(time.monotonic() - start), int(budget))
            bar.set_postfix(loss=f"{loss.item():.3f}", it=iterations)
    return model.eval(), iterations


def _categories(video: SyntheticVideo) -> dict[tuple[int, int], str]:
    frames, tracks, boxes = [], [], []
    for t in range(len(video)):
        ann = video.annotation(t)
        frames += [t] * len(ann.boxes)
        tracks += [int(k) for k in ann.track_ids]
        boxes += list(ann.boxes)
    cats = motion_category(motion_iou(np.array(frames), np.array(tracks), np.array(boxes)))
    return {(f, k): str(c) for f, k, c in zip(frames, tracks, cats)}


@torch.no_grad()
def evaluate_probe(model: VideoSegmenter, size: tuple[int, int], videos: int, seed: int = 0, stride: int = 3,
                   progress: bool = True) -> dict:
    """mIoU on held-out frames, degraded and clean, overall and per motion category."""
    matrices = {(cond, cat): ConfusionMatrix(NUM_CLASSES) for cond in ("degraded", "clean")
                for cat in ("all",) + CATEGORIES}
    base = SynthConfig(size[0], size[1], 30)
    for index in tqdm(range(videos), desc="evaluate", disable=not progress, leave=False):
        degraded = SyntheticVideo(base, seed, index, "test", cache_size=32)
        clean = SyntheticVideo(replace(base, degradations=Degradations.off()), seed, index, "test", cache_size=1)
        categories = _categories(degraded)
        for t in range(0, len(degraded), stride):
            ann = degraded.annotation(t)
            per_pixel = np.full(ann.instance.shape, "", dtype=object)
            for track in ann.track_ids:
                per_pixel[ann.instance == track + 1] = categories[(t, int(track))]
            for cond, video in (("degraded", degraded), ("clean", clean)):
                image = torch.from_numpy(video.frame(t)).permute(2, 0, 1).float().unsqueeze(0)
                pred = model(image).argmax(1)[0].numpy()
                matrices[(cond, "all")].update(pred, ann.semantic)
                for cat in CATEGORIES:  # objects of other speeds are ignored
                    truth = ann.semantic.copy()
                    truth[(ann.instance > 0) & (per_pixel != cat)] = IGNORE
                    matrices[(cond, cat)].update(pred, truth)
    return {cond: {cat: {"miou": matrices[(cond, cat)].miou(),
                         "iou": dict(zip(CLASS_NAMES, np.nan_to_num(matrices[(cond, cat)].iou(), nan=-1).tolist()))}
                   for cat in ("all",) + CATEGORIES} for cond in ("degraded", "clean")}


def run_difficulty_probe(report: str | os.PathLike = "reports", minutes: float = 20.0, size: tuple[int, int] = (128, 256),
                         videos: int = 20, seed: int = 0, command: str = "featflow bench difficulty",
                         progress: bool = True) -> list[Path]:
    model, iterations = train_probe(minutes, size, seed=seed, progress=progress)
    scores = evaluate_probe(model, size, videos, seed=seed, progress=progress)
    lines = [
        "# Synthetic benchmark: does it leave room?",
        "",
        f"A per-frame segmentation model (ResNet-18 N_feat, random init, 128 feature channels, 1x1 head) trained "
        f"from scratch for {minutes:g} minutes on this CPU ({iterations} iterations of 8 frames at "
        f"{size[0]}x{size[1]}, default degradations), then evaluated on {videos} held-out videos (every 3rd frame), "
        "each rendered twice: with the default degradations and without any (the same scenes and labels).",
        "",
        "| mIoU (%) | all pixels | slow objects | medium objects | fast objects |",
        "|---|---|---|---|---|",
    ]
    for cond in ("degraded", "clean"):
        lines.append(f"| {cond} | " + " | ".join(f"{100 * scores[cond][cat]['miou']:.1f}"
                                                for cat in ("all",) + CATEGORIES) + " |")
    lines += ["", "Per class IoU (%), degraded frames:", "",
              "| " + " | ".join(CLASS_NAMES) + " |", "|" + "---|" * len(CLASS_NAMES),
              "| " + " | ".join(f"{100 * scores['degraded']['all']['iou'][n]:.1f}" for n in CLASS_NAMES) + " |",
              "", "Per category, pixels of objects in the other categories are ignored (FGFA's rule), so a column "
              "says how well objects moving at that speed are recognised."]
    data = {"minutes": minutes, "iterations": iterations, "size": list(size), "videos": videos, "seed": seed,
            "scores": scores, "machine": machine_description()}
    return write_report(report, "difficulty", "\n".join(lines), data, command)
