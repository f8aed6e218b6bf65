"""``featflow train flow|seg|det``: pre-train a flow net, train a segmenter or a detector from a config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from featflow.cli import options


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train models")
    train = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    flow = _add_task(train, "flow", "pre-train a flow network on pairs with known flow (the FlyingChairs step), or "
                     "fine-tune it on your own videos", "Train FlowNet / FlowNet Half / FlowNet Inception / "
                     "PWC-Net Lite with a multi-scale end-point-error loss on synthetic pairs (optionally mixed with "
                     "pairs on real photographs) or a FlyingChairs folder; or, with --unsupervised DIR, fine-tune it "
                     "on the videos of a folder, which need no flow ground truth (photometric + smoothness loss, "
                     "occlusions left out).", "see featflow/configs/flow/: flownet, flownet_half, flownet_inception, "
                     "pwcnet_lite, unsupervised, ...",
                     init=True, config_required=False)
    flow.add_argument("--unsupervised", type=Path, default=None, metavar="VIDEOS_DIR",
                      help="fine-tune on the videos (files, or folders of images) in this folder without flow "
                           "ground truth; the config defaults to 'unsupervised' (the shipped F, a short schedule)")
    _add_task(train, "seg", "train a video segmenter: per-frame, DFF, or a DFF ablation",
              "Train a per-frame segmentation model, or DFF end to end (from a per-frame checkpoint and pre-trained "
              "flow), with the segmentation loss only.", "see featflow/configs/seg/", init=True)
    _add_task(train, "det", "train a video detector: per-frame R-FCN, DFF or FGFA",
              "Train a per-frame R-FCN detector, or DFF / FGFA end to end (from a per-frame checkpoint and pre-trained "
              "flow), with the detection loss only.", "see featflow/configs/det/", init=True)


def _add_task(train: argparse._SubParsersAction, what: str, help: str, description: str, configs: str,
              init: bool, config_required: bool = True) -> argparse.ArgumentParser:
    p = train.add_parser(what, help=help, description=description)
    p.add_argument("--config", required=config_required,
                   help=f"a YAML file, or the name of a packaged config ({configs})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config setting, e.g. --set train.lr=0.01 (repeatable; checked like the file)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the config's output)")
    p.add_argument("--resume", action="store_true", help="continue from the output folder's last checkpoint")
    if init:
        p.add_argument("--init", default=None, help="override the checkpoint to start from (model.init; flow: init): "
                       "a file, run:NAME or a shipped model's name")
    p.add_argument("--iterations", type=options.positive, default=None, help="override train.iterations")
    p.add_argument("--time-limit", type=options.positive_number, default=None,
                   help="override train.time_limit_minutes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


#: Exit codes of a run a signal stopped (its checkpoint is saved): the shell's 128 + signal number.
INTERRUPTED_EXIT = {"SIGINT": 130, "SIGTERM": 143}


def _interrupted(result) -> int | None:
    """The exit code of a run a signal stopped, after saying so (None: the run ended by itself)."""
    if result.interrupted_by is None:
        return None
    print(f"featflow train: interrupted by {result.interrupted_by} at iteration {result.iterations}; the checkpoint "
          f"in {result.output} is saved: add --resume to go on", file=sys.stderr)
    return INTERRUPTED_EXIT.get(result.interrupted_by, 1)


def run(args: argparse.Namespace) -> int | None:
    from featflow.engine.config import load_config
    from featflow.engine.trainer import override_train

    if args.what == "flow":
        from featflow.engine.flow_training import FlowTrainConfig, train_flow
        from featflow.errors import FeatflowError

        overrides = list(args.set)
        if args.unsupervised is not None:
            overrides += [f"data.source={args.unsupervised}", "loss.kind=unsupervised"]
        elif args.config is None:
            raise FeatflowError("train flow: give --config NAME|FILE, or --unsupervised VIDEOS_DIR")
        if args.init is not None:
            overrides.append(f"init={args.init}")
        cfg = override_train(load_config(FlowTrainConfig, args.config or "unsupervised", kind="flow",
                                         overrides=overrides), args.iterations, args.time_limit)
        result = train_flow(cfg, out=args.out, resume=args.resume, progress=not args.quiet)
        if (code := _interrupted(result)) is not None:
            return code
        print(f"{cfg.model}: {result.iterations} iterations in {result.wall_seconds / 60:.1f} min, validation EPE "
              f"{result.last['val_epe']:.3f} px (stride-16 DFF output {result.last['val_epe_dff']:.3f} px); "
              f"weights in {result.output / 'model.safetensors'}")
        return None
    if args.what == "seg":
        from featflow.engine.seg_training import SegTrainConfig as Config, train_segmentation as train
        metric, label = "val_miou", "mIoU"
    else:
        from featflow.engine.det_training import DetTrainConfig as Config, train_detection as train
        metric, label = "val_map", "mAP"
    overrides = list(args.set) + ([f"model.init={args.init}"] if args.init is not None else [])
    cfg = override_train(load_config(Config, args.config, kind=args.what, overrides=overrides), args.iterations,
                         args.time_limit)  # --init as a setting: a run: reference or a shipped name resolves
    result = train(cfg, out=args.out, resume=args.resume, progress=not args.quiet)
    if (code := _interrupted(result)) is not None:
        return code
    print(f"{result.iterations} iterations in {result.wall_seconds / 60:.1f} min, validation {label} "
          f"{100 * result.last[metric]:.1f}%; weights in {result.output / 'model.safetensors'}")
    return None
