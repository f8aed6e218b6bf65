"""The synthetic benchmark's own report (``reports/synth.md``): generator speed on one core, what the
videos contain (classes, motion-IoU speed categories, box sizes in feature cells, visibility, how often and how
strongly each deterioration hits), and pictures of a few frames with their ground truth."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from featflow.analysis.reports import machine_description, save_figure, write_report  # noqa: E402
from featflow.data.synthetic import CLASS_NAMES, Degradations, SynthConfig, SyntheticVideo  # noqa: E402
from featflow.evaluation.motion_iou import motion_category, motion_iou  # noqa: E402
from featflow.utils.visualize import flow_to_color  # noqa: E402


def measure_speed(config: SynthConfig, videos: int, seed: int = 0) -> dict[str, float]:
    """Frames per second of ``SyntheticVideo`` on one core: rendering alone, and with each video's setup."""
    setup = render = 0.0
    frames = 0
    for index in range(videos):
        start = time.perf_counter()
        video = SyntheticVideo(config, seed, index, "test", cache_size=1)
        mid = time.perf_counter()
        for t in range(len(video)):
            video.render(t)
        end = time.perf_counter()
        setup += mid - start
        render += end - mid
        frames += len(video)
    return {"frames": frames, "render_fps": frames / render, "fps_with_setup": frames / (render + setup),
            "setup_ms_per_video": 1000 * setup / videos}


#: Per-box deterioration thresholds (``FrameAnnotation.deterioration``): (hit, strong). A box is *hit* when it
#: passes the first and *strongly deteriorated* when it passes the second (half a stride-16 cell of smear,
#: 2 px of blur sigma, a turn of 53 degrees, half the object hidden).
DETERIORATION_LEVELS: dict[str, tuple[float, float]] = {
    "smear": (2.0, 8.0), "defocus": (1.0, 2.0), "foreshortening": (0.9, 0.6), "hidden": (0.1, 0.5)}
NEIGHBOUR_WINDOW = 9  # frames either side: FGFA's training range
CELL_BINS = np.arange(0, 14.5, 0.5)  # bin edges of the box-size histogram, in feature cells


def passes_level(name: str, values: np.ndarray, level: float) -> np.ndarray:
    """Whether values pass a deterioration level (foreshortening deteriorates downwards)."""
    return values <= level if name == "foreshortening" else values >= level


