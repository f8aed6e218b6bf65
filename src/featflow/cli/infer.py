"""``featflow infer``: a model over any video or image folder, as a stream (annotated video + JSON lines)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path

from featflow.cli import options
from featflow.errors import FeatflowError
from featflow.registry import METHODS, PRECISIONS, TASKS, default_model


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
    p.add_argument("--out", type=Path, default=None,
                   help="annotated video: .mp4, .mkv, .webm, .avi or .gif (default SOURCE_TASK_METHOD.mp4)")
    p.add_argument("--json", type=Path, default=None, help="per-frame results as JSON lines")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default: bf16 where the device runs it natively, else fp32), fp32, bf16 (CPUs with "
                        "AVX512-BF16 / AMX, GPUs) or fp16 (GPUs): autocast of the feature computation; an explicit "
                        "bf16 or fp16 falls back to fp32 with a warning where the device lacks it"),
    p.add_argument("--flow-batch", type=options.positive, default=1,
                   help="DFF / SFF offline: F on this many propagated frames of a key interval at once (up to l - 1), "
                        "those frames written up to that many frames late")
    p.add_argument("--compile", action="store_true",
                   help="run N_feat, F, the embedding net and a segmenter's labels through torch.compile with "
                        "frozen weights: on the CPU up to 17%% faster per frame at the papers' sizes "
                        "(reports/speed.md), after a first frame that compiles (seconds to a minute): for long videos")
    p.add_argument("--fps", type=options.positive_number, default=None,
                   help="frame rate of an image folder (default 25)")
    p.add_argument("--min-score", type=options.probability, default=0.3,
                   help="boxes drawn and written to the JSON from this score (default 0.3)")
    p.add_argument("--start", type=options.non_negative, default=0,
                   help="skip the source's first N frames (JSON frame indices stay those of the source)")
    p.add_argument("--max-frames", type=options.positive, default=None, help="process at most M frames")
    resize = p.add_mutually_exclusive_group()
    resize.add_argument("--resize", type=options.resize, default=None, metavar="SHORTxLONG",
                        help="detection: resize each frame so that its shorter side is SHORT and its longer at most "
                             "LONG before the model (boxes come back in the frame's pixels); default: as the weights "
                             "were trained (a folder-trained detector: its data.size, e.g. 600x1000)")
    resize.add_argument("--no-resize", action="store_true", help="detection: frames at their own size")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_outputs(source: Path, out: Path | None, json_path: Path | None) -> None:
    """Refuse, before any work starts, outputs that cannot be written: a folder that is missing or not writable,
    an ``--out`` that is a directory, has an unknown extension, or names the source or the ``--json`` file."""
    from featflow.data.video import video_format

    for option, path in (("--out", out), ("--json", json_path)):
        if path is None:
            continue
        if path.is_dir():
            raise FeatflowError(f"{option} {path} is a directory; name a file")
        folder = path.parent
        if not folder.is_dir():
            raise FeatflowError(f"{option} {path}: the folder {folder} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise FeatflowError(f"{option} {path}: the folder {folder} is not writable")
        if path.exists() and not os.access(path, os.W_OK):
            raise FeatflowError(f"{option} {path}: the file is not writable")
        if _same(path, source):
            raise FeatflowError(f"{option} {path} is the source; name another file")
    if out is not None:
        video_format(out)
        if json_path is not None and _same(out, json_path):
            raise FeatflowError(f"--out and --json name the same file ({out})")


class _Signals:
    """SIGINT / SIGTERM set a flag (the run ends after the frame in hand, keeping what it wrote); a second one
    stops at once (KeyboardInterrupt: temporary files are removed, nothing is kept)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> _Signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def __call__(self) -> bool:
        return self.received is not None


def _core_share(device: str) -> contextlib.AbstractContextManager:
    """On the CPU, unless the threads were set (``featflow --threads``, ``OMP_NUM_THREADS``): this process's share of
    the cores among the featflow processes running (``featflow.utils.threads``); otherwise nothing."""
    if device != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return contextlib.nullcontext()
    import torch

    from featflow.utils.threads import CoreShare

    return CoreShare(torch.get_num_threads())


def run(args: argparse.Namespace) -> int:
    import torch

    from featflow.apps.infer import run_infer
    from featflow.data.video import check_image_sizes, open_source
    from featflow.engine.predictor import load

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise FeatflowError("--device cuda: no CUDA device is available here")
    source = open_source(args.source, args.fps)
    check_image_sizes(source)
    out = args.out
    if out is None and args.json is None:
        out = Path(f"{Path(args.source).stem}_{args.task}_{args.method or 'default'}.mp4")
    check_outputs(Path(args.source), out, args.json)
    if source.num_frames is not None and args.start >= source.num_frames:
        raise FeatflowError(f"--start {args.start}: {args.source} has {source.num_frames} frames")
    name = args.weights or default_model(args.task, args.method)
    model = load(name, args.device, compile=args.compile)
    if model.task != args.task:
        raise FeatflowError(f"{name} holds a {'segmenter' if model.task == 'seg' else 'detector'}; --task {args.task} "
                            f"needs a {'segmenter' if args.task == 'seg' else 'detector'}")
    if args.out is None and args.json is None:
        out = Path(f"{Path(args.source).stem}_{args.task}_{args.method or model.default_method}.mp4")
    if (args.resize or args.no_resize) and model.task != "det":
        raise FeatflowError("--resize / --no-resize: segmenters see the frames at their own size")
    if args.resize:
        from featflow.data.resize import Resize

        model.resize = Resize.from_size(args.resize)
    elif args.no_resize:
        model.resize = None
    with _Signals() as signals, _core_share(args.device) as share:
        summary = run_infer(source, model, args.method, args.key_interval, args.window, args.online, out, args.json,
                            progress=not args.quiet, min_score=args.min_score, start=args.start,
                            max_frames=args.max_frames, stop=signals, precision=args.precision,
                            flow_batch=args.flow_batch,
                            between_frames=share.update if share else None)
    if summary.interrupted:
        what = " and ".join(str(p) for p in (summary.video, summary.json) if p) or "nothing"
        name = signal.Signals(signals.received).name
        print(f"featflow infer: interrupted by {name}: {summary.frames} frames written ({what})", file=sys.stderr)
        return 128 + signals.received
    print(f"{summary.frames} frames, {summary.key_frames} key frames; {summary.model_fps:.1f} frames/s in the model, "
          f"{summary.wall_fps:.1f} end to end ({summary.task} {summary.method}, {args.device})")
    for what, path in (("video", summary.video), ("results", summary.json)):
        if path:
            print(f"{what}: {path}")
    if summary.error:
        print(f"featflow infer: error: {summary.error}", file=sys.stderr)
        return 1
    return 0
