"""``featflow flow``: the flow from a current frame to a key frame, as a .flo file."""

from __future__ import annotations

import argparse
from pathlib import Path

from featflow.errors import FeatflowError


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flow", help="estimate the flow from a current frame to a key frame",
                       description="For each pixel of CURRENT, estimate its displacement to KEY (the direction DFF "
                                   "warps with), at CURRENT's full resolution, and write it as a .flo file.")
    p.add_argument("current", type=Path)
    p.add_argument("key", type=Path)
    p.add_argument("--out", required=True, type=Path, help="output .flo file")
    p.add_argument("--weights", type=Path, default=None,
                   help="flow-net weights (default: the shipped PWC-Net Lite, reports/flow_pwcnet.md)")
    p.add_argument("--stride", type=int, choices=(8, 16), default=8,
                   help="8: FlowNet's finest prediction (default); 16: the output DFF warps features with")
    p.add_argument("--visualize", type=Path, default=None, help="also write a colour-coded PNG of the flow")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from featflow.data.formats.flo import write_flo
    from featflow.data.io import read_image, write_image
    from featflow.engine.checkpoint import load_flow_net
    from featflow.engine.flow_inference import FlowNetEstimator
    from featflow.utils.visualize import flow_to_color

    current, key = read_image(args.current), read_image(args.key)
    if current.shape != key.shape:
        raise FeatflowError(f"{args.current} is {current.shape[1]}x{current.shape[0]} but {args.key} is "
                            f"{key.shape[1]}x{key.shape[0]}: the two frames must have the same size")
    net, meta = load_flow_net(args.weights)
    flow = FlowNetEstimator(net, stride=args.stride)(current, key)
    write_flo(args.out, flow)
    if args.visualize:
        write_image(args.visualize, flow_to_color(flow))
    magnitude = (flow ** 2).sum(-1) ** 0.5
    print(f"{meta['featflow.model']}: {flow.shape[1]}x{flow.shape[0]} flow, mean |flow| {magnitude.mean():.2f} px, "
          f"max {magnitude.max():.2f} px -> {args.out}")
