"""``featflow demo``: per-frame against DFF segmentation (and single frame, DFF, FGFA detection) on generated clips."""

from __future__ import annotations

import argparse
from pathlib import Path

from featflow.cli import options


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="per-frame vs DFF segmentation (and single frame vs DFF vs FGFA detection) on "
                                    "generated clips, with the shipped weights",
                       description="Generate short synthetic clips, segment them per frame and with DFF, and detect "
                                   "objects per frame, with DFF and with FGFA, using the weights shipped in the "
                                   "package; write side-by-side H.264 videos and a summary (accuracy, frames/s).")
    p.add_argument("--out", type=Path, default=Path("featflow_demo"), help="output folder (default featflow_demo/)")
    p.add_argument("--frames", type=options.positive, default=60)
    p.add_argument("--key-interval", type=options.positive, default=5)
    p.add_argument("--seed", type=options.non_negative, default=0)
    p.add_argument("--weights", type=Path, default=None, help="a DFF segmenter (default: the shipped one)")
    p.add_argument("--det-weights", type=Path, nargs=2, default=None, metavar=("DFF", "FGFA"),
                   help="a DFF and an FGFA detector (default: the shipped ones)")
    p.add_argument("--no-detection", action="store_true", help="segmentation only")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from featflow.apps.demo import run_demo

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
    print(f"videos: {summary.video}" + (f", {det.video}" if det else "")
          + f"; summary: {Path(args.out) / 'summary.md'}")
