"""The synthetic benchmark's own report (``reports/synth.md``): generator speed on one core, what the
videos contain (classes, motion-IoU speed categories, visibility), and a picture of a few frames with
their ground truth."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from featflow.analysis.reports import machine_description, write_report  # noqa: E402
from featflow.data.synthetic import CLASS_NAMES, Degradations, SynthConfig, SyntheticVideo  # noqa: E402
from featflow.evaluation.motion_iou import motion_category, motion_iou  # noqa: E402
from featflow.utils.io import atomic_path  # noqa: E402
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


def content_statistics(config: SynthConfig, videos: int, seed: int = 0, progress: bool = True) -> dict:
    """Class and motion-category shares of ground-truth boxes, and their visibility."""
    labels: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    visible, objects_per_frame = [], []
    for index in tqdm(range(videos), desc="content", disable=not progress, leave=False):
        video = SyntheticVideo(config, seed, index, "test", cache_size=1)
        frames, tracks, boxes = [], [], []
        for t in range(len(video)):
            ann = video.annotation(t)
            labels.update(CLASS_NAMES[int(k)] for k in ann.labels)
            frames += [t] * len(ann.boxes)
            tracks += list(ann.track_ids)
            boxes += list(ann.boxes)
            visible += list(ann.visible)
            objects_per_frame.append(len(ann.boxes))
        categories.update(str(c) for c in motion_category(motion_iou(np.array(frames), np.array(tracks), np.array(boxes))))
    total = sum(categories.values())
    visible_arr = np.asarray(visible)
    return {
        "boxes": total,
        "class_share": {name: labels[name] / total for name in CLASS_NAMES[1:]},
        "motion_share": {c: categories[c] / total for c in ("slow", "medium", "fast")},
        "objects_per_frame": float(np.mean(objects_per_frame)),
        "visible_fraction": {"mean": float(visible_arr.mean()), "below_0.5": float((visible_arr < 0.5).mean())},
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def run_synth_benchmark(report: str | os.PathLike = "reports", videos: int = 20, size: tuple[int, int] = (256, 512),
                        seed: int = 0, command: str = "featflow bench synth", progress: bool = True) -> list[Path]:
    threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        speed = {name: measure_speed(SynthConfig(size[0], size[1], 30, deg), videos, seed)
                 for name, deg in (("default degradations", Degradations()), ("no degradations", Degradations.off()))}
    finally:
        torch.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])
    content = content_statistics(SynthConfig(size[0], size[1], 30), videos, seed, progress)
    report = Path(report)
    contact_sheet(report / "synth.png", SynthConfig(size[0], size[1], 10), seed)
    lines = [
        "# Synthetic benchmark: speed and content",
        "",
        f"Generator speed at {size[0]}x{size[1]} on one core (OpenCV and torch limited to 1 thread), "
        f"{videos} videos of 30 frames each. *Render* counts frames with their labels (semantic mask, instances, "
        "boxes, visibility); *with setup* adds each video's one-off scene sampling (textures, sprites).",
        "",
        "| setting | frames/s render | frames/s with setup | setup ms/video |",
        "|---|---|---|---|",
    ]
    for name, s in speed.items():
        lines.append(f"| {name} | {s['render_fps']:.0f} | {s['fps_with_setup']:.0f} | {s['setup_ms_per_video']:.0f} |")
    lines += [
        "",
        f"Content over {content['boxes']} ground-truth boxes ({content['objects_per_frame']:.1f} objects per frame on "
        f"average; mean visible fraction {content['visible_fraction']['mean']:.2f}, "
        f"{100 * content['visible_fraction']['below_0.5']:.1f}% of boxes less than half visible).",
        "",
        "Motion-IoU categories (FGFA's rule: mean IoU with the same track over +-10 frames; fast < 0.7 <= medium <= "
        "0.9 < slow):",
        "",
        "| slow | medium | fast |",
        "|---|---|---|",
        "| " + " | ".join(f"{100 * content['motion_share'][c]:.1f}%" for c in ("slow", "medium", "fast")) + " |",
        "",
        "| class | " + " | ".join(CLASS_NAMES[1:]) + " |",
        "|---|" + "---|" * (len(CLASS_NAMES) - 1),
        "| share of boxes | " + " | ".join(f"{100 * content['class_share'][n]:.1f}%" for n in CLASS_NAMES[1:]) + " |",
        "",
        "![frames, labels and flow](synth.png)",
    ]
    data = {"size": list(size), "videos": videos, "seed": seed, "speed": speed, "content": content,
            "machine": machine_description()}
    return write_report(report, "synth", "\n".join(lines), data, command) + [report / "synth.png"]