def content_statistics(config: SynthConfig, videos: int, seed: int = 0, progress: bool = True,
                       stride: int = 16) -> dict:
    """What the videos of ``config`` hold, box by box: class and motion-IoU category shares, box size in
    stride-``stride`` feature cells, visibility, how often and how strongly each deterioration hits, and how
    often a strongly deteriorated object is seen without strong deterioration within +-9 frames."""
    labels: Counter[str] = Counter()
    categories, short, visible, objects_per_frame = [], [], [], []
    measures: dict[str, list] = {name: [] for name in DETERIORATION_LEVELS}
    strong_any, better_near = [], []
    for index in tqdm(range(videos), desc="content", disable=not progress, leave=False):
        video = SyntheticVideo(config, seed, index, "test", cache_size=1)
        frames, tracks, boxes, strong = [], [], [], []
        for t in range(len(video)):
            ann = video.annotation(t)
            labels.update(CLASS_NAMES[int(k)] for k in ann.labels)
            frames += [t] * len(ann.boxes)
            tracks += list(ann.track_ids)
            boxes += list(ann.vid_boxes)
            visible += list(ann.visible)
            short += list(np.minimum(ann.boxes[:, 2] - ann.boxes[:, 0], ann.boxes[:, 3] - ann.boxes[:, 1]) / stride)
            objects_per_frame.append(len(ann.boxes))
            hit = np.zeros(len(ann.boxes), bool)
            for name, (_, level) in DETERIORATION_LEVELS.items():
                measures[name] += list(ann.deterioration[name])
                hit |= passes_level(name, ann.deterioration[name], level)
            strong += list(hit)
        categories += list(motion_category(motion_iou(np.array(frames), np.array(tracks), np.array(boxes))))
        frames_arr, tracks_arr, strong_arr = np.array(frames), np.array(tracks), np.array(strong, bool)
        for i in np.flatnonzero(strong_arr):  # is the same object seen better nearby?
            near = (tracks_arr == tracks_arr[i]) & (np.abs(frames_arr - frames_arr[i]) <= NEIGHBOUR_WINDOW)
            better_near.append(bool((near & ~strong_arr).any()))
        strong_any += strong
    total = len(categories)
    cats = np.array(categories)
    short_arr, visible_arr = np.asarray(short), np.asarray(visible)
    deterioration = {}
    for name, (hit_level, strong_level) in DETERIORATION_LEVELS.items():
        values = np.asarray(measures[name], np.float64)
        hit = passes_level(name, values, hit_level)
        deterioration[name] = {
            "hit_level": hit_level, "strong_level": strong_level,
            "hit_share": float(hit.mean()) if total else 0.0,
            "strong_share": float(passes_level(name, values, strong_level).mean()) if total else 0.0,
            "median_when_hit": float(np.median(values[hit])) if hit.any() else None,
            "p90_when_hit": float(np.percentile(values[hit], 90 if name != "foreshortening" else 10)) if hit.any()
            else None}
    return {
        "size": [config.height, config.width],
        "objects_per_video": list(config.objects),
        "object_size": list(config.object_size),
        "boxes": total,
        "class_share": {name: labels[name] / total for name in CLASS_NAMES[1:]},
        "motion_share": {c: float((cats == c).mean()) for c in ("slow", "medium", "fast")},
        "objects_per_frame": float(np.mean(objects_per_frame)),
        "visible_fraction": {"mean": float(visible_arr.mean()), "below_0.5": float((visible_arr < 0.5).mean())},
        "cells": {"stride": stride, "shorter_side_median": float(np.median(short_arr)),
                  "shorter_side_p10": float(np.percentile(short_arr, 10)),
                  "share_at_least_4": float((short_arr >= 4).mean()),
                  "share_below_2": float((short_arr < 2).mean()),
                  # shares of boxes per half-cell bin of the shorter side, 0-14 cells (larger ones in the last bin)
                  "histogram": np.histogram(np.clip(short_arr, 0, 14), CELL_BINS)[0].tolist()},
        "deterioration": deterioration,
        "strongly_deteriorated_share": float(np.mean(strong_any)),
        "seen_better_within_9_frames": float(np.mean(better_near)) if better_near else None,
    }


