"""``featflow pack``: trained weights in float16, as the package ships them."""

from __future__ import annotations

import argparse
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pack", help="store trained weights in float16 for shipping",
                       description="Copy a featflow weights file with its floating-point tensors in float16 (half "
                                   "the size; the loaders convert back to float32). This is how the package's "
                                   "weights are made from training runs.")
    p.add_argument("weights", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from featflow.engine.checkpoint import pack_weights

    size = pack_weights(args.weights, args.out)
    print(f"wrote {args.out} ({size / 2**20:.1f} MiB, float16)")
