"""The ``featflow`` command line.

Each sub-command parses its arguments here and calls one library function; errors a user can fix
(bad paths, sizes, configs, files) are printed as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable, Sequence


class UserError(Exception):
    """An error caused by the command's input, printed without a traceback."""


def parse_size(text: str) -> tuple[int, int]:
    """'256x512' -> (256, 512)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"size must look like HxW (e.g. 256x512), got {text!r}")
    h, w = (int(p) for p in parts)
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError(f"size must be at least 16x16, got {text!r}")
    return h, w


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _command_line() -> str:
    """The command as typed, for reports to say how to reproduce them."""
    return "featflow " + " ".join(sys.argv[1:])


# ---- featflow demo --------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> None:
    from featflow.engine.demo import run_demo

    summary = run_demo(args.out, args.frames, args.key_interval, args.seed, args.weights, progress=not args.quiet,
                       detection=not args.no_detection, det_weights=args.det_weights)
    print(f"segmentation, per-frame: mIoU {100 * summary.per_frame.miou:.1f}%, {summary.per_frame.fps:.1f} frames/s")
    print(f"segmentation, DFF (l={summary.key_interval}): mIoU {100 * summary.dff.miou:.1f}%, {summary.dff.fps:.1f} "
          f"frames/s ({summary.speedup:.2f}x faster)")
    det = summary.detection
    if det is not None:
        for name, r in (("single frame", det.single_frame), (f"DFF (l={det.key_interval})", det.dff),
                        (f"FGFA ({2 * det.window + 1} frames)", det.fgfa)):
            print(f"detection, {name}: mAP {100 * r.map:.1f}%, {r.fps:.1f} frames/s")
    elif not args.no_detection:
        print("detection: not run (this build ships no detector weights)")
    print(f"videos: {summary.video}" + (f", {det.video}" if det else "") + f"; summary: {Path(args.out) / 'summary.md'}")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="per-frame vs DFF segmentation (and single frame vs DFF vs FGFA detection) on "
                                    "generated clips, with the shipped weights",
                       description="Generate short synthetic clips, segment them per frame and with DFF, and detect "
                                   "objects per frame, with DFF and with FGFA, using the weights shipped in the "
                                   "package; write side-by-side H.264 videos and a summary (accuracy, frames/s).")
    p.add_argument("--out", type=Path, default=Path("featflow_demo"), help="output folder (default featflow_demo/)")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--key-interval", type=int, default=5)
    p.add_argument("--seed", type=_non_negative, default=0)
    p.add_argument("--weights", type=Path, default=None, help="a DFF segmenter (default: the shipped one)")
    p.add_argument("--det-weights", type=Path, nargs=2, default=None, metavar=("DFF", "FGFA"),
                   help="a DFF and an FGFA detector (default: the shipped ones)")
    p.add_argument("--no-detection", action="store_true", help="segmentation only")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)


# ---- featflow synth -------------------------------------------------------------------------------


def _cmd_synth(args: argparse.Namespace) -> None:
    from featflow.data.synthetic import Degradations, SynthConfig
    from featflow.data.synthetic.export import export

    default_frames = {"cityscapes": 30, "flyingchairs": 10, "vid": 60}
    frames = args.frames if args.frames is not None else default_frames[args.format]
    config = SynthConfig.build(args.geometry, args.size[0], args.size[1], frames,
                               None if args.degradations is None else Degradations.parse(args.degradations))
    counts = export(args.format, args.out, config, args.videos, args.val_videos, args.seed, progress=not args.quiet)
    print(f"wrote {', '.join(f'{n} {split}' for split, n in counts.items())} "
          f"{'pairs' if args.format == 'flyingchairs' else 'videos'} to {args.out}")


def _add_synth(sub: argparse._SubParsersAction) -> None:
    from featflow.data.synthetic.export import FORMATS
    from featflow.data.synthetic.scene import GEOMETRIES

    p = sub.add_parser("synth", help="generate synthetic videos with exact ground truth in a real dataset layout",
                       description="Generate 'flying shapes' videos (exact labels, boxes, tracks and flow) and write "
                                   "them in the layout of Cityscapes, ImageNet VID or FlyingChairs.")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--videos", type=_non_negative, default=10, help="training videos (pairs for flyingchairs)")
    p.add_argument("--val-videos", type=_non_negative, default=0, help="validation videos (pairs for flyingchairs)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames per video (default: 30 for cityscapes, which requires 30; 60 for vid; 10 for flyingchairs)")
    p.add_argument("--size", type=parse_size, default=(256, 512), help="frame size HxW (default 256x512)")
    p.add_argument("--seed", type=_non_negative, default=0)
    p.add_argument("--geometry", choices=GEOMETRIES, default="shapes",
                   help="'shapes': many small objects (default); 'vid': ImageNet VID's geometry, few large objects "
                        "with every per-object appearance change on")
    p.add_argument("--degradations", default=None,
                   help="'default', 'video' (default and per-object changes), 'off', or NAME=STRENGTH,... over the "
                        "default (motion_blur, defocus, noise, flicker, occluders, bursts, object_defocus, pose); "
                        "default: the geometry's own ('default' for shapes, 'video' for vid)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synth)


# ---- featflow train -------------------------------------------------------------------------------


def _cmd_train_flow(args: argparse.Namespace) -> None:
    from featflow.engine.config import load_config
    from featflow.engine.flow_training import FlowTrainConfig, train_flow
    from featflow.engine.trainer import override_train

    cfg = override_train(load_config(FlowTrainConfig, args.config, kind="flow"), args.iterations, args.time_limit)
    result = train_flow(cfg, out=args.out, resume=args.resume, progress=not args.quiet)
    print(f"{cfg.model}: {result.iterations} iterations in {result.wall_seconds / 60:.1f} min, "
          f"validation EPE {result.last['val_epe']:.3f} px (stride-16 DFF output {result.last['val_epe_dff']:.3f} px); "
          f"weights in {result.output / 'model.safetensors'}")


def _cmd_train_task(args: argparse.Namespace) -> None:
    """``train seg`` and ``train det``: the same steps with the task's config, trainer and held-out metric."""
    import dataclasses

    from featflow.engine.config import load_config
    from featflow.engine.trainer import override_train

    if args.what == "seg":
        from featflow.engine.seg_training import SegTrainConfig as Config, train_segmentation as run
        metric, label = "val_miou", "mIoU"
    else:
        from featflow.engine.det_training import DetTrainConfig as Config, train_detection as run
        metric, label = "val_map", "mAP"
    cfg = override_train(load_config(Config, args.config, kind=args.what), args.iterations, args.time_limit)
    if args.init is not None:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, init=args.init))
    result = run(cfg, out=args.out, resume=args.resume, progress=not args.quiet)
    print(f"{result.iterations} iterations in {result.wall_seconds / 60:.1f} min, validation {label} "
          f"{100 * result.last[metric]:.1f}%; weights in {result.output / 'model.safetensors'}")


