"""Where do DFF and FGFA lose accuracy on fast objects: in the flow, or in warping the features?

The synthetic benchmark knows the exact flow of every pixel between any two frames, so the same trained
detectors can run with F replaced by that flow, brought to the feature grid in two ways:

- pooled: averaged over a 17x17 window around image pixel 16j (as ``ShallowFlow`` does for off-the-shelf flow);
- point: read at image pixel 16j, where feature pixel j sits.

If the exact flow does no better than the learned F, the loss comes from propagating stride-16 features,
not from flow errors. Two more views of DFF say where its loss is: its own model run on every frame ("DFF's
model, per frame": what its N_feat and head give before any propagation), and each row's mAP by frames since the
key frame (0: the key frame itself; the other frames of each interval in three groups), scored on the same frames.

Runs on the first VIDEOS held-out videos of a VID-layout export that carries its generator settings
(``featflow_synth.json``, written by ``featflow synth --format vid``) and writes ``reports/STEM.{md,json}``
(default ``detection_exact_flow``). Each exact-flow row is compared with its method's learned F, and every row
with single frame, per motion category with a paired 95% bootstrap interval over the videos (``--bootstrap``
resamples; 0: none).

    python benchmarks/exact_flow_diagnostic.py --data data/vid_synth_val --videos 12 \
        --frame runs/det/frame_r18_long/model.safetensors \
        --dff runs/det/dff_r18_inception/model.safetensors \
        --fgfa runs/det/fgfa_r18_inception/model.safetensors   # optional: without it, no FGFA rows
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import weakref
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from featflow.analysis.reports import machine_description, write_report
from featflow.cli.options import report_stem
from featflow.data.synthetic.scene import SynthConfig
from featflow.data.synthetic.video import SyntheticVideo
from featflow.data.vid import VidDataset
from featflow.engine.checkpoint import load_detector
from featflow.engine.det_inference import ground_truth
from featflow.evaluation.bootstrap import vid_map_differences
from featflow.evaluation.vid_map import evaluate_vid
from featflow.methods.detection import VideoDetector
from featflow.methods.schedulers import FixedInterval
from featflow.methods.streams import StreamOptions, run_stream
from featflow.modeling.feature_net import FEATURE_STRIDE
from featflow.modeling.preprocess import image_to_tensor
from featflow.structures import Detections, VideoGroundTruth

SAMPLINGS = ("pooled", "point")
KEY_INTERVAL = 10  # DFF's l, as the detection reports use it
#: Frames since the key frame, grouped: the key frame itself, then the rest of its interval in thirds.
OFFSET_GROUPS = ("0 (key frame)", "1-3", "4-6", "7-9")
PER_FRAME_DFF = "DFF's model, per frame"


def key_offset_groups(truth: list[VideoGroundTruth], key_interval: int = KEY_INTERVAL) -> list[list[np.ndarray]]:
    """Per video and frame, each box's group of OFFSET_GROUPS: how many frames its frame lies after the last key
    frame of a fixed interval starting at frame 0."""
    def group(offset: int) -> str:
        return OFFSET_GROUPS[0] if offset == 0 else OFFSET_GROUPS[min(1 + (offset - 1) * 3 // (key_interval - 1), 3)]

    return [[np.full(len(boxes), group(t % key_interval), dtype=object).astype(str)
             for t, boxes in enumerate(gt.boxes)] for gt in truth]


def _fingerprint(image: Tensor) -> bytes:
    return hashlib.blake2b(image.detach().cpu().numpy().tobytes(), digest_size=16).digest()


class ExactFlow:
    """A flow source that answers with the generator's exact current -> key flow. A stream hands its source the
    frames as ``image_to_tensor`` made them from ``frames``, so each is recognised by its content (then by
    identity while that tensor lives); two identical frames of a video could not be told apart, and are refused."""

    def __init__(self, video: SyntheticVideo, sampling: str, frames: list[np.ndarray]) -> None:
        self.video, self.sampling = video, sampling
        self.by_content: dict[bytes, int] = {}
        for t, frame in enumerate(frames):
            seen = self.by_content.setdefault(_fingerprint(image_to_tensor(frame)), t)
            if seen != t:
                raise ValueError(f"frames {seen} and {t} of video {video.index} are identical: the exact flow "
                                 "cannot tell which one a stream hands it")
        self.known: dict[int, tuple[weakref.ref, int]] = {}  # id -> (the tensor, its frame index)

    def index(self, image: Tensor) -> int:
        """The frame index of a tensor the stream made from one of ``frames``."""
        known = self.known.get(id(image))
        if known is not None and known[0]() is image:
            return known[1]
        t = self.by_content[_fingerprint(image)]
        self.known[id(image)] = (weakref.ref(image), t)
        return t

    def __call__(self, current: Tensor, key: Tensor) -> tuple[Tensor, None]:
        flow, _ = self.video.flow(self.index(current), self.index(key))  # (H, W, 2) image pixels
        full = torch.from_numpy(flow).permute(2, 0, 1).unsqueeze(0)  # (1, 2, H, W)
        if self.sampling == "point":
            grid = full[..., ::FEATURE_STRIDE, ::FEATURE_STRIDE]
        else:
            grid = F.avg_pool2d(full, FEATURE_STRIDE + 1, stride=FEATURE_STRIDE, padding=FEATURE_STRIDE // 2,
                                count_include_pad=False)
        return grid / FEATURE_STRIDE, None  # (1, 2, ceil(H/16), ceil(W/16)) feature pixels


def synth_video(root: Path, index: int, split: str) -> SyntheticVideo:
    meta = json.loads((root / "featflow_synth.json").read_text())
    return SyntheticVideo(SynthConfig.from_dict(meta["config"]), meta["seed"], index, split)


def detect(model: VideoDetector, method: str, frames: list[np.ndarray], source: ExactFlow | None) -> list[Detections]:
    """One video's detections by the library's stream of ``method`` (DFF: key interval 10; FGFA: 21 frames,
    offline), with F replaced by ``source`` when given."""
    out = [Detections.empty()] * len(frames)
    options = StreamOptions(scheduler=FixedInterval(10), window=10, source=source)
    for item, detections, _ in run_stream(model, frames, method, options):
        out[item.index] = detections
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/vid_synth_val"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--frame", required=True)
    parser.add_argument("--dff", required=True)
    parser.add_argument("--fgfa", default=None, help="the FGFA detector (default: no FGFA rows)")
    parser.add_argument("--report", type=Path, default=Path("reports"))
    parser.add_argument("--samplings", nargs="+", choices=SAMPLINGS, default=list(SAMPLINGS),
                        help="how the exact flow is brought to the feature grid (default: both)")
    parser.add_argument("--stem", type=report_stem, default="detection_exact_flow",
                        help="the report's file name, without extension")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="resamples of the videos for each difference's 95%% interval (0: none)")
    args = parser.parse_args(argv)
    if __package__ in (None, ""):  # run as a file: the harness's modules sit at the repository root
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.appearance import group_maps
    from benchmarks.cells import difference

    if not (args.data / "featflow_synth.json").is_file():
        parser.error(f"{args.data} has no featflow_synth.json: the exact flow needs data exported by "
                     "`featflow synth --format vid`, whose generator settings it records")
    if args.videos < 1:
        parser.error(f"--videos must be at least 1, got {args.videos}")
    if args.bootstrap < 0:
        parser.error(f"--bootstrap must be 0 or more, got {args.bootstrap}")
    for weights in (args.frame, args.dff, args.fgfa):
        if weights is not None and not Path(weights).is_file():
            parser.error(f"no weights at {weights}")
    data = VidDataset(args.data, args.split).first(args.videos)
    truth = ground_truth(data)
    runs = [("single frame", "frame", args.frame, None)]
    for method, weights in (("dff", args.dff), ("fgfa", args.fgfa)):
        if weights is None:
            continue
        runs += [(f"{method.upper()}, learned F", method, weights, None)]
        runs += [(f"{method.upper()}, exact flow ({s})", method, weights, s) for s in args.samplings]
        if method == "dff":
            runs += [(PER_FRAME_DFF, "frame", weights, None)]
    rows, outputs = [], {}
    for name, method, weights, sampling in runs:
        model = load_detector(weights)[0].for_inference()
        detections = []
        for v in tqdm(range(len(data)), desc=name, leave=False):
            frames = [data.image(v, t) for t in range(data.num_frames(v))]
            source = ExactFlow(synth_video(args.data, v, args.split), sampling, frames) if sampling else None
            detections.append(detect(model, method, frames, source))
        outputs[name] = detections
        r = evaluate_vid(detections, truth, len(data.classes))
        rows.append({"name": name, "method": method, "weights": weights, "flow": sampling or "learned",
                     **r.to_json()})
        print(f"{name}: mAP {100 * r.map:.1f} (slow {100 * r.slow:.1f}, medium {100 * r.medium:.1f}, "
              f"fast {100 * r.fast:.1f})", flush=True)
    offsets = [{"name": name, "map": group_maps(outputs[name], truth, len(data.classes),
                                                key_offset_groups(truth, KEY_INTERVAL), OFFSET_GROUPS)}
               for name, method, weights, _ in runs if weights == args.dff or name == "single frame"]
    comparisons = []
    if args.bootstrap:
        for name, method, weights, sampling in runs[1:]:
            against = ["single frame"] + ([f"{method.upper()}, learned F"] if sampling else [])
            for base in against:
                d = vid_map_differences(outputs[base], outputs[name], truth, len(data.classes), args.bootstrap)
                comparisons.append({"row": name, "against": base, **{c: v.to_json() for c, v in d.items()}})
    lines = ["# DFF and FGFA with the exact flow", "",
             f"Held-out data: the first {len(data)} videos of `{args.data}` (split `{args.split}`). Detectors: "
             f"single frame `{args.frame}`, DFF `{args.dff}`, "
             + (f"FGFA `{args.fgfa}`" if args.fgfa else "no FGFA") + "; F replaced by the generator's "
             "exact flow, pooled over 17x17 around image pixel 16j or read at pixel 16j. DFF: key interval 10; "
             "FGFA: 21 frames, offline.", "",
             "| method | mAP (%) | slow | medium | fast |", "|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {100 * r['map']:.1f} | {100 * r['slow']:.1f} | {100 * r['medium']:.1f} | "
              f"{100 * r['fast']:.1f} |" for r in rows]
    if comparisons:
        lines += ["", f"Differences in mAP points, with paired 95% bootstrap intervals over the {len(data)} videos "
                  f"({args.bootstrap} resamples):", "",
                  "| row | against | all | slow | medium | fast |", "|---|---|---|---|---|---|"]
        lines += [f"| {c['row']} | {c['against']} | " + " | ".join(difference(c[k]) for k in
                                                                  ("all", "slow", "medium", "fast")) + " |"
                  for c in comparisons]
    lines += ["", f"mAP (%) by frames since the key frame (DFF's key interval {KEY_INTERVAL}; each group scored on its "
              "own frames, as a motion category is; single frame and DFF's model per frame run every frame, so "
              "their groups differ only by which frames they hold):", "",
              "| method | " + " | ".join(OFFSET_GROUPS) + " |", "|---" * (len(OFFSET_GROUPS) + 1) + "|"]
    lines += [f"| {o['name']} | " + " | ".join("-" if o["map"][g] is None else f"{100 * o['map'][g]:.1f}"
                                               for g in OFFSET_GROUPS) + " |" for o in offsets]
    command = "python " + " ".join([sys.argv[0].replace(str(Path.cwd()) + "/", "")] + sys.argv[1:])
    write_report(args.report, args.stem, "\n".join(lines),
                 {"videos": len(data), "rows": rows, "comparisons": comparisons, "by_key_offset": offsets,
                  "key_interval": KEY_INTERVAL, "machine": machine_description()},
                 command)


if __name__ == "__main__":
    main()
