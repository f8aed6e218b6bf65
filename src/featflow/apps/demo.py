"""``featflow demo``: per-frame against DFF segmentation, and single-frame against DFF and FGFA detection,
on freshly generated clips with the weights shipped in the package; side-by-side H.264 videos and a summary.

The shipped segmenter is a DFF model (ResNet-18 N_feat + FlowNet Inception, trained here on synthetic
video). "Per-frame" runs its N_feat and head on every frame; "DFF" runs N_feat on every l-th frame only
and propagates features along FlowNet Inception's flow to the frames between. Detection uses the shipped
DFF and FGFA detectors the same way: single frame runs the DFF detector's N_feat + R-FCN on every frame,
FGFA aggregates 2K+1 frames warped along its own flow. Besides the videos and the summary, the demo draws
the accuracy-speed trade-off of what it ran (``tradeoff.png``) and the flow F estimates between a few frames and
their key frames (``flow.png``), and gathers everything into one self-contained ``report.html``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from featflow.apps.html import write_html_report  # noqa: E402
from featflow.data.io import write_image  # noqa: E402
from featflow.data.synthetic import CLASS_NAMES, NUM_CLASSES, SynthConfig, SyntheticVideo  # noqa: E402
from featflow.data.synthetic.export import synthetic_label_table  # noqa: E402
from featflow.data.video import write_video  # noqa: E402
from featflow.engine.checkpoint import load_detector, load_segmenter  # noqa: E402
from featflow.engine.det_inference import DetStreamConfig, detect_stream  # noqa: E402
from featflow.engine.flow_inference import predict_flow  # noqa: E402
from featflow.engine.seg_inference import SegmentationStream  # noqa: E402
from featflow.errors import FeatflowError  # noqa: E402
from featflow.evaluation.segmentation import ConfusionMatrix  # noqa: E402
from featflow.evaluation.vid_map import evaluate_vid  # noqa: E402
from featflow.methods.schedulers import FixedInterval  # noqa: E402
from featflow.methods.segmentation import VideoSegmenter  # noqa: E402
from featflow.modeling.preprocess import image_to_tensor  # noqa: E402
from featflow.registry import default_model, resolve_weights  # noqa: E402
from featflow.structures import Detections, VideoGroundTruth  # noqa: E402
from featflow.utils.io import atomic_path, write_json, write_text  # noqa: E402
from featflow.utils.visualize import caption, draw_boxes, flow_to_color, legend, overlay, side_by_side  # noqa: E402


def shipped_segmenter() -> Path:
    """The DFF segmenter the demo runs by default (``featflow.registry.DEFAULT_MODELS``)."""
    return resolve_weights(default_model("seg"))


def shipped_detectors() -> dict[str, Path]:
    """The DFF and FGFA detectors the demo runs by default."""
    return {"dff": resolve_weights(default_model("det", "dff")), "fgfa": resolve_weights(default_model("det"))}


@dataclass
class MethodSummary:
    miou: float
    fps: float


@dataclass
class DemoSummary:
    frames: int
    size: tuple[int, int]
    key_interval: int
    per_frame: MethodSummary
    dff: MethodSummary
    speedup: float
    video: str
    detection: "DetDemoSummary | None" = None
    report: str = ""


def segmentation_palette() -> np.ndarray:
    """(NUM_CLASSES, 3) uint8: the synthetic classes' fixed colours by train id (0: the background, left unpainted)."""
    return np.array([label.color for label in synthetic_label_table().labels if label.train_id != 255], np.uint8)