def _add_train_parser(train: argparse._SubParsersAction, what: str, help: str, description: str, configs: str,
                      func, init: bool) -> None:
    p = train.add_parser(what, help=help, description=description)
    p.add_argument("--config", required=True, help=f"a YAML file, or the name of a packaged config ({configs})")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the config's output)")
    p.add_argument("--resume", action="store_true", help="continue from the output folder's last checkpoint")
    if init:
        p.add_argument("--init", default=None, help="override model.init (the checkpoint to start from)")
    p.add_argument("--iterations", type=int, default=None, help="override train.iterations")
    p.add_argument("--time-limit", type=float, default=None, help="override train.time_limit_minutes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=func)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train models")
    train = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    _add_train_parser(train, "flow", "pre-train a flow network on pairs with known flow (the FlyingChairs step)",
                      "Train FlowNet / FlowNet Half / FlowNet Inception with a multi-scale end-point-error loss on "
                      "synthetic pairs (or a FlyingChairs folder).", "flownet, flownet_half, flownet_inception",
                      _cmd_train_flow, init=False)
    _add_train_parser(train, "seg", "train a video segmenter: per-frame, DFF, or a DFF ablation",
                      "Train a per-frame segmentation model, or DFF end to end (from a per-frame checkpoint and "
                      "pre-trained flow), with the segmentation loss only.", "see featflow/configs/seg/",
                      _cmd_train_task, init=True)
    _add_train_parser(train, "det", "train a video detector: per-frame R-FCN, DFF or FGFA",
                      "Train a per-frame R-FCN detector, or DFF / FGFA end to end (from a per-frame checkpoint and "
                      "pre-trained flow), with the detection loss only.", "see featflow/configs/det/",
                      _cmd_train_task, init=True)


