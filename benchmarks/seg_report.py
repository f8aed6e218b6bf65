"""The segmentation benchmark behind ``reports/segmentation.md``.

From a plan (YAML) naming the trained checkpoints and the held-out data:
- the seed's ablation table: Frame, SFF-slow, SFF-fast, DFF, DFF fix N, DFF fix F, DFF separate, with
  mIoU (DFF protocol at the key interval l) and frames/s measured on this machine;
- the accuracy-speed trade-off: mIoU against speedup over per-frame for l = 1..max_interval, for each
  (N_feat, F) pair of the plan (mIoU per key offset is computed once; mIoU(l) averages offsets 0..l-1;
  the speedup at l comes from the measured per-frame, key-frame and other-frame times);
- speed at the paper's size with random weights (``featflow.analysis.speed``), measured in one run;
- every row against Frame and DFF against every other row, as mIoU differences with paired 95% bootstrap
  intervals over the held-out snippets (the DFF protocol's per-offset mIoUs resampled together);
- the models' training: each run's budget summed along its init chain (for a shipped checkpoint, the record
  an earlier report kept of the run that made it: ``earlier_training`` and ``trained_as``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.cells import difference  # noqa: E402
from benchmarks.training import (  # noqa: E402
    chain_curve,
    chain_plateau_gain,
    curves_plot,
    earlier_records,
    shipped_run,
    training_lines,
    training_records,
)
from featflow.analysis.reports import machine_description, save_figure, write_report  # noqa: E402
from featflow.analysis.speed import dff_speedup, format_row, measure_speed  # noqa: E402
from featflow.data.cityscapes import CityscapesVideo  # noqa: E402
from featflow.engine.checkpoint import load_flow_into, load_segmenter  # noqa: E402
from featflow.engine.seg_inference import evaluate_segmentation, offset_matrices, time_stream  # noqa: E402
from featflow.evaluation.bootstrap import miou_difference  # noqa: E402
from featflow.evaluation.segmentation import ConfusionMatrix  # noqa: E402
from featflow.methods.segmentation import VideoSegmenter  # noqa: E402
from featflow.modeling.feature_net import FEATURE_STRIDE  # noqa: E402
from featflow.registry import resolve_weights  # noqa: E402


@dataclass(frozen=True)
class RowPlan:
    name: str
    weights: str
    method: str = "dff"
    flow_net: str | None = None  # give a per-frame checkpoint this F (DFF separate)
    flow_weights: str | None = None  # its pre-trained weights (None: the shipped ones)
    trained_as: str | None = None  # a shipped checkpoint: the run weights an earlier report recorded it as
    reference: bool = False  # shown and compared, but not one of the ablation / SFF rows DFF is to beat


@dataclass(frozen=True)
class CurvePlan:
    name: str
    weights: str  # a DFF checkpoint
    frame_weights: str  # the per-frame checkpoint with the same N_feat (the speed reference)


@dataclass(frozen=True)
class SpeedPlan:
    feature_net: str = "resnet101"
    flow_nets: tuple[str, ...] = ("flownet", "flownet_half", "flownet_inception")
    sizes: tuple[tuple[int, int], ...] = ((512, 1024),)
    key_interval: int = 5
    frames: int | None = None


@dataclass(frozen=True)
class SegReportPlan:
    data: str
    split: str = "val"
    key_interval: int = 5
    max_interval: int = 20
    rows: tuple[RowPlan, ...] = ()
    curves: tuple[CurvePlan, ...] = ()
    speed: SpeedPlan = field(default_factory=SpeedPlan)
    bootstrap_samples: int = 1000  # resamples of the held-out snippets for each difference's 95% interval
    stem: str = "segmentation"  # the report's file names: {stem}.md, {stem}.json, {stem}.png
    earlier_training: tuple[str, ...] = ()  # report JSONs whose training records describe shipped rows
    title: str = "Video segmentation: per-frame, DFF and its ablations"
    findings: tuple[str, ...] = ()  # what the tables show, written by whoever ran them


def _trained_as(row: RowPlan) -> str:
    """The weights a row's training record is kept under: the plan's ``trained_as``, else the run a shipped model
    was packed from (models.json), else the row's own weights."""
    return row.trained_as or shipped_run(row.weights) or row.weights