def segmentation_view(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A demo panel: the label map blended over the image (background unpainted) with the legend of the classes."""
    palette = segmentation_palette()
    return legend(overlay(image, labels, palette, background=0), list(CLASS_NAMES), palette)


def _run(stream: SegmentationStream, frames: list[np.ndarray], desc: str, progress: bool) -> tuple[list, list, float]:
    labels, keys, seconds = [], [], 0.0
    for frame in tqdm(frames, desc=desc, disable=not progress, leave=False):
        start = time.perf_counter()
        out, is_key = stream.step(frame)
        seconds += time.perf_counter() - start
        labels.append(out)
        keys.append(is_key)
    return labels, keys, len(frames) / seconds


def run_demo(out: str | os.PathLike = "featflow_demo", frames: int = 60, key_interval: int = 5, seed: int = 0,
             weights: str | os.PathLike | None = None, progress: bool = True, detection: bool = True,
             det_weights: tuple[str | os.PathLike, str | os.PathLike] | None = None) -> DemoSummary:
    """Generate a clip, segment it per frame and with DFF, write ``demo.mp4`` and ``summary.json/.md``; with
    ``detection``, also the detection demo (``detection.mp4``) with the (DFF, FGFA) ``det_weights`` or the
    shipped detectors."""
    if frames < 2 or key_interval < 1:
        raise FeatflowError("the demo needs at least 2 frames and a key interval of at least 1")
    out = Path(out)
    model, meta = load_segmenter(weights or shipped_segmenter())
    model.for_inference()
    if model.flow_net is None:
        raise FeatflowError("the demo needs a DFF segmenter (with a flow network)")
    size = tuple(json.loads(meta.get("config", "{}")).get("data", {}).get("size", (128, 256)))  # trained size
    video = SyntheticVideo(SynthConfig(size[0], size[1], frames), seed=seed, index=0, split="test")
    images = [video.frame(t) for t in tqdm(range(frames), desc="generate clip", disable=not progress, leave=False)]
    per_frame, _, per_frame_fps = _run(SegmentationStream(model, "frame"), images, "per-frame", progress)
    dff, keys, dff_fps = _run(SegmentationStream(model, "dff", FixedInterval(key_interval)), images, "DFF", progress)
    scores = {}
    for name, predictions in (("per_frame", per_frame), ("dff", dff)):
        matrix = ConfusionMatrix(NUM_CLASSES)
        for t, pred in enumerate(predictions):
            matrix.update(pred, video.annotation(t).semantic)
        scores[name] = matrix.miou()

    def panels(t: int) -> np.ndarray:
        big = (2 * size[1], 2 * size[0])
        image = cv2.resize(images[t], big, interpolation=cv2.INTER_LINEAR)
        frame_labels = cv2.resize(per_frame[t], big, interpolation=cv2.INTER_NEAREST)
        dff_labels = cv2.resize(dff[t], big, interpolation=cv2.INTER_NEAREST)
        return side_by_side([
            caption(image, f"input, frame {t}"),
            caption(segmentation_view(image, frame_labels), f"per-frame: {per_frame_fps:.1f} fps"),
            caption(segmentation_view(image, dff_labels), f"DFF l={key_interval}: {dff_fps:.1f} fps"
                    + (" [key]" if keys[t] else ""), (255, 220, 0) if keys[t] else (255, 255, 255)),
        ])

    out.mkdir(parents=True, exist_ok=True)
    write_video(out / "demo.mp4", (panels(t) for t in tqdm(range(frames), desc="write video", disable=not progress,
                                                           leave=False)), fps=10)
    det = None
    if detection and (det_weights is not None or all(p.is_file() for p in shipped_detectors().values())):
        dff_w, fgfa_w = det_weights or (None, None)
        det = run_detection_demo(out, seed=seed, dff_weights=dff_w, fgfa_weights=fgfa_w, progress=progress)
    summary = DemoSummary(frames, size, key_interval, MethodSummary(scores["per_frame"], per_frame_fps),
                          MethodSummary(scores["dff"], dff_fps), dff_fps / per_frame_fps, str(out / "demo.mp4"), det,
                          str(out / "report.html"))
    _flow_figure(out / "flow.png", model, images, key_interval)
    _tradeoff_plot(out / "tradeoff.png", summary)
    write_json(out / "summary.json", asdict(summary))
    det_text = detection_markdown(det) if det else ("Detection: not run (this build ships no detector weights)."
                                                     if detection else "")
    write_text(out / "summary.md", "\n".join([
        f"# featflow demo: per-frame against DFF ({frames} synthetic frames, {size[0]}x{size[1]}, l={key_interval})",
        "", "| method | mIoU (%) | frames/s |", "|---|---|---|",
        f"| per-frame | {100 * scores['per_frame']:.1f} | {per_frame_fps:.1f} |",
        f"| DFF | {100 * scores['dff']:.1f} | {dff_fps:.1f} |", "",
        f"DFF speedup: {summary.speedup:.2f}x. Classes: {', '.join(CLASS_NAMES)}. Video: demo.mp4 "
        "(input | per-frame | DFF; key frames marked).", "", det_text, "",
        "## Accuracy against speed (this clip, this machine)", "", "![trade-off](tradeoff.png)", "",
        "## The flow DFF propagates along", "",
        "Key frame, current frame and the flow F estimates from the current frame to the key frame (hue: direction, "
        "saturation: speed; white: still).", "", "![flow fields](flow.png)", ""]))
    write_html_report(out, title="featflow demo")
    return summary


@torch.no_grad()
def _flow_figure(path: Path, model: VideoSegmenter, images: list[np.ndarray], key_interval: int,
                 count: int = 3) -> None:
    """Rows of (key frame | current frame | F's flow from the current frame to the key frame, in colour) for the
    last frame of each of the first ``count`` key intervals (the farthest from its key frame)."""
    interval = max(key_interval, 2)
    frames = [t for t in range(interval - 1, len(images), interval)][:count] or [len(images) - 1]
    rows = []
    for t in frames:
        key = t - t % interval
        flow = predict_flow(model.flow_net, image_to_tensor(images[t]), image_to_tensor(images[key]))
        panels = [images[key], images[t], flow_to_color(flow[0].permute(1, 2, 0).numpy())]
        panels = [cv2.resize(p, (2 * p.shape[1], 2 * p.shape[0]), interpolation=cv2.INTER_LINEAR) for p in panels]
        rows.append(side_by_side([caption(panels[0], f"key frame {key}"), caption(panels[1], f"frame {t}"),
                                  caption(panels[2], f"flow, frame {t} -> key {key}")]))
    gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    write_image(path, np.concatenate([part for row in rows for part in (row, gap)][:-1], axis=0))


def _tradeoff_plot(path: Path, summary: DemoSummary) -> None:
    """Accuracy against frames/s of each method the demo ran (segmentation; detection when it ran)."""
    det = summary.detection
    fig, axes = plt.subplots(1, 2 if det else 1, figsize=(11 if det else 5.5, 4), squeeze=False)
    seg = [("per-frame", summary.per_frame.fps, summary.per_frame.miou),
           (f"DFF l={summary.key_interval}", summary.dff.fps, summary.dff.miou)]
    panels = [(axes[0, 0], "segmentation", "mIoU (%)", seg)]
    if det:
        panels.append((axes[0, 1], "detection", "mAP (%)",
                       [("single frame", det.single_frame.fps, det.single_frame.map),
                        (f"DFF l={det.key_interval}", det.dff.fps, det.dff.map),
                        (f"FGFA {2 * det.window + 1} frames", det.fgfa.fps, det.fgfa.map)]))
    for ax, title, ylabel, points in panels:
        for name, fps, accuracy in points:
            ax.scatter(fps, 100 * accuracy, s=60)
            ax.annotate(name, (fps, 100 * accuracy), textcoords="offset points", xytext=(6, 4), fontsize=9)
        ax.set_xlabel("frames / s (this machine)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.margins(0.25)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


@dataclass
class DetMethodSummary:
    map: float
    fast: float | None
    fps: float


@dataclass
class DetDemoSummary:
    frames: int
    size: tuple[int, int]
    key_interval: int
    window: int
    single_frame: DetMethodSummary
    dff: DetMethodSummary
    fgfa: DetMethodSummary
    video: str


def _trained_size(meta: dict[str, str], default: tuple[int, int]) -> tuple[int, int]:
    return tuple(json.loads(meta.get("config", "{}")).get("data", {}).get("size", default))


def run_detection_demo(out: str | os.PathLike = "featflow_demo", frames: int = 40, key_interval: int = 10,
                       window: int = 5, seed: int = 0, dff_weights: str | os.PathLike | None = None,
                       fgfa_weights: str | os.PathLike | None = None, progress: bool = True) -> DetDemoSummary:
    """Generate a clip, detect objects per frame, with DFF and with FGFA; write ``detection.mp4`` and
    ``detection.json``; -> mAP (all and fast objects) on the clip and frames/s of each method."""
    if frames < 2 or key_interval < 1 or window < 0:
        raise FeatflowError("the demo needs at least 2 frames, a key interval >= 1 and a window >= 0")
    out = Path(out)
    shipped = shipped_detectors()
    dff_model, meta = load_detector(dff_weights or shipped["dff"])
    fgfa_model = load_detector(fgfa_weights or shipped["fgfa"])[0].for_inference()
    dff_model.for_inference()
    if dff_model.flow_net is None or fgfa_model.aggregator is None:
        raise FeatflowError("the detection demo needs a DFF detector and an FGFA detector")
    names = json.loads(meta["class_names"])
    size = _trained_size(meta, (192, 384))
    video = SyntheticVideo(SynthConfig(size[0], size[1], frames), seed=seed, index=0, split="test")
    images = [video.frame(t) for t in tqdm(range(frames), desc="generate clip", disable=not progress, leave=False)]
    truth = [VideoGroundTruth.from_frames([video.annotation(t).ground_truth for t in range(frames)])]
    runs = {"single_frame": (dff_model, DetStreamConfig("frame")),
            "dff": (dff_model, DetStreamConfig("dff", key_interval=key_interval)),
            "fgfa": (fgfa_model, DetStreamConfig("fgfa", window=window))}
    results, summaries = {}, {}
    for name, (model, config) in runs.items():
        timing: list[float] = []
        dets: list[Detections] = [Detections.empty()] * frames
        stream = detect_stream(model, iter(images), config, timing)
        for index, d in tqdm(stream, total=frames, desc=name.replace("_", " "), disable=not progress, leave=False):
            dets[index] = d
        result = evaluate_vid([dets], truth, len(names))
        fast = None if result.num_gt["fast"] == 0 else result.fast
        results[name] = dets
        summaries[name] = DetMethodSummary(result.map, fast, frames / sum(timing))
    palette = np.array([label.color for label in synthetic_label_table().labels], np.uint8)

    def panels(t: int) -> np.ndarray:
        big = cv2.resize(images[t], (2 * size[1], 2 * size[0]), interpolation=cv2.INTER_LINEAR)
        titles = {"single_frame": "single frame", "dff": f"DFF l={key_interval}",
                  "fgfa": f"FGFA {2 * window + 1} frames"}
        return side_by_side([caption(draw_boxes(big, d[t].boxes, d[t].labels, d[t].scores, names, palette, scale=2.0),
                                     f"{titles[n]}: {summaries[n].fps:.1f} fps") for n, d in results.items()])

    out.mkdir(parents=True, exist_ok=True)
    write_video(out / "detection.mp4", (panels(t) for t in tqdm(range(frames), desc="write video",
                                                                disable=not progress, leave=False)), fps=10)
    summary = DetDemoSummary(frames, size, key_interval, window, summaries["single_frame"], summaries["dff"],
                             summaries["fgfa"], str(out / "detection.mp4"))
    write_json(out / "detection.json", asdict(summary))
    return summary


def detection_markdown(s: DetDemoSummary) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None or v != v else f"{100 * v:.1f}"

    rows = [("single frame", s.single_frame), (f"DFF l={s.key_interval}", s.dff),
            (f"FGFA, {2 * s.window + 1} frames", s.fgfa)]
    return "\n".join([f"## Detection ({s.frames} synthetic frames, {s.size[0]}x{s.size[1]})", "",
                      "| method | mAP (%) | mAP fast (%) | frames/s |", "|---|---|---|---|"]
                     + [f"| {n} | {pct(r.map)} | {pct(r.fast)} | {r.fps:.1f} |" for n, r in rows]
                     + ["", "Video: detection.mp4 (single frame | DFF | FGFA; boxes scoring 0.3 or more).", ""])