# ---- featflow flow --------------------------------------------------------------------------------


def _cmd_flow(args: argparse.Namespace) -> None:
    from featflow.data.formats.flo import write_flo
    from featflow.data.io import read_image, write_image
    from featflow.engine.checkpoint import load_flow_net
    from featflow.engine.flow_inference import FlowNetEstimator
    from featflow.utils.visualize import flow_to_color

    current, key = read_image(args.current), read_image(args.key)
    if current.shape != key.shape:
        raise UserError(f"{args.current} is {current.shape[1]}x{current.shape[0]} but {args.key} is "
                        f"{key.shape[1]}x{key.shape[0]}: the two frames must have the same size")
    net, meta = load_flow_net(args.weights)
    flow = FlowNetEstimator(net, stride=args.stride)(current, key)
    write_flo(args.out, flow)
    if args.visualize:
        write_image(args.visualize, flow_to_color(flow))
    magnitude = (flow ** 2).sum(-1) ** 0.5
    print(f"{meta['featflow.model']}: {flow.shape[1]}x{flow.shape[0]} flow, mean |flow| {magnitude.mean():.2f} px, "
          f"max {magnitude.max():.2f} px -> {args.out}")


def _add_flow(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flow", help="estimate the flow from a current frame to a key frame",
                       description="For each pixel of CURRENT, estimate its displacement to KEY (the direction DFF "
                                   "warps with), at CURRENT's full resolution, and write it as a .flo file.")
    p.add_argument("current", type=Path)
    p.add_argument("key", type=Path)
    p.add_argument("--out", required=True, type=Path, help="output .flo file")
    p.add_argument("--weights", type=Path, default=None, help="flow-net weights (default: the shipped FlowNet Inception)")
    p.add_argument("--stride", type=int, choices=(8, 16), default=8,
                   help="8: FlowNet's finest prediction (default); 16: the output DFF warps features with")
    p.add_argument("--visualize", type=Path, default=None, help="also write a colour-coded PNG of the flow")
    p.set_defaults(func=_cmd_flow)


def _cmd_pack(args: argparse.Namespace) -> None:
    from featflow.engine.checkpoint import pack_weights

    size = pack_weights(args.weights, args.out)
    print(f"wrote {args.out} ({size / 2**20:.1f} MiB, float16)")


def _add_pack(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pack", help="store trained weights in float16 for shipping",
                       description="Copy a featflow weights file with its floating-point tensors in float16 (half "
                                   "the size; the loaders convert back to float32). This is how the package's "
                                   "weights are made from training runs.")
    p.add_argument("weights", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_cmd_pack)


# ---- featflow eval --------------------------------------------------------------------------------


def _cmd_eval_seg(args: argparse.Namespace) -> None:
    from featflow.data.cityscapes import CityscapesVideo
    from featflow.engine.checkpoint import load_flow_into, load_segmenter
    from featflow.engine.distributed import context
    from featflow.engine.seg_inference import evaluate_segmentation

    model, meta = load_segmenter(args.weights, flow_net=args.flow_net)
    if args.flow_net and not meta.get("flow_net"):  # a per-frame model composed with pre-trained flow
        load_flow_into(model, args.flow_weights)
    model.for_inference(context().device)
    video = CityscapesVideo(args.data, args.split)
    result = evaluate_segmentation(model, video, args.method, args.key_interval, args.save_predictions,
                                   progress=not args.quiet)
    print(f"{args.method} (l={result.key_interval}): mIoU {100 * result.miou:.2f}% over {len(video)} snippets, "
          f"{result.fps:.2f} frames/s")
    for name, iou in zip(result.class_names, result.iou):
        print(f"  {name:<16}{'-' if iou != iou else f'{100 * iou:.2f}'}")
    if args.json:
        from featflow.utils.io import write_json

        write_json(args.json, {"weights": str(args.weights), "data": str(args.data), "split": args.split,
                               **result.to_json()})


