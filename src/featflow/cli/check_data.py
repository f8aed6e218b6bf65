"""``featflow check-data``: check a dataset folder (its layout, counts, classes, tracks, motion) and list its errors."""

from __future__ import annotations

import argparse
from pathlib import Path

from featflow.cli import options


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-data", help="check a dataset folder you wrote: layout, counts, classes, errors",
                       description="Detect the layout of a dataset folder (Cityscapes, ImageNet VID, ImageNet DET, "
                                   "CocoVID, FlyingChairs), read it as training and evaluation do, and report its "
                                   "counts per split, classes, tracks per video, motion categories and every error "
                                   "found, each naming its file (an ILSVRC2015 folder's DET images: the split "
                                   "'det'). Exit code 0 when there is no error, 2 otherwise.")
    p.add_argument("data", type=Path, metavar="DIR", help="a dataset folder, or a CocoVID .json file")
    p.add_argument("--split", default=None,
                   help="check this split only (default: every split found; CocoVID: the file NAME.json or "
                        "*_NAME.json)")
    p.add_argument("--images", type=Path, default=None,
                   help="CocoVID: the folder its file names start in (default: a Data/VID folder beside the file or "
                        "one level up)")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    p.add_argument("--skip-decode", action="store_true",
                   help="check that images exist without decoding them (much faster on a large data set)")
    p.add_argument("--max-errors", type=options.non_negative, default=20,
                   help="errors printed (default 20; --json has them all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from featflow.data.check import check_data
    from featflow.evaluation.vid_map import motion_categories

    report = check_data(args.data, args.split, images=args.images, motion=motion_categories,
                        decode=not args.skip_decode, progress=not args.quiet)
    print("\n".join(report.lines(args.max_errors)))
    if args.json:
        from featflow.utils.io import write_json

        write_json(args.json, report.to_json())
    return 0 if report.ok else 2
