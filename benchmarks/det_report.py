"""The detection benchmark behind ``reports/detection.md``.

From a plan (YAML) naming the trained checkpoints and the held-out VID-layout data:
- the seed's FGFA ablation table: single frame; aggregation without flow and without adaptive weights;
  without flow; FGFA; FGFA without end-to-end training: mAP all / slow / medium / fast and ms per frame;
- the Table 4 analogue: single frame and FGFA, each alone and with MGP, tubelet rescoring and Seq-NMS
  (post-processing runs on the same raw detections);
- DFF at key interval l against single frame: mAP and speedup;
- the frame-count table: FGFA with 1, 5, ..., 21 test frames against mAP and runtime;
- speed at the paper's size (random weights, ``featflow.analysis.speed``): single frame, DFF at l with each
  flow net, FGFA with 2K+1 frames;
- every difference the tables show (each row against single frame, each ablation row against FGFA, 2K+1
  test frames against 1), per motion category, with a 95% paired bootstrap interval over held-out videos;
- with ``appearance`` (featflow's synthetic data only): mAP per appearance group of the ground-truth boxes
  (clear, mild, strongly deteriorated with or without a better view nearby; ``benchmarks.appearance``),
  single frame's mAP per deterioration type and level, and each row's difference from single frame per group;
- the models' training: each run's budget summed along its init chain, its held-out curve, and whether it
  plateaued (the last quarter of training raised the held-out mAP by less than a point).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.appearance import appearance_lines, appearance_results  # noqa: E402
from benchmarks.cells import difference, percent  # noqa: E402
from benchmarks.detection_cache import DetectionCache, entry_key  # noqa: E402
from benchmarks.training import curves_plot, earlier_records, plateau_gain, training_lines, training_records  # noqa: E402
from featflow.analysis.reports import machine_description, save_figure, write_report  # noqa: E402
from featflow.analysis.speed import measure_fgfa_speed, measure_speed  # noqa: E402
from featflow.data.vid import VidDataset  # noqa: E402
from featflow.engine.checkpoint import load_detector  # noqa: E402
from featflow.engine.det_inference import DetStreamConfig, detect_dataset, ground_truth, postprocess_video  # noqa: E402
from featflow.errors import FeatflowError  # noqa: E402
from featflow.evaluation.bootstrap import vid_map_differences  # noqa: E402
from featflow.evaluation.vid_map import evaluate_vid  # noqa: E402
from featflow.structures import Detections, VideoDetections, VideoGroundTruth  # noqa: E402


@dataclass(frozen=True)
class DetRowPlan:
    name: str
    weights: str
    method: str = "frame"  # frame | dff | fgfa
    postprocess: str | None = None


@dataclass(frozen=True)
class DetSpeedPlan:
    feature_net: str = "resnet101"
    flow_nets: tuple[str, ...] = ("flownet", "flownet_half", "flownet_inception")
    size: tuple[int, int] = (600, 1000)
    key_interval: int = 10
    window: int = 10
    fgfa_flow_nets: tuple[str, ...] = ("flownet", "flownet_inception")
    frames: int | None = None


@dataclass(frozen=True)
class DetReportPlan:
    data: str
    split: str = "val"
    videos: int | None = None  # the first N videos of the split (None: all)
    key_interval: int = 10  # DFF
    window: int = 10  # FGFA: 2K+1 test frames
    ablation: tuple[DetRowPlan, ...] = ()
    ablation_title: str = "The seed's FGFA ablation table"  # the heading of the ablation rows' table
    postprocessing: tuple[DetRowPlan, ...] = ()
    dff: tuple[DetRowPlan, ...] = ()
    frame_count_weights: str | None = None  # an FGFA checkpoint for the frame-count table
    frame_count_windows: tuple[int, ...] = (0, 2, 4, 6, 8, 10)
    speed: DetSpeedPlan = field(default_factory=DetSpeedPlan)
    bootstrap_samples: int = 1000  # resamples of the held-out videos for each difference's 95% interval
    appearance: bool = False  # accuracy by appearance group (data written by featflow synth only)
    stem: str = "detection"  # the report's file names: {stem}.md, {stem}.json, {stem}.png, {stem}_curves.png
    seed_note: str = ""  # how the held-out data was made (its generator seed), quoted in the report
    # report JSONs whose training records describe checkpoints whose run folder is gone (a shipped model's run):
    # what each row's budget sums along its init chain when runs/ no longer holds the start
    earlier_training: tuple[str, ...] = ()
    # what the tables show, written by whoever ran them (the report prints it under "What the tables show")
    findings: tuple[str, ...] = ()


class WeightProbe:
    """FGFA's weights as a stream computes them: over every aggregation of a run, the mean weight of the current
    frame and the mean cosine of the other frames with it. With 2K+1 frames, 1 / (2K+1) means a plain average.
    Reads the aggregator's inputs (a forward pre-hook); nothing changes in what it computes."""

    def __init__(self, aggregator: torch.nn.Module | None, config: DetStreamConfig) -> None:
        self.online, self.sums, self.count = config.online, {"current_weight": 0.0, "reference_cosine": 0.0}, 0
        adaptive = aggregator is not None and getattr(aggregator, "adaptive", False)
        self.handle = aggregator.register_forward_pre_hook(self._on_aggregate) if adaptive else None

    def _on_aggregate(self, module: torch.nn.Module, inputs: tuple) -> None:
        similarities = list(inputs[1])
        if len(similarities) < 2:
            return
        own = len(similarities) - 1 if self.online else len(similarities) // 2  # the current frame's position
        weights = module.weights(similarities)  # (N, T, 1, h, w)
        cosines = torch.stack(similarities, 1)[:, :, :1].float()  # (N, T, 1, h, w); a quality logit is channel 1
        others = torch.cat([cosines[:, :own], cosines[:, own + 1:]], 1)
        self.sums["current_weight"] += weights[:, own].mean().item()
        self.sums["reference_cosine"] += others.mean().item()
        self.count += 1

    def close(self) -> dict[str, float]:
        """Stop listening; the means (empty when nothing was aggregated with adaptive weights)."""
        if self.handle is not None:
            self.handle.remove()
        if not self.count:
            return {}
        return {k: v / self.count for k, v in self.sums.items()}