def _model(weights: str, flow_net: str | None = None, flow_weights: str | None = None) -> VideoSegmenter:
    """A row's segmenter: ``weights`` is a file or a shipped model's name."""
    model, meta = load_segmenter(resolve_weights(weights, what="the plan's weights"), flow_net=flow_net)
    if flow_net and not meta.get("flow_net"):
        load_flow_into(model, flow_weights)
    return model.for_inference()


#: How many times each row's stream (and each curve's per-frame and DFF streams) is timed, all in turn.
TIMING_ROUNDS = 3


def _ablation(plan: SegReportPlan, video: CityscapesVideo, progress: bool) -> tuple[list[dict], dict]:
    """The table's rows, and each row's per-snippet confusions by name (for the intervals)."""
    rows, confusions, streams = [], {}, []
    for row in plan.rows:
        model = _model(row.weights, row.flow_net, row.flow_weights)
        result = evaluate_segmentation(model, video, row.method, plan.key_interval, fps_snippets=0,
                                       progress=progress)  # timed below, all rows in turn
        rows.append({"name": row.name, "weights": row.weights, **result.to_json()})
        confusions[row.name] = result.snippet_confusion
        streams.append((model, result.method, result.key_interval))
    # frames/s again, every row in turn for TIMING_ROUNDS rounds, each row's median: rows timed minutes apart
    # would compare this VM at different speeds
    fps: list[list[float]] = [[] for _ in rows]
    for _ in range(TIMING_ROUNDS):
        for i, (model, method, interval) in enumerate(streams):
            fps[i].append(time_stream(model, video, method, interval, repeats=1).fps)
    for r, f in zip(rows, fps):
        r["fps"] = float(np.median(f))
    frame = next((r for r in rows if r["method"] == "frame"), None)
    for r in rows:
        r["speedup"] = r["fps"] / frame["fps"] if frame else None
        r["miou_drop"] = (frame["miou"] - r["miou"]) if frame else None
    return rows, confusions


def _comparisons(rows: list[dict], confusions: dict, samples: int) -> list[dict]:
    """Every row against Frame, and DFF against every other row: mIoU(other) - mIoU(base) in points with a
    paired 95% bootstrap interval over snippets."""
    frame = next((r["name"] for r in rows if r["method"] == "frame"), None)
    pairs = [(frame, r["name"]) for r in rows if frame and r["name"] != frame]
    if any(r["name"] == "DFF" for r in rows):
        pairs += [(r["name"], "DFF") for r in rows if r["name"] not in ("DFF", frame)]
    return [{"base": a, "other": b, "miou": miou_difference(confusions[a], confusions[b], samples).to_json()}
            for a, b in pairs]



def region_cells(labels: list[np.ndarray], num_classes: int) -> list[float | None]:
    """Each class's region size in feature cells, as its pixels see it: the median over the class's labelled pixels
    of the shorter side of the connected region (8-connected) that holds them, over N_feat's stride (pixel-weighted,
    as mIoU counts pixels: a class's stray fragments do not decide it). None for a class that never appears. Why: a
    warp at stride 16 moves whole cells, so a region a cell or two across loses most of its shape to a misaligned
    one."""
    sides: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    for label in labels:
        for c in range(num_classes):
            count, _, stats, _ = cv2.connectedComponentsWithStats((label == c).astype(np.uint8), connectivity=8)
            regions = stats[1:count]  # row 0 is everything else
            sides[c].append(np.repeat(np.minimum(regions[:, 2], regions[:, 3]), regions[:, 4]))  # one per pixel
    found = [np.concatenate(v) if v else np.zeros(0) for v in sides]
    return [float(np.median(v)) / FEATURE_STRIDE if len(v) else None for v in found]


