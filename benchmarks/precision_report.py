"""bfloat16 against float32 inference for every shipped model, behind ``reports/precision.md``.

Each shipped model runs its headline method (segmenter: DFF at l=5 and per frame, the DFF protocol of
``featflow eval seg``; DFF detector: DFF at l=10; FGFA detector: FGFA with 21 frames and per frame) on held-out
data, once in float32 and once with bfloat16 autocast (``featflow.modeling.precision``). The report gives each
model's accuracy in both, the change in points (detection: with a paired 95% bootstrap interval over videos), and
frames per second (model time, decoding excluded). The target is a change within 0.3 points.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from tqdm import tqdm

from featflow.analysis.reports import machine_description, write_report
from featflow.data.cityscapes import CityscapesVideo
from featflow.data.vid import VidDataset
from featflow.engine.checkpoint import load_detector, load_segmenter
from featflow.engine.det_inference import DetStreamConfig, detect_dataset, ground_truth
from featflow.engine.seg_inference import evaluate_segmentation
from featflow.evaluation.bootstrap import vid_map_differences
from featflow.evaluation.vid_map import evaluate_vid
from featflow.modeling.precision import autocast, autocast_dtype, bf16_supported
from featflow.registry import shipped_models

PRECISIONS = ("fp32", "bf16")
TARGET = 0.3  # points
#: The methods each shipped model is measured with: (method, key interval or window).
SEG_RUNS = (("dff", 5), ("frame", 1))
DET_RUNS = {"dff": (("dff", 10),), "fgfa": (("fgfa", 10), ("frame", 0))}


def _seg_rows(name: str, path: Path, video: CityscapesVideo, progress: bool, device: str = "cpu") -> list[dict]:
    model = load_segmenter(path)[0].for_inference(device)
    device = next(model.parameters()).device
    rows = []
    for method, interval in SEG_RUNS:
        results = {}
        for precision in PRECISIONS:
            with autocast(device, autocast_dtype(precision, device, purpose="inference")):
                results[precision] = evaluate_segmentation(model, video, method, interval, progress=progress)
        rows.append({"model": name, "task": "seg", "method": method, "setting": f"l={interval}",
                     "metric": "mIoU", **{p: 100 * r.miou for p, r in results.items()},
                     "delta": 100 * (results["bf16"].miou - results["fp32"].miou), "ci_low": None, "ci_high": None,
                     **{f"fps_{p}": r.fps for p, r in results.items()}})
    return rows


def _det_rows(name: str, path: Path, data: VidDataset, samples: int, progress: bool,
              device: str = "cpu") -> list[dict]:
    model = load_detector(path)[0].for_inference(device)
    truth = ground_truth(data)
    kind = "fgfa" if model.aggregator is not None else "dff"
    rows = []
    for method, setting in DET_RUNS[kind]:
        detections, fps, maps = {}, {}, {}
        for precision in PRECISIONS:
            config = DetStreamConfig(method, key_interval=setting if method == "dff" else 10,
                                     window=setting if method == "fgfa" else 10, precision=precision)
            detections[precision], ms = detect_dataset(model, data, config, progress)
            fps[precision] = 1000 / ms if ms else 0.0
            maps[precision] = 100 * evaluate_vid(detections[precision], truth, len(data.classes)).map
        diff = vid_map_differences(detections["fp32"], detections["bf16"], truth, len(data.classes),
                                   samples=samples)["all"]
        label = {"dff": f"l={setting}", "fgfa": f"{2 * setting + 1} frames", "frame": "-"}[method]
        rows.append({"model": name, "task": "det", "method": method, "setting": label, "metric": "mAP",
                     **maps, "delta": diff.delta, "ci_low": diff.ci_low, "ci_high": diff.ci_high,
                     **{f"fps_{p}": v for p, v in fps.items()}})
    return rows


def _markdown(rows: list[dict], seg_data: str, det_data: str, videos: int, native: bool, device: str = "cpu") -> str:
    where = "this CPU" if device == "cpu" else f"the GPU ({device})"
    lines = ["# bfloat16 inference against float32 (shipped models)", "",
             f"Held-out data: `{seg_data}` (segmentation, the DFF protocol of `featflow eval seg`) and the first "
             f"{videos} videos of `{det_data}` (detection, VID rules). bfloat16 autocast covers N_feat, F, the warp "
             "and the aggregation; the detection heads keep float32 box arithmetic. Frames per second are model "
             f"time on {where}, one run each. "
             + (("This CPU runs bfloat16 natively (AVX512-BF16 / AMX)." if device == "cpu" else
                 "The GPU runs bfloat16 natively.") if native else
                f"{where[0].upper() + where[1:]} has no native bfloat16: the bf16 rows ran in float32 (a fallback)."),
             "",
             "| model | method | metric | fp32 | bf16 | change (points) | fps fp32 | fps bf16 | speed-up |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        interval = (f" [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]" if r["ci_low"] is not None else "")
        speedup = r["fps_bf16"] / r["fps_fp32"] if r["fps_fp32"] else 0.0
        lines.append(f"| {r['model']} | {r['method']} {r['setting']} | {r['metric']} | {r['fp32']:.2f} | "
                     f"{r['bf16']:.2f} | {r['delta']:+.2f}{interval} | {r['fps_fp32']:.1f} | {r['fps_bf16']:.1f} | "
                     f"{speedup:.2f}x |")
    worst = max(abs(r["delta"]) for r in rows)
    lines += ["", f"Target: every change within {TARGET} points. Largest change: {worst:.2f} points "
                  f"({'met' if worst <= TARGET else 'not met'})."]
    return "\n".join(lines)


def run_precision_report(seg_data: str | os.PathLike, det_data: str | os.PathLike, videos: int = 12,
                         report: str | os.PathLike = "reports", command: str = "featflow bench precision",
                         samples: int = 1000, progress: bool = True, device: str = "cpu",
                         stem: str = "precision") -> list[Path]:
    """Every shipped model in float32 and bfloat16 on ``device``; writes ``{stem}.md`` and ``{stem}.json``."""
    video = CityscapesVideo(seg_data, "val")
    data = VidDataset(det_data, "val").first(videos)
    rows: list[dict] = []
    for info in tqdm(shipped_models(), desc="shipped models", disable=not progress):
        if info.task == "seg":
            rows += _seg_rows(info.name, info.path, video, progress, device)
        else:
            rows += _det_rows(info.name, info.path, data, samples, progress, device)
    native = bf16_supported(torch.device(device))
    text = _markdown(rows, str(seg_data), str(det_data), len(data), native, device)
    return write_report(report, stem, text,
                        {"rows": rows, "videos": len(data), "native_bf16": native, "target_points": TARGET,
                         "device": device, "machine": machine_description()}, command)