class _Runner:
    """Evaluates rows, running each (weights, stream config) once and post-processing its raw detections."""

    def __init__(self, data: VidDataset, progress: bool, cache: DetectionCache | None = None) -> None:
        self.data, self.progress, self.cache = data, progress, cache
        self.truth: list[VideoGroundTruth] = ground_truth(data)
        self.raw: dict[tuple[str, DetStreamConfig], tuple[list[VideoDetections], float, dict]] = {}
        self.detections: dict[str, list[VideoDetections]] = {}  # by row name, post-processing applied

    def row(self, name: str, weights: str, config: DetStreamConfig, postprocess: str | None = None) -> dict:
        key = (weights, config)
        if key not in self.raw:
            self.raw[key] = self._detect(weights, config)
        detections, ms, stats = self.raw[key]
        if postprocess is not None:
            detections = [postprocess_video(d, postprocess, [self.data.image(v, t) for t in range(len(d))]
                                            if postprocess == "mgp" else None) for v, d in enumerate(detections)]
        self.detections[name] = detections
        result = evaluate_vid(detections, self.truth, len(self.data.classes))
        return {"name": name, "weights": weights, "method": config.method, "key_interval": config.key_interval,
                "window": config.window, "postprocess": postprocess, "ms_per_frame": ms, **result.to_json(),
                **({"aggregation_weights": stats} if stats else {})}


    def _detect(self, weights: str, config: DetStreamConfig) -> tuple[list[VideoDetections], float, dict]:
        """Raw detections, ms per frame and FGFA's weight statistics (``WeightProbe``): from the cache when it
        holds this run, else by running the model."""
        entry = entry_key(weights, config, self.data) if self.cache is not None else None
        cached = self.cache.get(entry) if self.cache is not None and entry is not None else None
        if cached is not None:
            return cached
        model = load_detector(weights)[0].for_inference()
        probe = WeightProbe(model.aggregator, config) if config.method == "fgfa" else None
        try:
            detections, ms = detect_dataset(model, self.data, config, self.progress)
        finally:
            stats = probe.close() if probe is not None else {}
        if self.cache is not None and entry is not None:
            self.cache.put(entry, detections, ms, stats)
        return detections, ms, stats

    def compare(self, base: str, other: str, samples: int) -> dict:
        """mAP(other) - mAP(base) per category, in points, with paired 95% bootstrap intervals over videos."""
        diffs = vid_map_differences(self.detections[base], self.detections[other], self.truth,
                                    len(self.data.classes), samples=samples)
        return {"base": base, "other": other, **{c: d.to_json() for c, d in diffs.items()}}


