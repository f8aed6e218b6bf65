"""What a session with a GPU measures in one call (``bash benchmarks/gpu.sh``, planned to take under 8 minutes on
one GPU), written to ``reports/gpu.md`` and ``reports/gpu.json``:

- the paper-size speed table (random weights): ResNet-101 segmentation at 1024x2048 (per frame and DFF at l=5)
  and detection at 600x1000 (per frame, DFF at l=10, FGFA with 21 frames), each flow net, in float32 and
  bfloat16 autocast (``featflow.analysis.speed``);
- training throughput at the same sizes: images per second of the real training step (the training modules'
  ``training_loss``, backward, SGD) on random batches, for Frame and DFF segmentation and single frame, DFF and
  FGFA detection, in float32 and bfloat16;
- the shipped models' held-out accuracy on the device in both precisions (``benchmarks.precision_report``,
  written as ``precision_gpu.md``), beside this project's CPU figures (``reports/precision.json``).

``--tiny`` runs every part at toy sizes (ResNet-18, 64x128, two iterations) on the CPU: the test, and a dry
run before a device session spends its minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from featflow.analysis.reports import machine_description, write_report
from featflow.analysis.speed import CITYSCAPES_CLASSES, VID_CLASSES, measure_fgfa_speed, measure_speed
from featflow.methods.detection import VideoDetector
from featflow.methods.segmentation import VideoSegmenter
from featflow.modeling.precision import autocast, autocast_dtype

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Sizes:
    """What each part runs at: the papers' sizes, or toy ones (``--tiny``)."""

    feature_net: str = "resnet101"
    channels: int = 1024
    seg_size: tuple[int, int] = (1024, 2048)
    det_size: tuple[int, int] = (600, 1000)
    seg_interval: int = 5
    det_interval: int = 10
    window: int = 10
    flow_nets: tuple[str, ...] = ("flownet", "flownet_inception")
    train_iterations: int = 200
    warmup_iterations: int = 5


PAPER = Sizes()
TINY = Sizes(feature_net="resnet18", channels=64, seg_size=(64, 128), det_size=(64, 128), seg_interval=2,
             det_interval=2, window=1, flow_nets=("flownet_inception",), train_iterations=2, warmup_iterations=1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def speed_rows(sizes: Sizes, device: str, precisions: Sequence[str] = PRECISIONS) -> list[dict]:
    """Per-frame against DFF (both tasks) and FGFA (detection), each flow net, in each precision."""
    rows = []
    dev = torch.device(device)
    for precision in precisions:
        with autocast(dev, autocast_dtype(precision, dev, purpose="inference")):
            for flow_net in sizes.flow_nets:
                for task, size, interval in (("seg", sizes.seg_size, sizes.seg_interval),
                                             ("det", sizes.det_size, sizes.det_interval)):
                    row = measure_speed(task, sizes.feature_net, flow_net, size, interval, device=device)
                    rows.append({"kind": "dff", "precision": precision, **row.to_json()})
                fgfa = measure_fgfa_speed(sizes.feature_net, flow_net, sizes.det_size, sizes.window, device=device)
                rows.append({"kind": "fgfa", "precision": precision, **fgfa.to_json()})
    return rows


def _random_targets(n: int, size: tuple[int, int], num_classes: int, generator: torch.Generator,
                    device: torch.device) -> list[dict[str, torch.Tensor]]:
    """Three boxes of a random class per image, a quarter to a half of the frame on each side."""
    h, w = size
    targets = []
    for _ in range(n):
        wh = torch.rand(3, 2, generator=generator) * 0.25 + 0.25
        x1y1 = torch.rand(3, 2, generator=generator) * (1 - wh)
        boxes = torch.cat([x1y1, x1y1 + wh], 1) * torch.tensor([w, h, w, h])
        labels = torch.randint(1, num_classes + 1, (3,), generator=generator)
        targets.append({"boxes": boxes.to(device), "labels": labels.to(device)})
    return targets


def _training_case(task: str, method: str, sizes: Sizes, device: torch.device
                   ) -> tuple[torch.nn.Module, Callable[[], dict], Callable[[torch.nn.Module, dict], torch.Tensor]]:
    """The paper-sized model of a (task, method), a maker of one random batch (one clip), and its training loss."""
    generator = torch.Generator().manual_seed(0)
    flow_net = None if method == "frame" else sizes.flow_nets[-1]

    def image(*shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=generator) * 255).to(device)

    if task == "seg":
        from featflow.engine.seg_training import training_loss

        model: torch.nn.Module = VideoSegmenter(CITYSCAPES_CLASSES, sizes.feature_net, sizes.channels, flow_net)
        h, w = sizes.seg_size

        count = 0 if flow_net is None else 1  # a clip: per frame none, DFF one key frame

        def seg_batch() -> dict:
            return {"current": image(1, 3, h, w), "references": image(1, count, 3, h, w),
                    "same": torch.zeros(1, count, dtype=torch.bool, device=device),
                    "label": torch.randint(0, CITYSCAPES_CLASSES, (1, h, w), generator=generator).to(device)}

        return model, seg_batch, training_loss
    from featflow.engine.det_training import training_loss as det_loss

    aggregation = "adaptive" if method == "fgfa" else None
    model = VideoDetector(VID_CLASSES, sizes.feature_net, sizes.channels, flow_net, aggregation)
    h, w = sizes.det_size
    references = {"frame": 0, "dff": 1, "fgfa": 2}[method]

    def det_batch() -> dict:
        return {"current": image(1, 3, h, w), "references": image(1, max(references, 1), 3, h, w),
                "same": torch.zeros(1, max(references, 1), dtype=torch.bool, device=device),
                "targets": _random_targets(1, (h, w), VID_CLASSES, generator, device)}

    return model, det_batch, det_loss


