"""bfloat16 against float32 inference for every shipped model, behind ``reports/precision.md``.

Each shipped model runs its headline methods (segmenter: DFF at l=5 where it has F, and per frame, the DFF protocol
of ``featflow eval seg``; DFF detector: DFF at l=10; FGFA detector: FGFA with 21 frames and per frame; single-frame
detector: per frame) on the held-out data of the report its figures come from (``models.json``'s
``benchmark.source``, whose plan names the folder; the command line's folders otherwise), once in float32 and once
with bfloat16 autocast (``featflow.modeling.precision``). The report gives each
model's accuracy in both, the change in points (detection: with a paired 95% bootstrap interval over videos), and
frames per second (model time, decoding excluded). The target is a change within 0.3 points.
"""

from __future__ import annotations

import json
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
from featflow.errors import FeatflowError
from featflow.evaluation.bootstrap import vid_map_differences
from featflow.evaluation.vid_map import evaluate_vid
from featflow.modeling.precision import autocast, autocast_dtype, bf16_supported
from featflow.registry import ModelInfo, shipped_models

PRECISIONS = ("fp32", "bf16")
TARGET = 0.3  # points


def model_runs(info: ModelInfo) -> tuple[tuple[str, int], ...]:
    """The methods a shipped model is measured with, by what it holds: (method, key interval or window)."""
    if info.task == "seg":
        return (("dff", 5), ("frame", 1)) if "dff" in info.methods else (("frame", 1),)
    if "fgfa" in info.methods:
        return (("fgfa", 10), ("frame", 0))
    return (("dff", 10),) if "dff" in info.methods else (("frame", 0),)


def held_out_data(info: ModelInfo, fallback: str | os.PathLike) -> Path:
    """The held-out folder of the report a shipped model's figures come from (its plan's ``data``), else
    ``fallback``; a folder that is missing raises ``FeatflowError`` naming the report and how it was generated."""
    source = Path(str(info.benchmark.get("source", "")).split(",")[0].strip())
    plan = json.loads(source.read_text()).get("plan", {}) if source.suffix == ".json" and source.is_file() else {}
    folder = Path(plan.get("data") or fallback)
    if not folder.is_dir():
        origin = f" (the held-out set of {source}: {plan.get('seed_note') or 'see its plan'})" if plan else ""
        raise FeatflowError(f"{folder}: no such folder{origin}; generate it with featflow synth")
    return folder


def _seg_rows(info: ModelInfo, video: CityscapesVideo, progress: bool, device: str = "cpu") -> list[dict]:
    name, model = info.name, load_segmenter(info.path)[0].for_inference(device)
    device = next(model.parameters()).device
    rows = []
    for method, interval in model_runs(info):
        results = {}
        for precision in PRECISIONS:
            with autocast(device, autocast_dtype(precision, device, purpose="inference")):
                results[precision] = evaluate_segmentation(model, video, method, interval, progress=progress)
        rows.append({"model": name, "task": "seg", "method": method, "setting": f"l={interval}",
                     "data": str(video.root),
                     "metric": "mIoU", **{p: 100 * r.miou for p, r in results.items()},
                     "delta": 100 * (results["bf16"].miou - results["fp32"].miou), "ci_low": None, "ci_high": None,
                     **{f"fps_{p}": r.fps for p, r in results.items()}})
    return rows


def _det_rows(info: ModelInfo, data: VidDataset, samples: int, progress: bool, device: str = "cpu") -> list[dict]:
    name, model = info.name, load_detector(info.path)[0].for_inference(device)
    truth = ground_truth(data)
    rows = []
    for method, setting in model_runs(info):
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
                     "data": str(data.root), "videos": len(data),
                     **maps, "delta": diff.delta, "ci_low": diff.ci_low, "ci_high": diff.ci_high,
                     **{f"fps_{p}": v for p, v in fps.items()}})
    return rows


def _markdown(rows: list[dict], videos: int, native: bool, device: str = "cpu") -> str:
    where = "this CPU" if device == "cpu" else f"the GPU ({device})"
    lines = ["# bfloat16 inference against float32 (shipped models)", "",
             "Held-out data: each model's own, that of the report its figures come from (column *data*; "
             f"segmentation: the DFF protocol of `featflow eval seg`; detection: the first {videos} videos, VID "
             "rules). bfloat16 autocast covers N_feat, F, the warp "
             "and the aggregation; the detection heads keep float32 box arithmetic. Frames per second are model "
             f"time on {where}, one run each. "
             + (("This CPU runs bfloat16 natively (AVX512-BF16 / AMX)." if device == "cpu" else
                 "The GPU runs bfloat16 natively.") if native else
                f"{where[0].upper() + where[1:]} has no native bfloat16: the bf16 rows ran in float32 (a fallback)."),
             "",
             "| model | data | method | metric | fp32 | bf16 | change (points) | fps fp32 | fps bf16 | speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        interval = (f" [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]" if r["ci_low"] is not None else "")
        speedup = r["fps_bf16"] / r["fps_fp32"] if r["fps_fp32"] else 0.0
        lines.append(f"| {r['model']} | `{r['data']}` | {r['method']} {r['setting']} | {r['metric']} | "
                     f"{r['fp32']:.2f} | {r['bf16']:.2f} | {r['delta']:+.2f}{interval} | {r['fps_fp32']:.1f} | "
                     f"{r['fps_bf16']:.1f} | {speedup:.2f}x |")
    worst = max(abs(r["delta"]) for r in rows)
    lines += ["", f"Target: every change within {TARGET} points. Largest change: {worst:.2f} points "
                  f"({'met' if worst <= TARGET else 'not met'})."]
    return "\n".join(lines)


def run_precision_report(seg_data: str | os.PathLike, det_data: str | os.PathLike, videos: int = 12,
                         report: str | os.PathLike = "reports", command: str = "featflow bench precision",
                         samples: int = 1000, progress: bool = True, device: str = "cpu",
                         stem: str = "precision") -> list[Path]:
    """Every shipped model in float32 and bfloat16 on ``device``, each on its own report's held-out data (the
    first ``videos`` videos for detection; ``seg_data`` / ``det_data`` where its report names none); writes
    ``{stem}.md`` and ``{stem}.json``."""
    models = shipped_models()
    folders = {info.name: held_out_data(info, seg_data if info.task == "seg" else det_data) for info in models}
    sets: dict[Path, CityscapesVideo | VidDataset] = {}  # each folder read once
    rows: list[dict] = []
    for info in tqdm(models, desc="shipped models", disable=not progress):
        folder = folders[info.name]
        if info.task == "seg":
            video = sets.setdefault(folder, CityscapesVideo(folder, "val"))
            rows += _seg_rows(info, video, progress, device)
        else:
            data = sets.setdefault(folder, VidDataset(folder, "val").first(videos))
            rows += _det_rows(info, data, samples, progress, device)
    native = bf16_supported(torch.device(device))
    text = _markdown(rows, videos, native, device)
    return write_report(report, stem, text,
                        {"rows": rows, "videos": videos, "native_bf16": native, "target_points": TARGET,
                         "device": device, "machine": machine_description()}, command)