def _comparisons(runner: _Runner, results: dict, samples: int) -> list[dict]:
    """The differences the tables show: every row against single frame, ablation rows against FGFA,
    post-processed rows against their raw row, and 2K+1 test frames against one."""
    names = {r["name"]: r for group in ("ablation", "postprocessing", "dff") for r in results[group]}
    single = next((r["name"] for r in results["ablation"] + results["postprocessing"] if r["method"] == "frame"
                   and r["postprocess"] is None), None)
    pairs: list[tuple[str, str]] = []
    if single:
        pairs += [(single, n) for n, r in names.items() if n != single and r["postprocess"] is None]
    if "FGFA" in names:
        pairs += [("FGFA", r["name"]) for r in results["ablation"] if r["name"] not in ("FGFA", single)]
    for r in results["postprocessing"]:
        base = next((b["name"] for b in results["postprocessing"] if b["weights"] == r["weights"]
                     and b["method"] == r["method"] and b["postprocess"] is None), None)
        if r["postprocess"] and base:
            pairs.append((base, r["name"]))
    counts = results["frame_counts"]
    if len(counts) > 1:
        pairs.append((counts[0]["name"], counts[-1]["name"]))
    return [runner.compare(a, b, samples) for a, b in dict.fromkeys(pairs)]



def _comparison_lines(comparisons: list[dict]) -> list[str]:
    lines = ["", "## Differences with 95% bootstrap intervals", "",
             "mAP points, other minus base; the interval resamples held-out videos (paired: both rows see the same "
             "resampled videos). A difference whose interval contains 0 is not a result.", "",
             "| other | base | all | slow | medium | fast |", "|---|---|---|---|---|---|"]
    for c in comparisons:
        lines.append(f"| {c['other']} | {c['base']} | " + " | ".join(difference(c[k]) for k in
                                                                      ("all", "slow", "medium", "fast")) + " |")
    return lines


def _config(plan: DetReportPlan, method: str, window: int | None = None) -> DetStreamConfig:
    return DetStreamConfig(method, plan.key_interval, plan.window if window is None else window)



def _map_table(rows: list[dict], extra: str = "") -> list[str]:
    lines = [f"| method | mAP (%) | slow | medium | fast | ms / frame |{extra}", "|---|---|---|---|---|---|"
             + ("---|" if extra else "")]
    for r in rows:
        lines.append(f"| {r['name']} | {percent(r['map'])} | {percent(r['slow'])} | {percent(r['medium'])} | "
                     f"{percent(r['fast'])} | {r['ms_per_frame']:.0f} |"
                     + (f" {r.get('extra', '')} |" if extra else ""))
    return lines