def _time_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor], batches: list[dict],
                dtype: torch.dtype | None, device: torch.device, sizes: Sizes) -> tuple[float, list[float]]:
    """Seconds for ``sizes.train_iterations`` training steps (after the warm-up ones), and their losses."""
    def step(batch: dict) -> float:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss = loss_fn(model, batch)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    for i in range(sizes.warmup_iterations):
        step(batches[i % len(batches)])
    _sync(device)
    start = time.perf_counter()
    losses = [step(batches[i % len(batches)]) for i in range(sizes.train_iterations)]
    _sync(device)
    return time.perf_counter() - start, losses


TRAINING_CASES = (("seg", "frame"), ("seg", "dff"), ("det", "frame"), ("det", "dff"), ("det", "fgfa"))


def training_rows(sizes: Sizes, device: str, precisions: Sequence[str] = PRECISIONS,
                  cases: Sequence[tuple[str, str]] = TRAINING_CASES) -> list[dict]:
    """Images per second of each case's training step (one clip per step, as the papers train per GPU)."""
    dev = torch.device(device)
    rows = []
    for task, method in cases:
        torch.manual_seed(0)
        model, make_batch, loss_fn = _training_case(task, method, sizes, dev)
        model.to(dev).train()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-5, momentum=0.9)
        batches = [make_batch() for _ in range(2)]
        for precision in precisions:
            seconds, losses = _time_steps(model, optimizer, loss_fn, batches, autocast_dtype(precision, dev), dev,
                                          sizes)
            size = sizes.seg_size if task == "seg" else sizes.det_size
            rows.append({"task": task, "method": method, "precision": precision, "size": list(size),
                         "feature_net": sizes.feature_net, "iterations": sizes.train_iterations,
                         "images_per_second": sizes.train_iterations / seconds,
                         "ms_per_iteration": 1000 * seconds / sizes.train_iterations,
                         "loss_finite": all(math.isfinite(v) for v in losses)})
        del model, optimizer
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _markdown(speed: list[dict], training: list[dict], accuracy: list[dict], cpu_accuracy: list[dict],
              device_name: str, tiny: bool) -> str:
    lines = [f"# On a GPU: speed, training throughput and accuracy ({device_name})", "",
             ("A dry run at toy sizes on the CPU (`--tiny`): the figures only show that every part runs."
              if tiny else "Measured in one call of `bash benchmarks/gpu.sh`; random weights for speed and training, "
                           "the shipped weights for accuracy."), "",
             "## Speed (random weights)", "",
             "| task | method | flow net | size | precision | per-frame fps | method fps | speed-up or cost |",
             "|---|---|---|---|---|---|---|---|"]
    for r in speed:
        size = f"{r['size'][0]}x{r['size'][1]}"
        if r["kind"] == "dff":
            lines.append(f"| {r['task']} | DFF l={r['key_interval']} | {r['flow_net']} | {size} | {r['precision']} | "
                         f"{r['per_frame_fps']:.1f} | {r['dff_fps']:.1f} | {r['speedup']:.2f}x faster |")
        else:
            lines.append(f"| det | FGFA {2 * r['window'] + 1} frames | {r['flow_net']} | {size} | {r['precision']} | "
                         f"{1000 / r['per_frame_ms']:.1f} | {1000 / r['ms_per_frame']:.1f} | "
                         f"{r['ms_per_frame'] / r['per_frame_ms']:.2f}x the cost |")
    lines += ["", "## Training throughput (random batches, one clip per step)", "",
              "| task | method | size | precision | images/s | ms / iteration | loss finite |",
              "|---|---|---|---|---|---|---|"]
    for r in training:
        lines.append(f"| {r['task']} | {r['method']} | {r['size'][0]}x{r['size'][1]} | {r['precision']} | "
                     f"{r['images_per_second']:.2f} | {r['ms_per_iteration']:.0f} | {r['loss_finite']} |")
    if accuracy:
        cpu = {(r["model"], r["method"], r["setting"]): r for r in cpu_accuracy}
        lines += ["", "## Shipped models' held-out accuracy on the device, against the CPU", "",
                  "| model | method | metric | GPU fp32 | GPU bf16 | CPU fp32 | GPU fp32 - CPU fp32 |",
                  "|---|---|---|---|---|---|---|"]
        for r in accuracy:
            ref = cpu.get((r["model"], r["method"], r["setting"]))
            on_cpu, change = ("-", "-") if ref is None else (f"{ref['fp32']:.2f}", f"{r['fp32'] - ref['fp32']:+.2f}")
            lines.append(f"| {r['model']} | {r['method']} {r['setting']} | {r['metric']} | {r['fp32']:.2f} | "
                         f"{r['bf16']:.2f} | {on_cpu} | {change} |")
    return "\n".join(lines)


