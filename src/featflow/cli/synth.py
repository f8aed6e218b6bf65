"""``featflow synth``: synthetic videos with exact ground truth, written in a real dataset's layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from featflow.cli import options
from featflow.registry import FORMATS, GEOMETRIES


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="generate synthetic videos with exact ground truth in a real dataset layout",
                       description="Generate 'flying shapes' videos (exact labels, boxes, tracks and flow) and write "
                                   "them in the layout of Cityscapes, ImageNet VID or FlyingChairs.")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--videos", type=options.non_negative, default=10, help="training videos (pairs for flyingchairs)")
    p.add_argument("--val-videos", type=options.non_negative, default=0,
                   help="validation videos (pairs for flyingchairs)")
    p.add_argument("--frames", type=options.positive, default=None,
                   help="frames per video (default: 30 for cityscapes, which requires 30; 60 for vid; "
                        "10 for flyingchairs)")
    p.add_argument("--size", type=options.size, default=(256, 512), help="frame size HxW (default 256x512)")
    p.add_argument("--seed", type=options.non_negative, default=0)
    p.add_argument("--geometry", choices=GEOMETRIES, default="shapes",
                   help="'shapes': many small objects (default); 'vid': ImageNet VID's geometry, few large objects "
                        "with every per-object appearance change on")
    p.add_argument("--degradations", default=None,
                   help="'default', 'video' (default and per-object changes), 'off', or NAME=STRENGTH,... over the "
                        "default (motion_blur, defocus, noise, flicker, occluders, bursts, object_defocus, pose); "
                        "default: the geometry's own ('default' for shapes, 'video' for vid)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from featflow.data.synthetic import Degradations, SynthConfig
    from featflow.data.synthetic.export import export

    default_frames = {"cityscapes": 30, "flyingchairs": 10, "vid": 60}
    frames = args.frames if args.frames is not None else default_frames[args.format]
    config = SynthConfig.build(args.geometry, args.size[0], args.size[1], frames,
                               None if args.degradations is None else Degradations.parse(args.degradations))
    counts = export(args.format, args.out, config, args.videos, args.val_videos, args.seed, progress=not args.quiet)
    print(f"wrote {', '.join(f'{n} {split}' for split, n in counts.items())} "
          f"{'pairs' if args.format == 'flyingchairs' else 'videos'} to {args.out}")