def _plot(path: Path, counts: list[dict]) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    frames = [2 * r["window"] + 1 for r in counts]
    ax.plot(frames, [100 * (r["map"] or 0) for r in counts], marker="o", label="mAP (all)")
    ax.plot(frames, [100 * (r["fast"] or 0) for r in counts], marker="s", label="mAP (fast)")
    ax.set_xlabel("test frames aggregated (2K+1)")
    ax.set_ylabel("mAP (%)")
    twin = ax.twinx()
    twin.plot(frames, [r["ms_per_frame"] for r in counts], color="grey", linestyle=":", marker="^", label="ms / frame")
    twin.set_ylabel("ms per frame (this CPU)")
    ax.set_title("FGFA: test frames against accuracy and runtime")
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def _markdown(plan: DetReportPlan, data: VidDataset, total: int, results: dict) -> str:
    frames = sum(data.num_frames(v) for v in range(len(data)))
    gt = results["num_gt"]
    lines = ["# Video object detection: single frame, DFF, FGFA and box-level post-processing", "",
             f"Held-out data: {len(data)} videos ({frames} frames) of `{plan.data}` (split `{plan.split}`"
             + (f"; {plan.seed_note}" if plan.seed_note else "")
             + (f", its first {len(data)} of {total} videos" if len(data) < total else "") + ", ImageNet VID "
             f"layout), ground-truth boxes: {gt['all']} (slow {gt['slow']}, medium {gt['medium']}, fast {gt['fast']}). "
             "Small models trained here on the CPU (configs in `featflow/configs/det/`). mAP@0.5 with the VID rules "
             "(small-box threshold, +1 pixel convention, VOC all-point AP) and the motion categories from ground-truth "
             f"tracks. FGFA aggregates {2 * plan.window + 1} frames (offline, ends padded); DFF uses key interval "
             f"{plan.key_interval}. ms / frame: model time on this CPU (decoding and post-processing excluded)."]
    if plan.findings:
        lines += ["", "## What the tables show", ""] + [f"- {finding}" for finding in plan.findings]
    single = next((r for r in results["ablation"] if r["method"] == "frame"), None)
    fgfa = next((r for r in results["ablation"] if r["name"] == "FGFA"), None)
    if results["ablation"]:
        lines += ["", f"## {plan.ablation_title}", ""] + _map_table(results["ablation"])
        if single and fgfa:
            gains = {c: (fgfa[c] or 0) - (single[c] or 0) for c in ("map", "slow", "medium", "fast")}
            lines += ["", f"- FGFA (FlowNet Inception) gains {100 * gains['map']:+.1f} mAP over single frame (target: "
                          f"at least +2.9, the paper's gain); slow {100 * gains['slow']:+.1f}, medium "
                          f"{100 * gains['medium']:+.1f}, fast {100 * gains['fast']:+.1f}."]
            flownet = next((r for r in results["ablation"] if r["name"] == "FGFA with FlowNet"), None)
            if flownet:
                lines.append(f"- With FlowNet the gain is {100 * ((flownet['map'] or 0) - (single['map'] or 0)):+.1f}; "
                             f"FlowNet Inception's gain is {100 * ((fgfa['map'] or 0) - (flownet['map'] or 0)):+.1f} "
                             "against it (target: within 0.5).")
    probed = [r for group in ("ablation", "frame_counts") for r in results[group] if r.get("aggregation_weights")]
    if probed:
        lines += ["", "## FGFA's adaptive weights at test", "",
                  "Over every aggregation of the run: the current frame's mean weight (a plain average of 2K+1 "
                  "frames gives 1 / (2K+1)) and the other frames' mean cosine with it.", "",
                  "| row | test frames | current frame's weight | plain average | other frames' cosine |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['name']} | {2 * r['window'] + 1} | {r['aggregation_weights']['current_weight']:.3f} | "
                  f"{1 / (2 * r['window'] + 1):.3f} | {r['aggregation_weights']['reference_cosine']:.3f} |"
                  for r in probed]
    if results["postprocessing"]:
        lines += ["", "## Box-level post-processing (the seed's Table 4)", ""] + _map_table(results["postprocessing"])
    if results["dff"]:
        lines += ["", f"## DFF at l={plan.key_interval} against single frame", ""]
        rows = results["dff"]
        for r in rows:
            r["extra"] = f"{single['ms_per_frame'] / r['ms_per_frame']:.2f}x" if single else ""
        lines += _map_table(rows, " speedup vs single frame |")
        if single:
            for r in rows:
                lines.append(f"- {r['name']}: {100 * ((single['map'] or 0) - (r['map'] or 0)):.1f} mAP below single "
                             f"frame (target: at most 1.0; paper 0.8).")
    if results["frame_counts"]:
        lines += ["", "## Test frames against accuracy and runtime (FGFA)", "",
                  "| test frames | mAP (%) | fast | ms / frame |", "|---|---|---|---|"]
        for r in results["frame_counts"]:
            lines.append(f"| {2 * r['window'] + 1} | {percent(r['map'])} | {percent(r['fast'])} | "
                         f"{r['ms_per_frame']:.0f} |")
        lines += ["", f"![frame count]({plan.stem}.png)"]
    if results["speed"]:
        s = results["speed"]
        lines += ["", f"## Speed at the paper's size ({plan.speed.size[0]}x{plan.speed.size[1]}, "
                      f"{plan.speed.feature_net}, random weights, one run)", "",
                  "| method | ms / frame | against single frame |", "|---|---|---|"]
        for r in s["dff"]:
            lines.append(f"| DFF l={r['key_interval']} + {r['flow_net']} | {1000 / r['dff_fps']:.0f} | "
                         f"{r['speedup']:.2f}x faster |")
        for r in s["fgfa"]:
            lines.append(f"| FGFA {2 * r['window'] + 1} frames + {r['flow_net']} | {r['ms_per_frame']:.0f} | "
                         f"{r['cost_ratio']:.2f}x the cost |")
        if s["dff"]:
            lines.append(f"| single frame | {1000 / s['dff'][0]['per_frame_fps']:.0f} | 1.00x |")
        lines += ["", "Targets: DFF at l=10 at least 7x faster than single frame with FlowNet Inception "
                      "(paper: 5x with FlowNet); FGFA with 21 frames at most 2.5x a single frame with FlowNet "
                      "(paper 2.55x) and at most 1.5x with FlowNet Inception."]
    if results.get("comparisons"):
        lines += _comparison_lines(results["comparisons"])
    if results.get("appearance"):
        lines += appearance_lines(results["appearance"])
    if results.get("training"):
        lines += training_lines(results["training"])
        lines += ["", "Convergence: the held-out mAP's rise over the last quarter of each run (a run has plateaued "
                      "when it is under 1 point).", "", "| weights | last-quarter gain (points) |", "|---|---|"]
        for r in results["training"]:
            gain = plateau_gain(r["curve"], "val_map")
            lines.append(f"| `{r['weights']}` | {'-' if gain is None else f'{100 * gain:+.1f}'} |")
        if results.get("curves"):
            lines += ["", f"![held-out curves]({plan.stem}_curves.png)"]
    return "\n".join(lines)


