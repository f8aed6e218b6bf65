"""The ``featflow`` command line.

Each sub-command parses its arguments here and calls one library function; errors a user can fix
(bad paths, sizes, configs, files) are printed as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import json
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


def _command_line() -> str:
    """The command as typed, for reports to say how to reproduce them."""
    return "featflow " + " ".join(sys.argv[1:])


# ---- featflow synth -------------------------------------------------------------------------------


def _cmd_synth(args: argparse.Namespace) -> None:
    from featflow.data.synthetic import Degradations, SynthConfig
    from featflow.data.synthetic.export import export

    frames = args.frames if args.frames is not None else (30 if args.format == "cityscapes" else 10 if args.format == "flyingchairs" else 60)
    config = SynthConfig(height=args.size[0], width=args.size[1], num_frames=frames,
                         degradations=Degradations.parse(args.degradations))
    counts = export(args.format, args.out, config, args.videos, args.val_videos, args.seed, progress=not args.quiet)
    print(f"wrote {', '.join(f'{n} {split}' for split, n in counts.items())} "
          f"{'pairs' if args.format == 'flyingchairs' else 'videos'} to {args.out}")


def _add_synth(sub: argparse._SubParsersAction) -> None:
    from featflow.data.synthetic.export import FORMATS

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
    p.add_argument("--degradations", default="default",
                   help="'default', 'off', or NAME=STRENGTH,... over the default (motion_blur, defocus, noise, "
                        "flicker, occluders)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synth)


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


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: cost table, flow accuracy and speed, synthetic data speed")
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    flops = bench.add_parser("flops", help="the talk's 1/r table (N_feat vs F multiply-adds) beside the paper's",
                             description="Count multiply-adds of ResNet-50/101 (N_feat) and FlowNet, FlowNet Half, "
                                         "FlowNet Inception (F) and print 1/r = O(N_feat) / O(F) beside the paper.")
    flops.add_argument("--json", action="store_true", help="print JSON (every cell with the paper's value and ours)")
    flops.add_argument("--size", type=parse_size, default=(600, 1000), help="input size HxW (default 600x1000)")
    flops.add_argument("--report", type=Path, default=None, help="also write cost.md and cost.json into this folder")
    flops.set_defaults(func=_cmd_bench_flops)


# ---- entry point ----------------------------------------------------------------------------------

_COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_synth, _add_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="featflow", description="Flow-based video recognition (DFF, FGFA).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (UserError, ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as err:
        print(f"featflow {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"featflow {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