def _cmd_eval_det(args: argparse.Namespace) -> None:
    from featflow.data.formats.cocovid import CocoVidDataset
    from featflow.data.vid import VidDataset
    from featflow.engine.checkpoint import load_detector
    from featflow.engine.det_inference import DetStreamConfig, evaluate_detection
    from featflow.engine.distributed import context

    config = DetStreamConfig(args.method, args.key_interval, args.window, args.online)  # checks the values first
    if args.seq_nms and args.postprocess:
        raise UserError("--seq-nms and --postprocess are alternatives; give one")
    if args.data.suffix == ".json":
        if args.images is None:
            raise UserError("a CocoVID file needs --images (the Data/VID folder)")
        data = CocoVidDataset(args.data, args.images)
    else:
        data = VidDataset(args.data, args.split)
    model = load_detector(args.weights)[0].for_inference(context().device)
    postprocess = "seq-nms" if args.seq_nms else args.postprocess
    ev = evaluate_detection(model, data, config, postprocess, args.save_detections, progress=not args.quiet)
    r = ev.result
    print(f"{args.method}{' + ' + postprocess if postprocess else ''}: mAP {100 * r.map:.2f} (slow {100 * r.slow:.2f}, "
          f"medium {100 * r.medium:.2f}, fast {100 * r.fast:.2f}) over {len(data)} videos, {ev.frames} frames; "
          f"{ev.ms_per_frame:.1f} ms per frame ({1000 / ev.ms_per_frame:.2f} frames/s)")
    if args.json:
        from featflow.utils.io import write_json

        write_json(args.json, {"weights": str(args.weights), "data": str(args.data), "split": args.split,
                               **ev.to_json()})


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from featflow.engine.seg_inference import METHODS

    p = sub.add_parser("eval", help="evaluate models on data in a real dataset layout")
    what = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    seg = what.add_parser("seg", help="mIoU and frames/s of a segmenter on Cityscapes-layout video",
                          description="Evaluate per-frame, DFF or SFF segmentation with the DFF protocol: the "
                                      "labelled frame of each snippet is reached from key frames 0..l-1 frames "
                                      "before it and mIoU is averaged over those offsets.")
    seg.add_argument("--data", required=True, type=Path, help="a Cityscapes-layout folder (real or synthetic)")
    seg.add_argument("--weights", required=True, type=Path, help="segmenter weights (featflow train seg)")
    seg.add_argument("--method", choices=METHODS, default="dff")
    seg.add_argument("--key-interval", type=int, default=5, help="key-frame interval l (default 5)")
    seg.add_argument("--flow-net", default=None,
                     help="give a per-frame checkpoint this flow network (DFF separate), from --flow-weights")
    seg.add_argument("--flow-weights", type=Path, default=None, help="pre-trained flow weights (default: shipped)")
    seg.add_argument("--split", default="val")
    seg.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    seg.add_argument("--save-predictions", type=Path, default=None,
                     help="write label-id PNGs named as Cityscapes result files (one folder per key offset)")
    seg.add_argument("--quiet", action="store_true")
    seg.set_defaults(func=_cmd_eval_seg)
    from featflow.engine.det_inference import DET_METHODS, POSTPROCESS

    det = what.add_parser("det", help="VID mAP (all / slow / medium / fast) and speed of a video detector",
                          description="Evaluate per-frame, DFF or FGFA detection on ImageNet VID-layout video with "
                                      "the VID rules (small-box threshold, motion categories from ground-truth "
                                      "tracks), optionally with box-level post-processing.")
    det.add_argument("--data", required=True, type=Path,
                     help="an ImageNet VID-layout folder (real or synthetic), or a CocoVID JSON file with --images")
    det.add_argument("--images", type=Path, default=None, help="with a CocoVID file: the folder its file names start in")
    det.add_argument("--weights", required=True, type=Path, help="detector weights (featflow train det)")
    det.add_argument("--method", choices=DET_METHODS, default="frame")
    det.add_argument("--key-interval", type=int, default=10, help="DFF key-frame interval (default 10)")
    det.add_argument("--window", type=int, default=10, help="FGFA: frames t-K..t+K are aggregated (default K=10)")
    det.add_argument("--online", action="store_true", help="FGFA on past frames only (no output delay)")
    det.add_argument("--seq-nms", action="store_true", help="Seq-NMS post-processing (= --postprocess seq-nms)")
    det.add_argument("--postprocess", choices=POSTPROCESS, default=None, help="box-level post-processing")
    det.add_argument("--split", default="val")
    det.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    det.add_argument("--save-detections", type=Path, default=None,
                     help="write detections in the ImageNet VID results format (frame_id class score x1 y1 x2 y2)")
    det.add_argument("--quiet", action="store_true", help="no progress bar")
    det.set_defaults(func=_cmd_eval_det)


