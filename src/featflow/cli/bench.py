"""``featflow bench ...``: the benchmarks behind ``reports/`` (cost table, flow, synthetic data, speed, the
segmentation and detection reports).

``flops`` and ``speed`` are library code (``featflow.analysis``). The others run this repository's experiment
harness, the ``benchmarks`` package at the root of a source checkout; it is not installed with featflow, so from
an installed package they stop with a one-line error."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import featflow
from featflow.cli import options
from featflow.errors import FeatflowError
from featflow.registry import FEATURE_NETS, FLOW_NETS, PRECISIONS, TASKS


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: cost table, flow accuracy and speed, synthetic data speed")
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    flops = bench.add_parser("flops", help="the talk's 1/r table (N_feat vs F multiply-adds) beside the paper's",
                             description="Count multiply-adds of ResNet-50/101 (N_feat) and FlowNet, FlowNet Half, "
                                         "FlowNet Inception (F) and print 1/r = O(N_feat) / O(F) beside the paper.")
    flops.add_argument("--json", action="store_true", help="print JSON (every cell with the paper's value and ours)")
    flops.add_argument("--size", type=options.size, default=(600, 1000), help="input size HxW (default 600x1000)")
    flops.add_argument("--report", type=Path, default=None, help="also write cost.md and cost.json into this folder")
    flops.set_defaults(func=run_flops)
    flow = bench.add_parser("flow", help="EPE and time per pair of flow nets against zero flow and OpenCV's DIS",
                            description="Evaluate flow networks and off-the-shelf flow (DIS ultrafast / medium, "
                                        "Farneback) on held-out synthetic pairs, clean and degraded, at full "
                                        "resolution; write flow.md, flow.json and flow.png (or --stem's).")
    flow.add_argument("--weights", type=options.named_path, action="append", default=None, metavar="NAME=PATH",
                      help="a flow net to evaluate (repeatable; default: the shipped one)")
    flow.add_argument("--pairs", type=options.positive, default=100, help="held-out pairs per condition (default 100)")
    flow.add_argument("--size", type=options.size, default=(256, 512))
    flow.add_argument("--seed", type=options.non_negative, default=0)
    flow.add_argument("--report", type=Path, default=Path("reports"), help="report folder (default reports/)")
    flow.add_argument("--stem", type=options.report_stem, default="flow",
                      help="the report's file names, without extension (default flow)")
    flow.add_argument("--quiet", action="store_true")
    flow.set_defaults(func=run_flow)
    speed = bench.add_parser("speed", help="per-frame against DFF (or FGFA) wall-clock speed, paper-sized nets, "
                                           "random weights",
                             description="Time per-frame recognition and DFF (fixed key interval) or FGFA (--window) "
                                         "on random frames with random weights, in one run; print one row.")
    speed.add_argument("--task", choices=TASKS, default="seg")
    speed.add_argument("--feature-net", choices=FEATURE_NETS, default="resnet101")
    speed.add_argument("--flow-net", choices=FLOW_NETS, default="flownet")
    speed.add_argument("--size", type=options.size, default=(512, 1024))
    speed.add_argument("--key-interval", type=options.positive, default=5)
    speed.add_argument("--frames", type=options.positive, default=None,
                       help="frames timed per method (default: 2 intervals)")
    speed.add_argument("--window", type=options.non_negative, default=None,
                       help="time FGFA (detection) with 2K+1-frame windows instead of DFF: K")
    speed.add_argument("--device", default="cpu")
    speed.add_argument("--json", type=Path, default=None, help="also write the row as JSON")
    speed.set_defaults(func=run_speed)
    prof = bench.add_parser("profile", help="where DFF's or FGFA's time goes, stage by stage, against each "
                            "stage's multiply-adds (paper-sized nets, random weights)")
    prof.add_argument("--task", choices=TASKS, default=None,
                      help="profile one setting (default: with --report, the report's four settings)")
    prof.add_argument("--method", choices=("dff", "fgfa"), default="dff")
    prof.add_argument("--feature-net", choices=FEATURE_NETS, default="resnet101")
    prof.add_argument("--flow-net", choices=FLOW_NETS, default="flownet")
    prof.add_argument("--size", type=options.size, default=(512, 1024))
    prof.add_argument("--key-interval", type=options.positive, default=5)
    prof.add_argument("--window", type=options.non_negative, default=10, help="FGFA's K (2K+1 frames)")
    prof.add_argument("--repeats", type=options.positive, default=3, help="timed calls per stage")
    prof.add_argument("--device", default="cpu")
    prof.add_argument("--compile", action="store_true",
                      help="one setting through torch.compile (frozen weights); the report profiles each setting "
                           "both ways")
    prof.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast of every stage")
    prof.add_argument("--flow-batch", type=options.positive, default=1,
                      help="offline DFF: F on this many frames of a key interval per call (at most l - 1)")
    prof.add_argument("--report", type=Path, default=None,
                      help="write speed.md and speed.json into this folder: every report setting eager, compiled, "
                           "in bf16, and (DFF) with F batched over the key interval")
    prof.add_argument("--from-json", action="store_true",
                      help="with --report: re-render speed.md from the speed.json already there, without re-timing "
                           "(its machine and command kept)")
    prof.set_defaults(func=run_profile)
    seg = bench.add_parser("seg", help="the segmentation report: ablation table, trade-off curves, paper-size speed",
                           description="Evaluate the trained segmenters a plan names (per-frame, DFF, ablations, SFF) "
                                       "on held-out Cityscapes-layout data, the mIoU-speedup trade-off for key "
                                       "intervals 1..20, and paper-size speed; write segmentation.md/.json/.png.")
    seg.add_argument("--plan", default="segmentation",
                     help="a YAML plan, or one in benchmarks/plans/ by name (default: segmentation)")
    seg.add_argument("--report", type=Path, default=Path("reports"))
    seg.add_argument("--quiet", action="store_true")
    seg.set_defaults(func=run_seg)
    det = bench.add_parser("det",
                           help="the detection report: FGFA ablations, post-processing, DFF, frame counts, speed",
                           description="Evaluate the trained detectors a plan names on held-out VID-layout data (mAP "
                                       "all / slow / medium / fast), the post-processing table, DFF, FGFA's test-frame "
                                       "count, and paper-size speed; write detection.md/.json/.png.")
    det.add_argument("--plan", default="detection",
                     help="a YAML plan, or one in benchmarks/plans/ by name (default: detection)")
    det.add_argument("--report", type=Path, default=Path("reports"))
    det.add_argument("--cache", type=Path, default=None,
                     help="keep each row's raw detections in this folder and reuse them when the weights, the "
                          "stream settings and the videos are unchanged (a re-run evaluates only new rows)")
    det.add_argument("--from-json", action="store_true",
                     help="evaluate nothing: rewrite the report already in --report with the plan's findings "
                          "(written once its tables were seen), keeping its numbers and reproducing command")
    det.add_argument("--quiet", action="store_true")
    det.set_defaults(func=run_det)
    prec = bench.add_parser("precision", help="bfloat16 against float32 inference for every shipped model",
                            description="Evaluate each shipped model's headline method in fp32 and with bfloat16 "
                                        "autocast on the held-out data of its report (mIoU / mAP change with "
                                        "intervals, frames/s); "
                                        "write precision.md and precision.json.")
    prec.add_argument("--seg-data", type=Path, default=Path("data/cityscapes_synth_val"),
                      help="a Cityscapes-layout folder for a model whose report names none (default "
                           "data/cityscapes_synth_val)")
    prec.add_argument("--det-data", type=Path, default=Path("data/vid_synth_val"),
                      help="an ImageNet VID-layout folder for a model whose report names none (default "
                           "data/vid_synth_val)")
    prec.add_argument("--videos", type=options.positive, default=12, help="detection: the first N videos")
    prec.add_argument("--report", type=Path, default=Path("reports"))
    prec.add_argument("--quiet", action="store_true")
    prec.set_defaults(func=run_precision)
    memory = bench.add_parser("memory", help="resident memory of featflow infer over a long video (DFF, FGFA)",
                              description="Run featflow infer's loop over a long synthetic video with the shipped "
                                          "DFF and FGFA detectors (offline and online), sampling resident memory "
                                          "before every frame; write memory.md, memory.json and memory.png.")
    memory.add_argument("--frames", type=options.positive, default=3000)
    memory.add_argument("--size", type=options.size, default=(192, 384))
    memory.add_argument("--report", type=Path, default=Path("reports"))
    memory.add_argument("--quiet", action="store_true")
    memory.set_defaults(func=run_memory)
    streams = bench.add_parser("streams", help="total frames/s of 1, 2 and 4 concurrent featflow infer processes",
                               description="Run N concurrent featflow infer processes (the shipped DFF detector) "
                                           "over one synthetic video under each threading setting (default: "
                                           "featflow's core sharing; one thread per core in every process, with "
                                           "and without OMP_WAIT_POLICY=PASSIVE; featflow --threads cores/N); "
                                           "write streams.md and streams.json.")
    streams.add_argument("--frames", type=options.positive, default=300)
    streams.add_argument("--size", type=options.size, default=(192, 384))
    streams.add_argument("--counts", type=options.positive, nargs="+", default=[1, 2, 4])
    streams.add_argument("--report", type=Path, default=Path("reports"))
    streams.add_argument("--quiet", action="store_true")
    streams.set_defaults(func=run_streams)
    synth = bench.add_parser("synth", help="synthetic generator speed (one core) and content statistics",
                             description="Measure frames/s of the synthetic generator on one core and count its "
                                         "classes, motion-IoU speed categories and visibility; write synth.md, "
                                         "synth.json and synth.png.")
    synth.add_argument("--videos", type=options.positive, default=20)
    synth.add_argument("--size", type=options.size, default=(256, 512))
    synth.add_argument("--seed", type=options.non_negative, default=0)
    synth.add_argument("--report", type=Path, default=Path("reports"))
    synth.add_argument("--quiet", action="store_true")
    synth.set_defaults(func=run_synth)
    hard = bench.add_parser("difficulty", help="how hard is the synthetic benchmark for a per-frame model?",
                            description="Evaluate a per-frame segmentation model (e.g. one trained with featflow "
                                        "train seg --config frame_r18: 20 minutes on 2 cores) on held-out videos, "
                                        "degraded and clean, per motion-IoU speed category; write difficulty.md "
                                        "and difficulty.json.")
    hard.add_argument("--weights", type=Path, required=True, help="a per-frame segmenter checkpoint")
    hard.add_argument("--videos", type=options.positive, default=20)
    hard.add_argument("--seed", type=options.non_negative, default=0)
    hard.add_argument("--report", type=Path, default=Path("reports"))
    hard.add_argument("--quiet", action="store_true")
    hard.set_defaults(func=run_difficulty)


def checkout_root() -> Path | None:
    """The root of the source checkout featflow runs from (the folder holding ``src/featflow`` and the
    ``benchmarks`` package), or None for an installed package."""
    root = Path(featflow.__file__).resolve().parents[2]
    return root if (root / "benchmarks" / "__init__.py").is_file() else None


def harness(command: str, module: str | None = None) -> ModuleType:
    """The ``benchmarks`` package (or its ``module``) of the source checkout, imported with the checkout's root on
    ``sys.path``; a ``FeatflowError`` for ``featflow bench {command}`` when featflow is installed without one."""
    root = checkout_root()
    if root is None:
        raise FeatflowError(f"featflow bench {command} runs this repository's benchmarks/ harness, which is not "
                            "installed with featflow: run it from a source checkout (pip install -e .)")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module("benchmarks" if module is None else f"benchmarks.{module}")


def run_flops(args: argparse.Namespace) -> None:
    from featflow.analysis.cost import cost_markdown, cost_table, format_cost_table
    from featflow.analysis.reports import write_report

    table = cost_table(*args.size)
    if args.json:
        print(json.dumps(table.to_json(), indent=2))
    else:
        print(format_cost_table(table))
    if args.report:
        paths = write_report(args.report, "cost", cost_markdown(table), table.to_json(), command=options.command_line())
        print(f"report: {', '.join(str(p) for p in paths)}", file=sys.stderr)


def run_flow(args: argparse.Namespace) -> None:
    flow_report = harness("flow", "flow_report")
    weights = dict(args.weights) if args.weights else None
    paths = flow_report.run_flow_benchmark(weights, pairs=args.pairs, size=args.size, seed=args.seed,
                                           report=args.report, command=options.command_line(), progress=not args.quiet,
                                           stem=args.stem)
    print(f"report: {', '.join(str(p) for p in paths)}")


def run_precision(args: argparse.Namespace) -> None:
    precision_report = harness("precision", "precision_report")
    paths = precision_report.run_precision_report(args.seg_data, args.det_data, args.videos, args.report,
                                                  command=options.command_line(), progress=not args.quiet)
    print(f"report: {', '.join(str(p) for p in paths)}")


def run_memory(args: argparse.Namespace) -> None:
    memory_report = harness("memory", "memory_report")
    paths = memory_report.run_memory_report(args.frames, args.size, args.report, command=options.command_line(),
                                            progress=not args.quiet)
    print(f"report: {', '.join(str(p) for p in paths)}")


def run_streams(args: argparse.Namespace) -> None:
    streams_report = harness("streams", "streams_report")
    paths = streams_report.run_streams_report(args.frames, args.size, tuple(args.counts), report=args.report,
                                              command=options.command_line(), progress=not args.quiet)
    print(f"report: {', '.join(str(p) for p in paths)}")


def run_synth(args: argparse.Namespace) -> None:
    synth_report = harness("synth", "synth_report")
    paths = synth_report.run_synth_benchmark(args.report, videos=args.videos, size=args.size, seed=args.seed,
                                             command=options.command_line(), progress=not args.quiet)
    print(f"report: {', '.join(str(p) for p in paths)}")


def run_difficulty(args: argparse.Namespace) -> None:
    difficulty = harness("difficulty", "difficulty")
    paths = difficulty.run_difficulty_probe(args.weights, args.report, videos=args.videos, seed=args.seed,
                                            command=options.command_line(), progress=not args.quiet)
    print(f"report: {', '.join(str(p) for p in paths)}")


def run_speed(args: argparse.Namespace) -> None:
    from featflow.analysis.speed import format_row, measure_fgfa_speed, measure_speed
    from featflow.utils.io import write_json

    if args.window is not None:
        if args.task != "det":
            raise FeatflowError("--window (FGFA) is for --task det")
        row = measure_fgfa_speed(args.feature_net, args.flow_net, args.size, args.window, args.frames or 2, args.device)
        print(f"FGFA {row.feature_net} + {row.flow_net} at {row.size[0]}x{row.size[1]}, {2 * row.window + 1} frames: "
              f"{row.ms_per_frame:.0f} ms per frame against {row.per_frame_ms:.0f} ms single-frame "
              f"({row.cost_ratio:.2f}x; {row.threads} threads, {row.device})")
    else:
        row = measure_speed(args.task, args.feature_net, args.flow_net, args.size, args.key_interval, args.frames,
                            args.device)
        print(format_row(row))
    if args.json:
        write_json(args.json, {"command": options.command_line(), **row.to_json()})


def run_profile(args: argparse.Namespace) -> None:
    import torch

    from featflow.analysis.profile import MethodProfile, profile_markdown, profile_method, report_runs, speed_markdown
    from featflow.analysis.reports import machine_description, write_report
    from featflow.modeling.precision import bf16_supported

    if args.from_json:
        if args.report is None:
            raise FeatflowError("bench profile --from-json: give --report, the folder whose speed.json to re-render")
        path = args.report / "speed.json"
        if not path.is_file():
            raise FeatflowError(f"--from-json: no {path} to rewrite (run bench profile --report first)")
        data = json.loads(path.read_text())
        results = [MethodProfile.from_json(p) for p in data["profiles"]]
        paths = write_report(args.report, "speed", speed_markdown(results, data["machine"]),
                             {**data, "profiles": [r.to_json() for r in results]},
                             command=data.get("command") or options.command_line())
        print(f"report: {', '.join(str(p) for p in paths)}", file=sys.stderr)
        return
    if args.task is None and args.report is None:
        raise FeatflowError("bench profile: give --task (one setting) or --report (the report's settings)")
    settings = report_runs(bf16_supported(torch.device(args.device))) if args.task is None else [
        {"task": args.task, "method": args.method, "flow_net": args.flow_net, "size": args.size,
         "key_interval": args.key_interval, "window": args.window, "compile": args.compile,
         "precision": args.precision, "flow_batch": args.flow_batch}]
    results = []
    for setting in settings:
        result = profile_method(feature_net=args.feature_net, repeats=args.repeats, device=args.device, **setting)
        print(profile_markdown(result) + "\n", flush=True)
        results.append(result)
    if args.report:
        machine = machine_description()
        paths = write_report(args.report, "speed", speed_markdown(results, machine),
                             {"machine": machine, "profiles": [r.to_json() for r in results]},
                             command=options.command_line())
        print(f"report: {', '.join(str(p) for p in paths)}", file=sys.stderr)


def run_seg(args: argparse.Namespace) -> None:
    seg_report = harness("seg", "seg_report")
    plan = harness("seg").load_plan(seg_report.SegReportPlan, args.plan)
    paths = seg_report.run_segmentation_report(plan, args.report, command=options.command_line(),
                                               progress=not args.quiet)
    print(f"report: {', '.join(str(p) for p in paths)}")


def run_det(args: argparse.Namespace) -> None:
    det_report = harness("det", "det_report")
    plan = harness("det").load_plan(det_report.DetReportPlan, args.plan)
    paths = det_report.run_detection_report(plan, args.report, command=options.command_line(),
                                            progress=not args.quiet, cache=args.cache, from_json=args.from_json)
    print(f"report: {', '.join(str(p) for p in paths)}")
