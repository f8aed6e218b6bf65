"""Does the synthetic benchmark leave room? A difficulty probe: a per-frame segmentation model trained
for a fixed wall-clock budget on the CPU (``featflow train seg --config frame_r18``: 20 minutes),
evaluated on held-out videos rendered with and without degradations (same scenes, same labels), and
per motion-IoU speed category.

Per category, pixels of objects in other categories are ignored (FGFA's rule for its slow / medium /
fast mAP), so each number says how well objects moving at that speed are segmented.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from featflow.analysis.reports import machine_description, write_report
from featflow.data.synthetic import CLASS_NAMES, NUM_CLASSES, Degradations, SynthConfig, SyntheticVideo
from featflow.engine.checkpoint import load_segmenter
from featflow.errors import FeatflowError
from featflow.evaluation.motion_iou import motion_category, motion_iou
from featflow.evaluation.segmentation import IGNORE, ConfusionMatrix
from featflow.methods.segmentation import VideoSegmenter

CATEGORIES = ("slow", "medium", "fast")


def load_probe(weights: str | os.PathLike) -> tuple[VideoSegmenter, dict]:
    """A trained per-frame segmenter and how it was trained (its run's metrics.json, when beside it)."""
    model, metadata = load_segmenter(weights)
    if model.flow_net is not None or model.num_classes != NUM_CLASSES:
        raise FeatflowError(f"{weights}: the probe must be a per-frame segmenter of the {NUM_CLASSES} "
                            "synthetic classes")
    config = json.loads(metadata.get("config", "{}"))
    training = {"iterations": int(metadata.get("iterations", 0)), "minutes": None,
                "size": config.get("data", {}).get("size", [128, 256]),
                "batch_size": config.get("train", {}).get("batch_size"),
                "degradations": config.get("data", {}).get("degradations", "default")}
    metrics = Path(weights).with_name("metrics.json")
    if metrics.is_file():
        training["minutes"] = json.loads(metrics.read_text())["wall_seconds"] / 60
    return model.eval(), training


def _categories(video: SyntheticVideo) -> dict[tuple[int, int], str]:
    frames, tracks, boxes = [], [], []
    for t in range(len(video)):
        ann = video.annotation(t)
        frames += [t] * len(ann.boxes)
        tracks += [int(k) for k in ann.track_ids]
        boxes += list(ann.vid_boxes)
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


def run_difficulty_probe(weights: str | os.PathLike, report: str | os.PathLike = "reports", videos: int = 20,
                         seed: int = 0, command: str = "featflow bench difficulty",
                         progress: bool = True) -> list[Path]:
    """Evaluate the per-frame model ``weights`` and write difficulty.md / difficulty.json."""
    model, training = load_probe(weights)
    size = (int(training["size"][0]), int(training["size"][1]))
    scores = evaluate_probe(model, size, videos, seed=seed, progress=progress)
    minutes = "?" if training["minutes"] is None else f"{training['minutes']:.1f}"
    lines = [
        "# Synthetic benchmark: does it leave room?",
        "",
        f"A per-frame segmentation model ({model.arch} N_feat, random init, {model.channels} feature channels, "
        f"1x1 head) trained from scratch for {minutes} minutes on this CPU ({training['iterations']} iterations of "
        f"{training['batch_size']} frames at {size[0]}x{size[1]}, degradations: {training['degradations']}), then "
        f"evaluated on {videos} "
        "held-out videos (every 3rd frame), each rendered twice: with the default degradations and without any "
        "(the same scenes and labels).",
        "",
        f"Weights: `{weights}` (the default is the run of `featflow train seg --config frame_r18`).",
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
    data = {"weights": str(weights), "training": training, "videos": videos, "seed": seed, "scores": scores,
            "machine": machine_description()}
    return write_report(report, "difficulty", "\n".join(lines), data, command)