# ---- featflow bench -------------------------------------------------------------------------------


def _cmd_bench_flops(args: argparse.Namespace) -> None:
    from featflow.analysis.cost import cost_markdown, cost_table, format_cost_table
    from featflow.analysis.reports import write_report

    table = cost_table(*args.size)
    if args.json:
        print(json.dumps(table.to_json(), indent=2))
    else:
        print(format_cost_table(table))
    if args.report:
        paths = write_report(args.report, "cost", cost_markdown(table), table.to_json(), command=_command_line())
        print(f"report: {', '.join(str(p) for p in paths)}", file=sys.stderr)


def _named_path(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def _cmd_bench_flow(args: argparse.Namespace) -> None:
    from featflow.analysis.flow_report import run_flow_benchmark

    weights = dict(args.weights) if args.weights else None
    paths = run_flow_benchmark(weights, pairs=args.pairs, size=args.size, seed=args.seed, report=args.report,
                               command=_command_line(), progress=not args.quiet)
    print(f"report: {', '.join(str(p) for p in paths)}")


def _cmd_bench_synth(args: argparse.Namespace) -> None:
    from featflow.analysis.synth_report import run_synth_benchmark

    paths = run_synth_benchmark(args.report, videos=args.videos, size=args.size, seed=args.seed,
                                command=_command_line(), progress=not args.quiet)
    print(f"report: {', '.join(str(p) for p in paths)}")


def _cmd_bench_difficulty(args: argparse.Namespace) -> None:
    from featflow.analysis.difficulty import run_difficulty_probe

    paths = run_difficulty_probe(args.weights, args.report, videos=args.videos, seed=args.seed,
                                 command=_command_line(), progress=not args.quiet)
    print(f"report: {', '.join(str(p) for p in paths)}")


def _cmd_bench_speed(args: argparse.Namespace) -> None:
    from featflow.analysis.speed import format_row, measure_fgfa_speed, measure_speed
    from featflow.utils.io import write_json

    if args.window is not None:
        if args.task != "det":
            raise UserError("--window (FGFA) is for --task det")
        row = measure_fgfa_speed(args.feature_net, args.flow_net, args.size, args.window, args.frames or 2, args.device)
        print(f"FGFA {row.feature_net} + {row.flow_net} at {row.size[0]}x{row.size[1]}, {2 * row.window + 1} frames: "
              f"{row.ms_per_frame:.0f} ms per frame against {row.per_frame_ms:.0f} ms single-frame "
              f"({row.cost_ratio:.2f}x; {row.threads} threads, {row.device})")
    else:
        row = measure_speed(args.task, args.feature_net, args.flow_net, args.size, args.key_interval, args.frames,
                            args.device)
        print(format_row(row))
    if args.json:
        write_json(args.json, {"command": _command_line(), **row.to_json()})


def _cmd_bench_seg(args: argparse.Namespace) -> None:
    from featflow.analysis.seg_report import SegReportPlan, run_segmentation_report
    from featflow.engine.config import load_config

    plan = load_config(SegReportPlan, args.plan, kind="reports")
    paths = run_segmentation_report(plan, args.report, command=_command_line(), progress=not args.quiet)
    print(f"report: {', '.join(str(p) for p in paths)}")


def _cmd_bench_det(args: argparse.Namespace) -> None:
    from featflow.analysis.det_report import DetReportPlan, run_detection_report
    from featflow.engine.config import load_config

    plan = load_config(DetReportPlan, args.plan, kind="reports")
    paths = run_detection_report(plan, args.report, command=_command_line(), progress=not args.quiet)
    print(f"report: {', '.join(str(p) for p in paths)}")


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from featflow.analysis.speed import TASKS
    from featflow.modeling.feature_net import FEATURE_NETS
    from featflow.modeling.flow_net import FLOW_NETS

    p = sub.add_parser("bench", help="benchmarks: cost table, flow accuracy and speed, synthetic data speed")
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    flops = bench.add_parser("flops", help="the talk's 1/r table (N_feat vs F multiply-adds) beside the paper's",
                             description="Count multiply-adds of ResNet-50/101 (N_feat) and FlowNet, FlowNet Half, "
                                         "FlowNet Inception (F) and print 1/r = O(N_feat) / O(F) beside the paper.")
    flops.add_argument("--json", action="store_true", help="print JSON (every cell with the paper's value and ours)")
    flops.add_argument("--size", type=parse_size, default=(600, 1000), help="input size HxW (default 600x1000)")
    flops.add_argument("--report", type=Path, default=None, help="also write cost.md and cost.json into this folder")
    flops.set_defaults(func=_cmd_bench_flops)
    flow = bench.add_parser("flow", help="EPE and time per pair of flow nets against zero flow and OpenCV's DIS",
                            description="Evaluate flow networks and off-the-shelf flow (DIS ultrafast / medium, "
                                        "Farneback) on held-out synthetic pairs, clean and degraded, at full "
                                        "resolution; write flow.md, flow.json and flow.png.")
    flow.add_argument("--weights", type=_named_path, action="append", default=None, metavar="NAME=PATH",
                      help="a flow net to evaluate (repeatable; default: the shipped one)")
    flow.add_argument("--pairs", type=int, default=100, help="held-out pairs per condition (default 100)")
    flow.add_argument("--size", type=parse_size, default=(256, 512))
    flow.add_argument("--seed", type=_non_negative, default=0)
    flow.add_argument("--report", type=Path, default=Path("reports"), help="report folder (default reports/)")
    flow.add_argument("--quiet", action="store_true")
    flow.set_defaults(func=_cmd_bench_flow)
    speed = bench.add_parser("speed", help="per-frame against DFF (or FGFA) wall-clock speed, paper-sized nets, "
                                           "random weights",
                             description="Time per-frame recognition and DFF (fixed key interval) or FGFA (--window) "
                                         "on random frames with random weights, in one run; print one row.")
    speed.add_argument("--task", choices=TASKS, default="seg")
    speed.add_argument("--feature-net", choices=FEATURE_NETS, default="resnet101")
    speed.add_argument("--flow-net", choices=FLOW_NETS, default="flownet")
    speed.add_argument("--size", type=parse_size, default=(512, 1024))
    speed.add_argument("--key-interval", type=int, default=5)
    speed.add_argument("--frames", type=int, default=None, help="frames timed per method (default: 2 intervals)")
    speed.add_argument("--window", type=int, default=None,
                       help="time FGFA (detection) with 2K+1-frame windows instead of DFF: K")
    speed.add_argument("--device", default="cpu")
    speed.add_argument("--json", type=Path, default=None, help="also write the row as JSON")
    speed.set_defaults(func=_cmd_bench_speed)
    seg = bench.add_parser("seg", help="the segmentation report: ablation table, trade-off curves, paper-size speed",
                           description="Evaluate the trained segmenters a plan names (per-frame, DFF, ablations, SFF) "
                                       "on held-out Cityscapes-layout data, the mIoU-speedup trade-off for key "
                                       "intervals 1..20, and paper-size speed; write segmentation.md/.json/.png.")
    seg.add_argument("--plan", default="segmentation", help="a YAML plan, or a packaged one (default: segmentation)")
    seg.add_argument("--report", type=Path, default=Path("reports"))
    seg.add_argument("--quiet", action="store_true")
    seg.set_defaults(func=_cmd_bench_seg)
    det = bench.add_parser("det", help="the detection report: FGFA ablations, post-processing, DFF, frame counts, speed",
                           description="Evaluate the trained detectors a plan names on held-out VID-layout data (mAP "
                                       "all / slow / medium / fast), the post-processing table, DFF, FGFA's test-frame "
                                       "count, and paper-size speed; write detection.md/.json/.png.")
    det.add_argument("--plan", default="detection", help="a YAML plan, or a packaged one (default: detection)")
    det.add_argument("--report", type=Path, default=Path("reports"))
    det.add_argument("--quiet", action="store_true")
    det.set_defaults(func=_cmd_bench_det)
    synth = bench.add_parser("synth", help="synthetic generator speed (one core) and content statistics",
                             description="Measure frames/s of the synthetic generator on one core and count its "
                                         "classes, motion-IoU speed categories and visibility; write synth.md, "
                                         "synth.json and synth.png.")
    synth.add_argument("--videos", type=int, default=20)
    synth.add_argument("--size", type=parse_size, default=(256, 512))
    synth.add_argument("--seed", type=_non_negative, default=0)
    synth.add_argument("--report", type=Path, default=Path("reports"))
    synth.add_argument("--quiet", action="store_true")
    synth.set_defaults(func=_cmd_bench_synth)
    hard = bench.add_parser("difficulty", help="how hard is the synthetic benchmark for a per-frame model?",
                            description="Evaluate a per-frame segmentation model trained from scratch on this CPU "
                                        "(featflow train seg --config frame_r18: 20 minutes) on held-out videos, "
                                        "degraded and clean, per motion-IoU speed category; write difficulty.md "
                                        "and difficulty.json.")
    hard.add_argument("--weights", type=Path, default=Path("runs/seg/frame_r18/model.safetensors"),
                      help="per-frame segmenter checkpoint (default: %(default)s)")
    hard.add_argument("--videos", type=int, default=20)
    hard.add_argument("--seed", type=_non_negative, default=0)
    hard.add_argument("--report", type=Path, default=Path("reports"))
    hard.add_argument("--quiet", action="store_true")
    hard.set_defaults(func=_cmd_bench_difficulty)


# ---- featflow infer / models ----------------------------------------------------------------------

DEFAULT_MODELS: dict[str, str] = {"seg": "seg-dff-r18-synth", "det-dff": "det-dff-r18-synth", "det": "det-fgfa-r18-synth"}


def _cmd_infer(args: argparse.Namespace) -> int:
    import torch

    from featflow.api import load
    from featflow.data.video import open_source
    from featflow.engine.infer import run_infer

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here")
    source = open_source(args.source, args.fps)
    name = args.weights or DEFAULT_MODELS["det-dff" if args.task == "det" and args.method == "dff" else args.task]
    model = load(name, args.device)
    if model.task != args.task:
        raise UserError(f"{name} holds a {'segmenter' if model.task == 'seg' else 'detector'}; --task {args.task} "
                        f"needs a {'segmenter' if args.task == 'seg' else 'detector'}")
    out = args.out
    if out is None and args.json is None:
        out = Path(f"{Path(args.source).stem}_{args.task}_{args.method or model.default_method}.mp4")
    summary = run_infer(source, model, args.method, args.key_interval, args.window, args.online, out, args.json,
                        progress=not args.quiet, min_score=args.min_score)
    print(f"{summary.frames} frames, {summary.key_frames} key frames; {summary.model_fps:.1f} frames/s in the model, "
          f"{summary.wall_fps:.1f} end to end ({summary.task} {summary.method}, {args.device})")
    for what, path in (("video", summary.video), ("results", summary.json)):
        if path:
            print(f"{what}: {path}")
    if summary.error:
        print(f"featflow infer: error: {summary.error}", file=sys.stderr)
        return 1
    return 0


def _add_infer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="segment or detect objects in any video (or image folder) as a stream",
                       description="Run a shipped or trained model over a video file (anything PyAV decodes) or a "
                                   "folder of images (natural sort order), frame by frame with bounded memory; write "
                                   "the annotated video at the source's frame rate and per-frame JSON lines.")
    p.add_argument("source", type=Path, help="a video file or a folder of images")
    p.add_argument("--task", choices=("seg", "det"), default="seg")
    p.add_argument("--method", choices=("frame", "dff", "fgfa", "sff-slow", "sff-fast"), default=None,
                   help="default: the best the weights support (det: fgfa, seg: dff)")
    p.add_argument("--key-interval", type=_positive, default=None, help="DFF's key interval (default: seg 5, det 10)")
    p.add_argument("--window", type=_non_negative, default=10, help="FGFA aggregates 2K+1 frames (default K=10)")
    p.add_argument("--online", action="store_true", help="FGFA on past frames only (no delay)")
    p.add_argument("--weights", default=None, help="a shipped model's name (featflow models) or a weights file")
    p.add_argument("--out", type=Path, default=None, help="annotated video (.mp4; default SOURCE_TASK_METHOD.mp4)")
    p.add_argument("--json", type=Path, default=None, help="per-frame results as JSON lines")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--fps", type=float, default=None, help="frame rate of an image folder (default 25)")
    p.add_argument("--min-score", type=float, default=0.3, help="boxes drawn from this score (default 0.3)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_infer)


def _cmd_models(args: argparse.Namespace) -> None:
    from featflow.api import shipped_models

    for m in shipped_models():
        figures = ", ".join(f"{k} {v}" for k, v in m.benchmark.items() if k != "source")
        print(f"{m.name}  [{m.task}; {', '.join(m.methods)}; trained at {m.size[0]}x{m.size[1]}]\n  {m.description}"
              + (f"\n  {figures} ({m.benchmark['source']})" if figures else ""))


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="the shipped models, with their task, methods, size and benchmark figures")
    p.set_defaults(func=_cmd_models)