def run_gpu_check(device: str = "cuda", report: str | Path = "reports", tiny: bool = False,
                  seg_data: str | None = "data/cityscapes_synth_val", det_data: str | None = "data/vid_synth_val",
                  videos: int = 12, command: str = "bash benchmarks/gpu.sh") -> list[Path]:
    """Every part; the accuracy part only where both held-out sets exist."""
    sizes = TINY if tiny else PAPER
    speed = speed_rows(sizes, device)
    training = training_rows(sizes, device)
    accuracy: list[dict] = []
    cpu_accuracy: list[dict] = []
    report = Path(report)
    if seg_data and det_data and Path(seg_data).is_dir() and Path(det_data).is_dir():
        from benchmarks.precision_report import run_precision_report

        run_precision_report(seg_data, det_data, videos, report, command, samples=200, progress=False,
                             device=device, stem="precision_gpu")
        accuracy = json.loads((report / "precision_gpu.json").read_text())["rows"]
        cpu_file = Path("reports") / "precision.json"
        cpu_accuracy = json.loads(cpu_file.read_text())["rows"] if cpu_file.is_file() else []
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "CPU"
    return write_report(report, "gpu", _markdown(speed, training, accuracy, cpu_accuracy, name, tiny),
                        {"device": name, "tiny": tiny, "speed": speed, "training": training, "accuracy": accuracy,
                         "machine": machine_description()}, command)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--report", type=Path, default=Path("reports"))
    parser.add_argument("--tiny", action="store_true", help="toy sizes, a dry run (on the CPU)")
    parser.add_argument("--seg-data", default="data/cityscapes_synth_val")
    parser.add_argument("--det-data", default="data/vid_synth_val")
    parser.add_argument("--videos", type=int, default=12)
    args = parser.parse_args(argv)
    for path in run_gpu_check(args.device, args.report, args.tiny, args.seg_data, args.det_data, args.videos):
        print(path)


if __name__ == "__main__":
    main()
