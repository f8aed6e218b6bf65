"""The ``featflow`` command line: one module per command, each with ``add`` (its options) and ``run``.

Options are checked by the types in ``featflow.cli.options`` before any work starts. A ``FeatflowError`` (bad input:
a path, a config, a file's content) is printed as one line with exit code 2; any other exception is a bug and keeps
its traceback. Building the parser imports no torch, so ``featflow --help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from featflow.cli import bench, check_data, demo, eval, flow, infer, models, options, pack, report, synth, train
from featflow.errors import FeatflowError

#: The commands in the order ``featflow --help`` lists them.
COMMANDS = (demo, infer, models, report, synth, check_data, train, flow, eval, bench, pack)
#: Commands that run as one job across the processes torchrun starts (single-process without it).
DISTRIBUTED_COMMANDS: tuple[str, ...] = ("train", "eval")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="featflow", description="Flow-based video recognition (DFF, FGFA).")
    parser.add_argument("--threads", type=options.positive, default=None,
                        help="CPU threads of this process. Default: one per core, and for featflow infer its "
                             "share of the cores among the featflow infer processes running (re-counted every "
                             "second), so that several streams on one machine do not slow each other down")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add(sub)
    return parser


def use_threads(threads: int) -> None:
    """Run this process's CPU work on ``threads`` threads: OpenMP's count (read when torch starts) and, where torch
    has already started, its intra-op pool."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        use_threads(args.threads)
    stdout = sys.stdout
    try:
        if args.command in DISTRIBUTED_COMMANDS:
            from featflow.engine.distributed import init_distributed

            if not init_distributed().is_main:  # under torchrun only rank 0 prints results
                sys.stdout = open(os.devnull, "w")
        code = args.func(args)
    except FeatflowError as err:
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
