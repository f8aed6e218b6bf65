"""The flow benchmark behind ``reports/flow.md``: trained flow nets against zero flow and OpenCV on
held-out synthetic pairs (end-point error at full resolution, wall time per pair on this machine)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from featflow.analysis.reports import machine_description, save_figure, write_report  # noqa: E402
from featflow.data.synthetic import Degradations, SynthConfig  # noqa: E402
from featflow.engine.checkpoint import load_flow_net, shipped_flow_weights  # noqa: E402
from featflow.engine.flow_inference import FlowNetEstimator  # noqa: E402
from featflow.errors import FeatflowError
from featflow.evaluation.flow_metrics import FlowScore, evaluate_flow, held_out_pairs  # noqa: E402
from featflow.modeling.shallow_flow import DISFlow, FarnebackFlow, zero_flow  # noqa: E402

CONDITIONS = {"degraded": Degradations(), "clean": Degradations.off()}
REFERENCE = "DIS medium"


def _methods(weights: dict[str, Path]) -> tuple[dict[str, object], dict[str, dict]]:
    methods: dict[str, object] = {"zero flow": zero_flow, "DIS ultrafast": DISFlow("ultrafast"),
                                  REFERENCE: DISFlow("medium"), "Farneback": FarnebackFlow()}
    trained: dict[str, dict] = {}
    for name, path in weights.items():
        net, meta = load_flow_net(path)
        config = json.loads(meta.get("config", "{}"))
        trained[name] = {"weights": str(path), "model": meta["featflow.model"],
                         "iterations": int(meta.get("iterations", 0)), "config": config}
        methods[name] = FlowNetEstimator(net, stride=8)
        methods[f"{name} (stride 16, as DFF warps)"] = FlowNetEstimator(net, stride=16)
    return methods, trained


def _plot(path: Path, scores: dict[str, dict[str, FlowScore]]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, score in scores["degraded"].items():
        if name == "zero flow":
            ax.axhline(score.epe, color="grey", linestyle=":", label="zero flow")
            continue
        ax.scatter(score.seconds_per_pair * 1000, score.epe, s=40)
        ax.annotate(name, (score.seconds_per_pair * 1000, score.epe), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("time per pair on this CPU (ms, log scale)")
    ax.set_ylabel("end-point error (px), degraded pairs")
    ax.set_title("Flow accuracy against cost (held-out synthetic pairs)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def _markdown(scores: dict[str, dict[str, FlowScore]], trained: dict[str, dict], pairs: int,
              size: tuple[int, int], shipped: str | None) -> str:
    lines = [
        "# Flow pre-training: end-point error on held-out synthetic pairs",
        "",
        f"{pairs} held-out pairs per condition ({size[0]}x{size[1]}, split `test`, one pair per video, key-frame "
        "gap 1..9 frames either way), flow from the current frame to the key frame. EPE in pixels at full "
        "resolution, over all pixels and over the pixels visible in both frames; *degraded* uses the default "
        "degradations (motion blur, defocus, noise, flicker, occluders), *clean* none. Time: mean wall time per "
        "pair on this machine's CPU (flow nets with 2 threads, including their preprocessing and upsampling).",
        "",
        "| method | EPE degraded | EPE degraded, visible | EPE clean | EPE clean, visible | ms / pair |",
        "|---|---|---|---|---|---|",
    ]
    for name in scores["degraded"]:
        d, c = scores["degraded"][name], scores["clean"][name]
        lines.append(f"| {name} | {d.epe:.3f} | {d.epe_valid:.3f} | {c.epe:.3f} | {c.epe_valid:.3f} | "
                     f"{1000 * d.seconds_per_pair:.1f} |")
    if trained:
        lines += ["", "Trained networks, all from scratch on synthetic pairs on this CPU with "
                      "`featflow train flow --config NAME --iterations N --time-limit MIN` (the packaged configs; "
                      "training stops at whichever limit comes first, the learning rate decaying to match):", "",
                  "| name | network | iterations done | limits (iterations, minutes) | batch | training size "
                  "| weights |",
                  "|---|---|---|---|---|---|---|"]
        for name, info in trained.items():
            cfg = info["config"]
            train = cfg.get("train", {})
            lines.append(f"| {name} | {info['model']} | {info['iterations']} | {train.get('iterations', '?')}, "
                         f"{train.get('time_limit_minutes', '-')} | {train.get('batch_size', '?')} "
                         f"| {'x'.join(map(str, cfg.get('data', {}).get('size', [])))} | `{info['weights']}` |")
    if shipped is not None:
        lines += ["", "## Against the target", ""]
        for condition in CONDITIONS:
            ours, ref = scores[condition][shipped].epe, scores[condition][REFERENCE].epe
            if ours < ref:
                lines.append(f"- {condition}: the shipped net ({shipped}) beats {REFERENCE}: "
                             f"{ours:.3f} vs {ref:.3f} px ({100 * (ref - ours) / ref:.1f}% lower).")
            else:
                lines.append(f"- {condition}: the shipped net ({shipped}) falls short of {REFERENCE} by "
                             f"{ours - ref:.3f} px ({ours:.3f} vs {ref:.3f}, {100 * (ours - ref) / ref:.1f}% higher).")
        if any(scores[c][shipped].epe >= scores[c][REFERENCE].epe for c in CONDITIONS):
            lines += ["", "What would close the gap (not yet tried here):", "",
                      "- Longer training. The nets above had minutes to an hour and a half on 2 CPU cores; FlowNet was "
                      "trained for hundreds of thousands of iterations on a GPU. See each run's validation EPE "
                      "history (`runs/flow/NAME/metrics.json`): where it still falls at the end, more iterations help.",
                      "- Finer output. The nets see the frames at half resolution and predict flow at 1/8 of the "
                      "full resolution, upsampled bilinearly: motion boundaries and small objects blur. DIS refines "
                      "at full resolution. A refinement stage at 1/4 or 1/2 resolution (as FlowNet 2.0 and PWC-Net "
                      "do) would help the `flow` command; DFF itself only needs stride 16.",
                      "- Matching costs. FlowNetSimple has to learn correspondence from stacked frames; a "
                      "correlation layer (FlowNetC, PWC-Net) gives it directly and trains faster."]
    return "\n".join(lines)


def run_flow_benchmark(weights: dict[str, str | os.PathLike] | None, pairs: int = 100,
                       size: tuple[int, int] = (256, 512), seed: int = 0, report: str | os.PathLike = "reports",
                       command: str = "featflow bench flow", progress: bool = True) -> list[Path]:
    """Evaluate every method on clean and degraded held-out pairs; write flow.md / flow.json / flow.png."""
    if pairs < 1:
        raise FeatflowError("--pairs must be at least 1")
    weights = {k: Path(v) for k, v in (weights or {"shipped": shipped_flow_weights()}).items()}
    shipped_name = next((k for k, v in weights.items() if v.resolve() == shipped_flow_weights().resolve()), None)
    methods, trained = _methods(weights)
    scores: dict[str, dict[str, FlowScore]] = {}
    for condition, degradations in CONDITIONS.items():
        config = SynthConfig(height=size[0], width=size[1], degradations=degradations)
        data = held_out_pairs(config, pairs, seed=seed, split="test")
        scores[condition] = {name: evaluate_flow(est, data, desc=f"{condition}: {name}", progress=progress)
                             for name, est in methods.items()}
    report = Path(report)
    _plot(report / "flow.png", scores)
    markdown = _markdown(scores, trained, pairs, size, shipped_name) + "\n\n![EPE against time](flow.png)"
    data = {"pairs": pairs, "size": list(size), "seed": seed, "machine": machine_description(), "trained": trained,
            "scores": {c: {n: asdict(s) for n, s in by.items()} for c, by in scores.items()},
            "reference": REFERENCE, "shipped": shipped_name}
    return write_report(report, "flow", markdown, data, command) + [report / "flow.png"]