def _saved_results(plan: DetReportPlan, report: Path) -> tuple[dict, str, dict]:
    """The results, reproducing command and machine of the report already in ``report``, checked to be this
    plan's (every setting but the findings): what ``run_detection_report(..., from_json=True)`` rewrites."""
    path = report / f"{plan.stem}.json"
    if not path.is_file():
        raise FeatflowError(f"--from-json: no {path} to rewrite (run the benchmark first)")
    saved = json.loads(path.read_text())
    ours = json.loads(json.dumps(asdict(plan)))
    # a setting added after the report was measured reads as its default there
    defaults = json.loads(json.dumps(asdict(type(plan)(**{f.name: getattr(plan, f.name) for f in fields(plan)
                                                           if f.default is MISSING and f.default_factory is MISSING}))))
    theirs = {**{k: v for k, v in defaults.items() if k not in saved.get("plan", {})}, **saved.get("plan", {})}
    for setting in ("findings", "earlier_training"):  # neither changes what was measured
        ours.pop(setting), theirs.pop(setting, None)
    changed = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    if changed:
        raise FeatflowError(f"--from-json: the plan differs from the one {path} was measured with in "
                            f"{', '.join(changed)}; only its findings may change (re-run the benchmark)")
    results = {k: v for k, v in saved.items() if k not in ("command", "plan", "videos", "machine")}
    return results, saved["command"], saved.get("machine", {})


