"""``featflow infer``: a model over any video or image folder, as a stream (annotated video + JSON lines)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from featflow.cli import options
from featflow.errors import FeatflowError
from featflow.registry import METHODS, TASKS, default_model


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="segment or detect objects in any video (or image folder) as a stream",
                       description="Run a shipped or trained model over a video file (anything PyAV decodes) or a "
                                   "folder of images (natural sort order), frame by frame with bounded memory; write "
                                   "the annotated video at the source's frame rate and per-frame JSON lines.")
    p.add_argument("source", type=Path, help="a video file or a folder of images")
    p.add_argument("--task", choices=TASKS, default="seg")
    p.add_argument("--method", choices=METHODS, default=None,
                   help="default: the best the weights support (det: fgfa, seg: dff)")
    p.add_argument("--key-interval", type=options.positive, default=None,
                   help="DFF's key interval (default: seg 5, det 10)")
    p.add_argument("--window", type=options.non_negative, default=10, help="FGFA aggregates 2K+1 frames (default K=10)")
    p.add_argument("--online", action="store_true", help="FGFA on past frames only (no delay)")
    p.add_argument("--weights", default=None, help="a shipped model's name (featflow models) or a weights file")
    p.add_argument("--out", type=Path, default=None, help="annotated video (.mp4; default SOURCE_TASK_METHOD.mp4)")
    p.add_argument("--json", type=Path, default=None, help="per-frame results as JSON lines")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--fps", type=options.positive_number, default=None,
                   help="frame rate of an image folder (default 25)")
    p.add_argument("--min-score", type=options.probability, default=0.3,
                   help="boxes drawn from this score (default 0.3)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from featflow.apps.infer import run_infer
    from featflow.data.video import open_source
    from featflow.engine.predictor import load

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise FeatflowError("--device cuda: no CUDA device is available here")
    source = open_source(args.source, args.fps)
    name = args.weights or default_model(args.task, args.method)
    model = load(name, args.device)
    if model.task != args.task:
        raise FeatflowError(f"{name} holds a {'segmenter' if model.task == 'seg' else 'detector'}; --task {args.task} "
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