def _overlay(image: np.ndarray, ann) -> np.ndarray:
    out = image.copy()
    colors = plt.get_cmap("tab10")
    for box, label, track in zip(ann.boxes, ann.labels, ann.track_ids):
        color = tuple(int(255 * c) for c in colors(int(label) % 10)[:3])
        x0, y0, x1, y1 = (int(v) for v in box)
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), color, 1)
        cv2.putText(out, f"{CLASS_NAMES[int(label)]}#{int(track)}", (x0, max(8, y0 - 2)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.3, color, 1, cv2.LINE_AA)
    return out


def contact_sheet(path: Path, config: SynthConfig, seed: int = 0) -> None:
    """Frames 0, 5 and 9 of one video (with boxes), its semantic mask, and the flow 9 -> 0 (white = occluded)."""
    video = SyntheticVideo(config, seed, 1, "test")
    panels = [(f"frame {t}", _overlay(video.frame(t), video.annotation(t))) for t in (0, 5, 9)]
    semantic = video.annotation(9).semantic
    panels.append(("semantic mask, frame 9", (plt.get_cmap("tab10")(semantic % 10)[..., :3] * 255).astype(np.uint8)))
    flow, valid = video.flow(9, 0)
    color = flow_to_color(flow)
    color[~valid] = 255
    panels.append(("flow 9 -> 0 (white: occluded / leaves)", color))
    fig, axes = plt.subplots(len(panels), 1, figsize=(6, 3.1 * len(panels)))
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(image)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


#: The data sets the report describes: the segmentation set, the detection set of the earlier reports, and the
#: detection benchmark at ImageNet VID's geometry.
CONTENT_SETS: dict[str, SynthConfig] = {
    "segmentation (shapes, 128x256)": SynthConfig(128, 256, 30),
    "detection, shapes (192x384)": SynthConfig(192, 384, 30),
    "detection, VID geometry (224x384)": SynthConfig.vid(224, 384, 30),
}


def cells_plot(path: Path, content: dict[str, dict]) -> None:
    """Histogram of box shorter sides in stride-16 cells (from ``content_statistics``), one curve per data set."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for name, c in content.items():
        counts = np.asarray(c["cells"]["histogram"], float)
        density = counts / max(counts.sum(), 1) / np.diff(CELL_BINS)
        ax.stairs(density, CELL_BINS, lw=1.5, label=f"{name}: {100 * c['cells']['share_at_least_4']:.0f}% >= 4 cells")
    ax.axvline(4, color="grey", ls="--", lw=1)
    ax.set_xlabel("box shorter side (stride-16 feature cells)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def _content_lines(content: dict[str, dict]) -> list[str]:
    names = list(content)
    row = lambda label, f: f"| {label} | " + " | ".join(f(content[n]) for n in names) + " |"  # noqa: E731
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
             row("boxes counted", lambda c: str(c["boxes"])),
             row("objects per frame", lambda c: f"{c['objects_per_frame']:.1f}"),
             row("object diameter (share of height)", lambda c: f"{c['object_size'][0]:.2f}-{c['object_size'][1]:.2f}"),
             row("box shorter side, median (cells)", lambda c: f"{c['cells']['shorter_side_median']:.1f}"),
             row("boxes >= 4 cells on the shorter side", lambda c: pct(c["cells"]["share_at_least_4"])),
             row("boxes < 2 cells", lambda c: pct(c["cells"]["share_below_2"])),
             row("slow / medium / fast",
                 lambda c: " / ".join(pct(c["motion_share"][m]) for m in ("slow", "medium", "fast"))),
             row("less than half visible", lambda c: pct(c["visible_fraction"]["below_0.5"]))]
    for name, (hit, strong) in DETERIORATION_LEVELS.items():
        sign = "<=" if name == "foreshortening" else ">="
        lines.append(row(f"{name}: hit ({sign} {hit}) / strong ({sign} {strong})",
                         lambda c, n=name: f"{pct(c['deterioration'][n]['hit_share'])} / "
                                           f"{pct(c['deterioration'][n]['strong_share'])}"))
        lines.append(row(f"{name}: median / 90th percentile when hit",
                         lambda c, n=name: "-" if c["deterioration"][n]["median_when_hit"] is None else
                         f"{c['deterioration'][n]['median_when_hit']:.2f} / "
                         f"{c['deterioration'][n]['p90_when_hit']:.2f}"))
    lines += [row("strongly deteriorated (any)", lambda c: pct(c["strongly_deteriorated_share"])),
              row("... of which seen without strong deterioration within +-9 frames",
                  lambda c: pct(c["seen_better_within_9_frames"]))]
    return lines


def run_synth_benchmark(report: str | os.PathLike = "reports", videos: int = 20, size: tuple[int, int] = (256, 512),
                        seed: int = 0, command: str = "featflow bench synth", progress: bool = True,
                        sets: dict[str, SynthConfig] | None = None) -> list[Path]:
    """Generator speed at ``size`` (shapes, default and no degradations; VID geometry, every change on) and the
    content of each data set in ``sets`` (default: ``CONTENT_SETS``)."""
    sets = sets or CONTENT_SETS
    threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        speed = {name: measure_speed(config, videos, seed) for name, config in (
            ("shapes, default degradations", SynthConfig(size[0], size[1], 30)),
            ("shapes, no degradations", SynthConfig(size[0], size[1], 30, Degradations.off())),
            ("VID geometry, every change on", SynthConfig.vid(size[0], size[1], 30)))}
    finally:
        torch.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])
    content = {name: content_statistics(config, videos, seed, progress) for name, config in sets.items()}
    report = Path(report)
    vid_name = next((n for n, c in sets.items() if c.placement == SynthConfig.vid().placement), next(iter(sets)))
    contact_sheet(report / "synth.png", replace(sets[vid_name], num_frames=10), seed)
    cells_plot(report / "synth_cells.png", content)
    lines = [
        "# Synthetic benchmark: speed and content",
        "",
        f"Generator speed at {size[0]}x{size[1]} on one core (OpenCV and torch limited to 1 thread), "
        f"{videos} videos of 30 frames each. *Render* counts frames with their labels (semantic mask, instances, "
        "boxes, visibility, deterioration); *with setup* adds each video's one-off scene sampling (textures, "
        "sprites).",
        "",
        "| setting | frames/s render | frames/s with setup | setup ms/video |",
        "|---|---|---|---|",
    ]
    for name, sp in speed.items():
        lines.append(f"| {name} | {sp['render_fps']:.0f} | {sp['fps_with_setup']:.0f} | "
                     f"{sp['setup_ms_per_video']:.0f} |")
    lines += [
        "",
        "## What the videos hold",
        "",
        f"Box by box over {videos} held-out videos of 30 frames per set (seed {seed}). Motion categories follow "
        "FGFA's motion IoU (mean IoU with the same track over +-10 frames; fast < 0.7 <= medium <= 0.9 < slow). "
        "Feature cells are those of a stride-16 map (N_feat's output). In ImageNet VID at 600x1000 most objects "
        "span 4 or more cells along their shorter side; the VID-geometry set is built to match (few, large objects "
        "framed by the camera), the shapes sets are not.",
        "",
        "Deterioration, per box and frame (`FrameAnnotation.deterioration`): *smear* is the distance in pixels the "
        "object moves during the exposure (its motion blur, which follows its speed at that moment, sudden moves "
        "included); *defocus* the blur sigma on the object (the frame's defocus and the object's own, out of the "
        "focal plane); *foreshortening* cos of its out-of-plane turn; *hidden* the share of the object not visible "
        "(other objects, the frame edge). *Strong* is half a feature cell of smear, 2 px of blur, a 53-degree turn, "
        "or half hidden. The last row is the effect FGFA exists for: how often an object that is strongly "
        "deteriorated in one frame is seen without strong deterioration within +-9 frames.",
        "",
        *_content_lines(content),
        "",
        "How single-frame AP falls with each deterioration, and whether aggregation recovers it where a better "
        "view is near, is measured on the held-out VID-geometry set in `reports/detection_vid.md` (section "
        "\"Accuracy by appearance\"): it needs trained detectors, which this report does not load.",
        "",
        "![box shorter side in feature cells](synth_cells.png)",
        "",
        "**Segmentation set.** At 128x256 the segmentation set's objects span a median of "
        f"{content[next(iter(content))]['cells']['shorter_side_median']:.1f} cells: the VID rule does not hold "
        "there. Cityscapes at 1024x2048 is closer to it than ImageNet VID for its stuff classes (road, building, "
        "sky, vegetation span tens of cells) and farther for its small things (poles, signs, distant people, a few "
        "cells or less); the per-pixel task and its mIoU weigh the large regions. The segmentation set keeps its "
        "geometry for now (its models are shipped); whether its objects should grow is an open question, not "
        "measured here.",
        "",
        "Classes (share of boxes):",
        "",
        "| set | " + " | ".join(CLASS_NAMES[1:]) + " |",
        "|---|" + "---|" * (len(CLASS_NAMES) - 1),
        *[f"| {name} | " + " | ".join(f"{100 * c['class_share'][n]:.1f}%" for n in CLASS_NAMES[1:]) + " |"
          for name, c in content.items()],
        "",
        f"![frames, labels and flow of the {vid_name} set](synth.png)",
    ]
    data = {"size": list(size), "videos": videos, "seed": seed, "speed": speed, "content": content,
            "deterioration_levels": {k: list(v) for k, v in DETERIORATION_LEVELS.items()},
            "machine": machine_description()}
    return write_report(report, "synth", "\n".join(lines), data, command) + [report / "synth.png",
                                                                               report / "synth_cells.png"]
