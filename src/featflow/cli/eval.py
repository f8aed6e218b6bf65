"""``featflow eval seg|det``: accuracy and speed of a model on data in a real dataset layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from featflow.cli import options
from featflow.errors import FeatflowError
from featflow.registry import DET_METHODS, FLOW_NETS, POSTPROCESS, PRECISIONS, SEG_METHODS, resolve_weights

PRECISION_HELP = ("fp32 (default), auto (bf16 where native, else fp32), bf16 (CPUs with AVX512-BF16 / AMX, GPUs) "
                  "or fp16 (GPUs): autocast of the model; fp32 with a warning where the device lacks it")


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate models on data in a real dataset layout")
    what = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    seg = what.add_parser("seg", help="mIoU and frames/s of a segmenter on Cityscapes-layout video",
                          description="Evaluate per-frame, DFF, SFF or FGFA segmentation with the DFF protocol: "
                                      "the labelled frame of each snippet is reached from key frames 0..l-1 frames "
                                      "before it and mIoU is averaged over those offsets (FGFA aggregates the "
                                      "labelled frame's neighbours t-K..t+K instead).")
    seg.add_argument("--data", required=True, type=Path, help="a Cityscapes-layout folder (real or synthetic)")
    seg.add_argument("--weights", required=True,
                     help="a segmenter: a shipped model's name (featflow models) or a weights file "
                          "(featflow train seg)")
    seg.add_argument("--method", choices=SEG_METHODS, default="dff")
    seg.add_argument("--key-interval", type=options.positive, default=5, help="key-frame interval l (default 5)")
    seg.add_argument("--window", type=options.non_negative, default=10,
                     help="FGFA: frames t-K..t+K are aggregated (default K=10, the most the snippets hold)")
    seg.add_argument("--online", action="store_true", help="FGFA on past frames only (t-K..t)")
    seg.add_argument("--flow-net", choices=FLOW_NETS, default=None,
                     help="give a per-frame checkpoint this flow network (DFF separate), from --flow-weights")
    seg.add_argument("--flow-weights", type=Path, default=None, help="pre-trained flow weights (default: shipped)")
    seg.add_argument("--split", default="val")
    seg.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    seg.add_argument("--save-predictions", type=Path, default=None,
                     help="write label-id PNGs named as Cityscapes result files (one folder per key offset)")
    seg.add_argument("--precision", choices=PRECISIONS, default="fp32", help=PRECISION_HELP)
    seg.add_argument("--quiet", action="store_true")
    seg.set_defaults(func=run_seg)
    det = what.add_parser("det", help="VID mAP (all / slow / medium / fast) and speed of a video detector",
                          description="Evaluate per-frame, DFF or FGFA detection on ImageNet VID-layout video with "
                                      "the VID rules (small-box threshold, motion categories from ground-truth "
                                      "tracks), optionally with box-level post-processing.")
    det.add_argument("--data", required=True, type=Path,
                     help="an ImageNet VID-layout folder (real or synthetic), or a CocoVID JSON file with --images")
    det.add_argument("--images", type=Path, default=None,
                     help="with a CocoVID file: the folder its file names start in")
    det.add_argument("--weights", required=True,
                     help="a detector: a shipped model's name (featflow models) or a weights file (featflow train det)")
    det.add_argument("--method", choices=DET_METHODS, default="frame")
    det.add_argument("--key-interval", type=options.positive, default=10, help="DFF key-frame interval (default 10)")
    det.add_argument("--window", type=options.non_negative, default=10,
                     help="FGFA: frames t-K..t+K are aggregated (default K=10)")
    det.add_argument("--online", action="store_true", help="FGFA on past frames only (no output delay)")
    det.add_argument("--seq-nms", action="store_true", help="Seq-NMS post-processing (= --postprocess seq-nms)")
    det.add_argument("--postprocess", choices=POSTPROCESS, default=None, help="box-level post-processing")
    det.add_argument("--split", default="val")
    det.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    det.add_argument("--save-detections", type=Path, default=None,
                     help="write detections in the ImageNet VID results format (frame_id class score x1 y1 x2 y2)")
    det.add_argument("--precision", choices=PRECISIONS, default="fp32", help=PRECISION_HELP)
    det.add_argument("--resize", type=options.resize, default=None, metavar="SHORTxLONG",
                     help="resize each frame so that its shorter side is SHORT and its longer at most LONG (the "
                          "papers': 600x1000); boxes are scored in the original pixels (default: as the weights "
                          "were trained: a folder-trained detector's data.size, frames at their own size for one "
                          "trained on synthetic data)")
    det.add_argument("--quiet", action="store_true", help="no progress bar")
    det.set_defaults(func=run_det)


def run_seg(args: argparse.Namespace) -> None:
    from featflow.data.cityscapes import CityscapesVideo
    from featflow.engine.checkpoint import load_flow_into, load_segmenter
    from featflow.engine.distributed import context
    from featflow.engine.seg_inference import Window, evaluate_segmentation
    from featflow.modeling.precision import autocast, autocast_dtype

    weights = resolve_weights(args.weights, what="--weights")
    model, meta = load_segmenter(weights, flow_net=args.flow_net)
    if args.flow_net and not meta.get("flow_net"):  # a per-frame model composed with pre-trained flow
        load_flow_into(model, args.flow_weights)
    model.for_inference(context().device)
    video = CityscapesVideo(args.data, args.split)
    device = context().device
    with autocast(device, autocast_dtype(args.precision, device, purpose="evaluation")):
        result = evaluate_segmentation(model, video, args.method, args.key_interval, args.save_predictions,
                                       progress=not args.quiet, window=Window(args.window, args.online))
    setting = (f"K={args.window}{', online' if args.online else ''}" if args.method == "fgfa"
               else f"l={result.key_interval}")
    print(f"{args.method} ({setting}): mIoU {100 * result.miou:.2f}% over {len(video)} snippets, "
          f"{result.fps:.2f} frames/s")
    for name, iou in zip(result.class_names, result.iou):
        print(f"  {name:<16}{'-' if iou != iou else f'{100 * iou:.2f}'}")
    if args.json:
        from featflow.utils.io import write_json

        write_json(args.json, {"weights": str(weights), "data": str(args.data), "split": args.split,
                               **result.to_json()})


def run_det(args: argparse.Namespace) -> None:
    from featflow.data.formats.cocovid import CocoVidDataset
    from featflow.data.resize import Resize
    from featflow.data.vid import VidDataset
    from featflow.engine.checkpoint import load_detector, trained_resize
    from featflow.engine.det_inference import DetStreamConfig, evaluate_detection
    from featflow.engine.distributed import context

    config = DetStreamConfig(args.method, args.key_interval, args.window, args.online, args.precision)
    if args.seq_nms and args.postprocess:
        raise FeatflowError("--seq-nms and --postprocess are alternatives; give one")
    if args.data.suffix == ".json":
        if args.images is None:
            raise FeatflowError("a CocoVID file needs --images (the Data/VID folder)")
        data = CocoVidDataset(args.data, args.images)
    else:
        data = VidDataset(args.data, args.split)
    weights = resolve_weights(args.weights, what="--weights")
    model, meta = load_detector(weights)
    model = model.for_inference(context().device)
    resize = Resize.from_size(args.resize) if args.resize else trained_resize(meta)
    postprocess = "seq-nms" if args.seq_nms else args.postprocess
    ev = evaluate_detection(model, data, config, postprocess, args.save_detections, progress=not args.quiet,
                            resize=resize)
    r = ev.result
    scaled = f" at a shorter side of {resize.short} (longer at most {resize.long})" if resize else ""
    print(f"{args.method}{' + ' + postprocess if postprocess else ''}: mAP {100 * r.map:.2f} (slow {100 * r.slow:.2f}, "
          f"medium {100 * r.medium:.2f}, fast {100 * r.fast:.2f}) over {len(data)} videos, {ev.frames} frames"
          f"{scaled}; {ev.ms_per_frame:.1f} ms per frame ({1000 / ev.ms_per_frame:.2f} frames/s)")
    if args.json:
        from featflow.utils.io import write_json

        write_json(args.json, {"weights": str(weights), "data": str(args.data), "split": args.split,
                               **ev.to_json()})