def propagation_by_class(confusion: np.ndarray, class_names: list[str], cells: list[float | None]) -> list[dict]:
    """Where propagation loses: per class, IoU at key offset 0 (N_feat on the labelled frame) and at the last
    offset of the DFF protocol, from a row's (offsets, snippets, C, C) confusions, beside the class's share of the
    labelled pixels and its region size in cells (``region_cells``)."""
    key, last = ConfusionMatrix(confusion.shape[-1]), ConfusionMatrix(confusion.shape[-1])
    key.matrix, last.matrix = confusion[0].sum(0), confusion[-1].sum(0)  # over snippets: (C, C) [truth, prediction]
    iou_key, iou_last = key.iou(), last.iou()
    truth = key.matrix.sum(1)  # labelled pixels per class (every offset sees the same frames)
    return [{"class": name, "pixel_share": float(truth[c] / truth.sum()), "region_cells": cells[c],
             "iou_key": float(iou_key[c]), "iou_last": float(iou_last[c]), "loss": float(iou_key[c] - iou_last[c])}
            for c, name in enumerate(class_names) if truth[c] > 0]


def _curves(plan: SegReportPlan, video: CityscapesVideo, progress: bool) -> list[dict]:
    curves = []
    intervals = list(range(1, plan.max_interval + 1))
    for curve in plan.curves:
        model = _model(curve.weights)
        by_offset = [m.miou() for m in offset_matrices(model, video, "dff", list(range(plan.max_interval)),
                                                       progress=progress)]
        frame_model = _model(curve.frame_weights)
        # the two streams timed in turn, three times each, and each one's median run: this VM's speed drifts by
        # 10-30% over minutes, so timings taken apart would compare different machines
        frame_runs, dff_runs = [], []
        for _ in range(TIMING_ROUNDS):
            frame_runs.append(time_stream(frame_model, video, "frame", 1, repeats=1))
            dff_runs.append(time_stream(model, video, "dff", plan.key_interval, repeats=1))
        frame_ms = 1000 / sorted(r.fps for r in frame_runs)[len(frame_runs) // 2]
        timing = sorted(dff_runs, key=lambda r: r.fps)[len(dff_runs) // 2]
        miou = {l: float(np.mean(by_offset[:l])) for l in intervals}
        speedup = {l: dff_speedup(frame_ms, timing.key_frame_ms, timing.non_key_frame_ms, l) for l in intervals}
        curves.append({"name": curve.name, "weights": curve.weights, "miou_by_offset": by_offset, "miou": miou,
                       "speedup": speedup, "frame_ms": frame_ms, "key_frame_ms": timing.key_frame_ms,
                       "non_key_frame_ms": timing.non_key_frame_ms})
    return curves


def _plot(path: Path, curves: list[dict], frame_miou: float | None) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for curve in curves:
        ls = sorted(curve["miou"])
        xs, ys = [curve["speedup"][l] for l in ls], [100 * curve["miou"][l] for l in ls]
        ax.plot(xs, ys, marker="o", markersize=3, label=curve["name"])
        for l in (1, 5, 10, 20):
            if l in curve["miou"]:
                ax.annotate(f"l={l}", (curve["speedup"][l], 100 * curve["miou"][l]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
    if frame_miou is not None:
        ax.axhline(100 * frame_miou, color="grey", linestyle=":", label="per-frame")
    ax.set_xlabel("speedup over per-frame (measured on this CPU)")
    ax.set_ylabel("mIoU (%)")
    ax.set_title("DFF accuracy-speed trade-off, key intervals 1..20")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def _markdown(plan: SegReportPlan, video: CityscapesVideo, rows: list[dict], curves: list[dict], speed: list,
              records: list[dict] | None = None, comparisons: list[dict] | None = None,
              by_class: list[dict] | None = None) -> str:
    lines = [f"# {plan.title}", "",
             f"Held-out data: {len(video)} snippets of `{plan.data}` (split `{plan.split}`, Cityscapes layout), "
             f"small models trained here on the CPU (see each model's config in `featflow/configs/seg/`). mIoU follows "
             f"the DFF protocol: the labelled frame is reached from key frames 0..l-1 frames before it, l = "
             f"{plan.key_interval}, and the per-offset mIoUs are averaged. Frames/s: streaming inference on this "
             "machine's CPU at the data's resolution (image decoding excluded).", ""]
    if plan.findings:
        lines += ["## What the tables show", ""] + [f"- {finding}" for finding in plan.findings] + [""]
    lines += ["## The seed's ablation table", "",
             "| method | mIoU (%) | drop vs Frame | frames/s | speedup |", "|---|---|---|---|---|"]
    for r in rows:
        drop = "" if r["miou_drop"] is None else f"{100 * r['miou_drop']:+.1f}"
        speedup = "" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        lines.append(f"| {r['name']} | {100 * r['miou']:.1f} | {drop} | {r['fps']:.1f} | {speedup} |")
    frame = next((r for r in rows if r["method"] == "frame"), None)
    dff = next((r for r in rows if r["name"] == "DFF"), None)
    if frame and dff:
        references = {row.name for row in plan.rows if row.reference}
        others = [r for r in rows if r["name"] not in ("DFF", frame["name"], *references)]
        beaten = all(dff["miou"] > r["miou"] for r in others)
        gap = 100 * (frame["miou"] - dff["miou"])
        against = next((c for c in comparisons or [] if c["base"] == frame["name"] and c["other"] == "DFF"), None)
        interval = f" (DFF - Frame: {difference(against['miou'])})" if against else ""
        lines += ["", f"- DFF at l={plan.key_interval} " + (f"loses {gap:.1f} mIoU points against" if gap >= 0 else
                                                             f"scores {-gap:.1f} mIoU points above")
                  + f" Frame{interval} (target: a loss of at most 2.0; the paper lost 1.9).",
                  f"- DFF {'beats' if beaten else 'does not beat'} every ablation and SFF row"
                  + ("" if beaten else ": " + ", ".join(f"{r['name']} {100 * r['miou']:.1f}" for r in others
                                                        if r["miou"] >= dff["miou"])) + "."]
        own = next((c for c in curves if c["weights"] == dff["weights"]), None)
        if own is not None:
            lines.append(f"- DFF's own N_feat run on every frame (l=1) gets {100 * own['miou'][1]:.1f} (Frame: "
                         f"{100 * frame['miou']:.1f}); propagation alone costs "
                         f"{100 * (own['miou'][1] - dff['miou']):.1f} points at l={plan.key_interval}.")
    if by_class:
        last = plan.key_interval - 1
        lines += ["", "## Where propagation loses (DFF, by class)", "",
                  f"IoU (%) of the DFF row with the key frame at offset 0 (N_feat on the labelled frame) and at offset "
                  f"{last} (the farthest of the protocol), by class, beside the class's share of the labelled pixels "
                  "and its region size: the median over its pixels of the shorter side of the connected region's box "
                  "that holds them, in stride-16 feature cells.", "",
                  f"| class | pixel share | region (cells) | IoU, offset 0 | IoU, offset {last} | loss |",
                  "|---|---|---|---|---|---|"]
        for c in sorted(by_class, key=lambda c: -c["loss"]):
            size = "-" if c["region_cells"] is None else f"{c['region_cells']:.1f}"
            lines.append(f"| {c['class']} | {100 * c['pixel_share']:.1f}% | {size} | {100 * c['iou_key']:.1f} | "
                         f"{100 * c['iou_last']:.1f} | {100 * c['loss']:+.1f} |")
    if curves:
        lines += ["", "## Accuracy against speed", "",
                  "mIoU (%) at key interval l, and the speedup over the per-frame model with the same N_feat "
                  "(from measured per-frame, key-frame and other-frame times on this CPU).", "",
                  "| N_feat + F | " + " | ".join(f"l={l}" for l in (1, 2, 5, 10, 15, 20) if l <= plan.max_interval)
                  + " |", "|---|" + "---|" * len([l for l in (1, 2, 5, 10, 15, 20) if l <= plan.max_interval])]
        for c in curves:
            cells = [f"{100 * c['miou'][l]:.1f} ({c['speedup'][l]:.1f}x)" for l in (1, 2, 5, 10, 15, 20)
                     if l <= plan.max_interval]
            lines.append(f"| {c['name']} | " + " | ".join(cells) + " |")
        lines += ["", f"![trade-off]({plan.stem}.png)"]
    if speed:
        lines += ["", "## Speed at the paper's size (random weights)", "",
                  "Per-frame against DFF, measured in one run each (N_feat with 1024 feature channels, 19 classes).",
                  "", "| N_feat + F | size | l | per-frame fps | DFF fps | speedup | key frame ms | other frame ms |",
                  "|---|---|---|---|---|---|---|---|"]
        for s in speed:
            lines.append(f"| {s['feature_net']} + {s['flow_net']} | {s['size'][0]}x{s['size'][1]} "
                         f"| {s['key_interval']} | {s['per_frame_fps']:.3f} | {s['dff_fps']:.3f} | "
                         f"{s['speedup']:.2f}x | {s['key_frame_ms']:.0f} | {s['non_key_frame_ms']:.0f} |")
        lines += ["", "Target: ResNet-101 + FlowNet at l=5 at least 4.5x faster than per-frame (paper: 3.7x on a "
                      "K40; the bound when propagation costs nothing is 5x)."]
    if comparisons:
        lines += ["", "## Differences with 95% bootstrap intervals", "",
                  "mIoU points, other minus base; the interval resamples held-out snippets (paired: both rows see the "
                  "same resampled snippets; under the DFF protocol each resample averages its per-offset mIoUs). A "
                  "difference whose interval contains 0 is not a result.", "",
                  "| other | base | mIoU difference |", "|---|---|---|"]
        lines += [f"| {c['other']} | {c['base']} | {difference(c['miou'])} |" for c in comparisons]
    if records:
        lines += training_lines(records)
        lines += ["", "Convergence of each row's model along its whole init chain: the held-out mIoU during training "
                      "(the trainer's own held-out synthetic samples) over the last quarter of the chain's samples (a "
                      "model has plateaued when it rose by under 1 point).", "",
                  "| row | weights | chain samples | last-quarter gain (points) | plateau |", "|---|---|---|---|---|"]
        for row in plan.rows:
            record = next((r for r in records if r["weights"] == _trained_as(row)), None)
            points = chain_curve(record, records, "val_miou") if record else []
            gain = chain_plateau_gain(points)
            plateau = "-" if gain is None else ("yes" if gain < 0.01 else "no")
            lines.append(f"| {row.name} | `{row.weights}` | {points[-1][0] if points else '-'} | "
                         f"{'-' if gain is None else f'{100 * gain:+.1f}'} | {plateau} |")
        lines += ["", f"![held-out curves]({plan.stem}_training.png)"]
    return "\n".join(lines)


def run_segmentation_report(plan: SegReportPlan, report: str | os.PathLike = "reports",
                            command: str = "featflow bench seg", progress: bool = True) -> list[Path]:
    video = CityscapesVideo(plan.data, plan.split)
    rows, confusions = _ablation(plan, video, progress)
    comparisons = _comparisons(rows, confusions, plan.bootstrap_samples) if plan.bootstrap_samples else []
    curves = _curves(plan, video, progress)
    speed = []
    for size in plan.speed.sizes:
        for flow_net in plan.speed.flow_nets:
            row = measure_speed("seg", plan.speed.feature_net, flow_net, tuple(size), plan.speed.key_interval,
                                plan.speed.frames)
            if progress:
                print(format_row(row))
            speed.append(row.to_json())
    dff = next((r for r in rows if r["name"] == "DFF"), None)
    by_class = propagation_by_class(confusions["DFF"], video.table.class_names,
                                    region_cells([video.label(i) for i in range(len(video))], video.num_classes)
                                    ) if dff and dff["key_interval"] > 1 else []
    weights = list(dict.fromkeys([_trained_as(r) for r in plan.rows]
                                 + [w for c in plan.curves for w in (c.frame_weights, c.weights)]))
    records = training_records(weights, earlier_records(plan.earlier_training))
    report = Path(report)
    paths = write_report(report, plan.stem,
                         _markdown(plan, video, rows, curves, speed, records, comparisons, by_class),
                         {"plan": asdict(plan), "snippets": len(video), "ablation": rows, "comparisons": comparisons,
                          "curves": curves, "speed": speed, "training": records, "propagation_by_class": by_class,
                          "machine": machine_description()},
                         command)
    if curves:
        frame = next((r for r in rows if r["method"] == "frame"), None)
        _plot(report / f"{plan.stem}.png", curves, frame["miou"] if frame else None)
        paths.append(report / f"{plan.stem}.png")
    if records and curves_plot(report / f"{plan.stem}_training.png", records, "val_miou", "held-out mIoU (%)"):
        paths.append(report / f"{plan.stem}_training.png")
    return paths