def _evaluate(plan: DetReportPlan, data: VidDataset, progress: bool, cache: str | os.PathLike | None) -> dict:
    """Every table's numbers: each row of ``plan`` run and scored on ``data``."""
    runner = _Runner(data, progress, DetectionCache(cache) if cache is not None else None)

    def rows(plans: tuple[DetRowPlan, ...]) -> list[dict]:
        return [runner.row(r.name, r.weights, _config(plan, r.method), r.postprocess) for r in plans]

    results = {"ablation": rows(plan.ablation), "postprocessing": rows(plan.postprocessing), "dff": rows(plan.dff)}
    results["frame_counts"] = [runner.row(f"{2 * k + 1} frames", plan.frame_count_weights, _config(plan, "fgfa", k))
                               for k in plan.frame_count_windows] if plan.frame_count_weights else []
    sp = plan.speed
    results["speed"] = {
        "dff": [measure_speed("det", sp.feature_net, f, tuple(sp.size), sp.key_interval, sp.frames).to_json()
                for f in sp.flow_nets],
        "fgfa": [measure_fgfa_speed(sp.feature_net, f, tuple(sp.size), sp.window).to_json() for f in sp.fgfa_flow_nets],
    } if sp.flow_nets or sp.fgfa_flow_nets else {}
    empty = [[Detections.empty()] * len(truth) for truth in runner.truth]
    results["num_gt"] = evaluate_vid(empty, runner.truth, len(data.classes)).num_gt
    results["comparisons"] = _comparisons(runner, results, plan.bootstrap_samples) if plan.bootstrap_samples else []
    if plan.appearance:
        raw = {r["name"]: runner.detections[r["name"]] for group in ("ablation", "dff") for r in results[group]
               if r["postprocess"] is None}
        single = next((r["name"] for r in results["ablation"] if r["method"] == "frame"), None)
        if single is None:
            raise FeatflowError("the appearance tables compare with single frame: the plan's ablation has no "
                                "method: frame row")
        results["appearance"] = appearance_results(data, runner.truth, raw, single, plan.bootstrap_samples)
    results["training"] = _training(plan)
    return results


def _training(plan: DetReportPlan, saved: Sequence[dict] = ()) -> list[dict]:
    """The training records of the plan's checkpoints and their init chains, each with its chain's total budget:
    from each run's metrics.json where runs/ still holds it, else from ``saved`` (the report's own earlier records)
    or the plan's ``earlier_training`` reports."""
    weights = [r.weights for r in plan.ablation + plan.postprocessing + plan.dff]
    known = {**earlier_records(plan.earlier_training), **{r["weights"]: r for r in saved}}
    return training_records(weights + ([plan.frame_count_weights] if plan.frame_count_weights else []), known)


def run_detection_report(plan: DetReportPlan, report: str | os.PathLike = "reports",
                         command: str = "featflow bench det", progress: bool = True,
                         cache: str | os.PathLike | None = None, from_json: bool = False) -> list[Path]:
    """Evaluate every row of ``plan`` and write the report; with ``cache``, raw detections are kept in (and
    reused from) that folder (``benchmarks.detection_cache``). With ``from_json``, nothing is evaluated: the
    report already in ``report`` is rewritten with the plan's findings (written once its tables were seen),
    keeping its numbers, machine and reproducing command."""
    data = VidDataset(plan.data, plan.split)
    total = len(data)
    if plan.videos is not None:
        data = data.first(plan.videos)
    report = Path(report)
    if from_json:
        results, command, machine = _saved_results(plan, report)
        results["training"] = _training(plan, results.get("training", []))
    else:
        results, machine = _evaluate(plan, data, progress, cache), machine_description()
    results["curves"] = curves_plot(report / f"{plan.stem}_curves.png", results["training"], "val_map",
                                    "held-out mAP (%) during training")
    paths = write_report(report, plan.stem, _markdown(plan, data, total, results),
                         {"plan": asdict(plan), "videos": len(data), **results, "machine": machine}, command)
    if results["frame_counts"]:
        _plot(report / f"{plan.stem}.png", results["frame_counts"])
        paths.append(report / f"{plan.stem}.png")
    if results["curves"]:
        paths.append(report / f"{plan.stem}_curves.png")
    return paths