# ---- featflow report ------------------------------------------------------------------------------


def _cmd_report(args: argparse.Namespace) -> None:
    from featflow.analysis.html import write_html_report

    print(f"wrote {write_html_report(args.folder, args.out, args.title)}")


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page from a run folder (tables, plots, videos)",
                       description="Gather a run folder's Markdown summaries (tables), plots and pictures (PNG) and "
                                   "videos (MP4) into one HTML page with everything inlined, e.g. featflow report "
                                   "featflow_demo or featflow report reports.")
    p.add_argument("folder", type=Path, help="a run folder: the demo's output, reports/, ...")
    p.add_argument("--out", type=Path, default=None, help="the page (default FOLDER/report.html)")
    p.add_argument("--title", default=None)
    p.set_defaults(func=_cmd_report)


# ---- entry point ----------------------------------------------------------------------------------

_COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_demo, _add_infer, _add_models, _add_report, _add_synth, _add_train, _add_flow, _add_eval, _add_bench, _add_pack)


#: Commands that run as one job across the processes torchrun starts (single-process without it).
DISTRIBUTED_COMMANDS: tuple[str, ...] = ("train", "eval")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="featflow", description="Flow-based video recognition (DFF, FGFA).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    stdout = sys.stdout
    try:
        if args.command in DISTRIBUTED_COMMANDS:
            from featflow.engine.distributed import init_distributed

            if not init_distributed().is_main:  # under torchrun only rank 0 prints results
                sys.stdout = open(os.devnull, "w")
        code = args.func(args)
    except (UserError, ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as err:
        print(f"featflow {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"featflow {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if sys.stdout is not stdout:
            sys.stdout.close()
            sys.stdout = stdout
        if args.command in DISTRIBUTED_COMMANDS:
            from featflow.engine.distributed import shutdown

            shutdown()
    return code or 0


if __name__ == "__main__":
    raise SystemExit(main())
