"""Where do DFF and FGFA lose accuracy on fast objects: in the flow, or in warping the features?

The synthetic benchmark knows the exact flow of every pixel between any two frames, so the same trained
detectors can run with F replaced by that flow, brought to the feature grid in two ways:

- pooled: averaged over a 17x17 window around image pixel 16j (as ``ShallowFlow`` does for off-the-shelf flow);
- point: read at image pixel 16j, where feature pixel j sits.

If the exact flow does no better than the learned F, the loss comes from propagating stride-16 features,
not from flow errors. Runs on the first VIDEOS held-out videos of a VID-layout export that carries its
generator settings (``featflow_synth.json``, written by ``featflow data synth --format vid``) and writes
``reports/detection_exact_flow.{md,json}``.

    python scripts/exact_flow_diagnostic.py --data data/vid_synth_val --videos 12 \
        --frame runs/det/frame_r18_long/model.safetensors \
        --dff runs/det/dff_r18_inception/model.safetensors \
        --fgfa runs/det/fgfa_r18_inception/model.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from featflow.analysis.reports import machine_description, write_report
from featflow.data.synthetic.scene import SynthConfig
from featflow.data.synthetic.video import SyntheticVideo
from featflow.data.vid import VidDataset
from featflow.engine.checkpoint import load_detector
from featflow.engine.det_inference import ground_truth
from featflow.evaluation.vid_map import evaluate_vid
from featflow.methods.detection import VideoDetector
from featflow.methods.schedulers import FixedInterval
from featflow.methods.streams import AggregatedFeatures, KeyFrameFeatures
from featflow.modeling.feature_net import FEATURE_STRIDE
from featflow.modeling.preprocess import image_to_tensor
from featflow.structures import Detections

SAMPLINGS = ("pooled", "point")


class ExactFlow:
    """A flow source that answers with the generator's exact current -> key flow. The streams hand a source the
    very tensors that were pushed, so the frames are recognised by identity (``frames``: id -> frame index)."""

    def __init__(self, video: SyntheticVideo, sampling: str) -> None:
        self.video, self.sampling = video, sampling
        self.frames: dict[int, int] = {}

    def __call__(self, current: Tensor, key: Tensor) -> tuple[Tensor, None]:
        flow, _ = self.video.flow(self.frames[id(current)], self.frames[id(key)])  # (H, W, 2) image pixels
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


@torch.no_grad()
def detect(model: VideoDetector, method: str, images: list[Tensor], source: ExactFlow | None) -> list[Detections]:
    size = tuple(images[0].shape[-2:])
    out = [Detections.empty()] * len(images)
    if method == "fgfa":
        stream = AggregatedFeatures(model, 10, source=source)
        for image in images:
            for t, features, _ in stream.push(image):
                out[t] = model.detect(features, size)[0]
        for t, features, _ in stream.finish():
            out[t] = model.detect(features, size)[0]
    else:
        keyed = KeyFrameFeatures(model, method == "dff", FixedInterval(10), source=source)
        for t, image in enumerate(images):
            features, _ = keyed.step(image)
            out[t] = model.detect(features, size)[0]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/vid_synth_val"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--frame", required=True)
    parser.add_argument("--dff", required=True)
    parser.add_argument("--fgfa", required=True)
    parser.add_argument("--report", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    if not (args.data / "featflow_synth.json").is_file():
        parser.error(f"{args.data} has no featflow_synth.json: the exact flow needs data exported by "
                     "`featflow synth --format vid`, whose generator settings it records")
    if args.videos < 1:
        parser.error(f"--videos must be at least 1, got {args.videos}")
    for weights in (args.frame, args.dff, args.fgfa):
        if not Path(weights).is_file():
            parser.error(f"no weights at {weights}")
    data = VidDataset(args.data, args.split).first(args.videos)
    truth = ground_truth(data)
    runs = [("single frame", "frame", args.frame, None)]
    for method, weights in (("dff", args.dff), ("fgfa", args.fgfa)):
        runs += [(f"{method.upper()}, learned F", method, weights, None)]
        runs += [(f"{method.upper()}, exact flow ({s})", method, weights, s) for s in SAMPLINGS]
    rows = []
    for name, method, weights, sampling in runs:
        model = load_detector(weights)[0].for_inference()
        detections = []
        for v in tqdm(range(len(data)), desc=name, leave=False):
            video = synth_video(args.data, v, args.split)
            images = [image_to_tensor(data.image(v, t)) for t in range(data.num_frames(v))]
            source = ExactFlow(video, sampling) if sampling else None
            if source is not None:
                source.frames = {id(image): t for t, image in enumerate(images)}
            detections.append(detect(model, method, images, source))
        r = evaluate_vid(detections, truth, len(data.classes))
        rows.append({"name": name, "method": method, "weights": weights, "flow": sampling or "learned",
                     **r.to_json()})
        print(f"{name}: mAP {100 * r.map:.1f} (slow {100 * r.slow:.1f}, medium {100 * r.medium:.1f}, "
              f"fast {100 * r.fast:.1f})", flush=True)
    lines = ["# DFF and FGFA with the exact flow", "",
             f"Held-out data: the first {len(data)} videos of `{args.data}` (split `{args.split}`). The detectors "
             "trained for `reports/detection.md`; F replaced by the generator's exact flow, pooled over 17x17 "
             "around image pixel 16j or read at pixel 16j. DFF: key interval 10; FGFA: 21 frames, offline.", "",
             "| method | mAP (%) | slow | medium | fast |", "|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {100 * r['map']:.1f} | {100 * r['slow']:.1f} | {100 * r['medium']:.1f} | "
              f"{100 * r['fast']:.1f} |" for r in rows]
    command = "python " + " ".join([sys.argv[0].replace(str(Path.cwd()) + "/", "")] + sys.argv[1:])
    write_report(args.report, "detection_exact_flow", "\n".join(lines),
                 {"videos": len(data), "rows": rows, "machine": machine_description()}, command)


if __name__ == "__main__":
    main()
