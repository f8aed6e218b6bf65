"""Training video detectors: the per-frame R-FCN, DFF end to end, and FGFA.

- per-frame: N_feat + RPN + R-FCN on single frames (``model.flow_net: null``);
- DFF: starts from a per-frame checkpoint (``model.init``) and pre-trained flow; trained on (current, key)
  pairs, key = current + U{-max_offset..0}, with the detection loss only;
- FGFA (``model.aggregation: adaptive``): two reference frames at current + U{-max_offset..max_offset}, warped
  to the current frame and aggregated; ``freeze_flow`` gives "FGFA without end-to-end training", no flow net
  gives "without flow", ``aggregation: mean`` without flow "without flow and adaptive weights".
Held-out metric during training: VID mAP@0.5 over single held-out frames.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import Tensor, nn

from featflow.data.detection_clips import ReferenceSampling, SyntheticDetectionClips, VidDetectionClips, collate_clips
from featflow.data.synthetic import CLASS_NAMES, Degradations, SynthConfig
from featflow.data.vid import VidDataset
from featflow.engine.checkpoint import read_weights, save_detector
from featflow.engine.config import check_paths, to_dict
from featflow.engine.feature_scale import FeatureScale
from featflow.engine.models import DetModelConfig, build_video_model, check_sources
from featflow.engine.trainer import DataConfig, EvalConfig, OptimConfig, TrainResult, TrainTask, to_device, train
from featflow.evaluation.vid_map import evaluate_vid
from featflow.methods.detection import VideoDetector
from featflow.modeling.heads import total_loss
from featflow.structures import VideoGroundTruth


@dataclass(frozen=True)
class DetTrainConfig:
    model: DetModelConfig = field(default_factory=DetModelConfig)
    data: DataConfig = field(default_factory=DataConfig)  # source: synthetic or an ImageNet VID-layout folder
    train: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: str = "runs/det"


def reference_sampling(cfg: DetModelConfig, max_offset: int) -> ReferenceSampling:
    """What a training sample holds besides the current frame, by method."""
    if cfg.aggregation:
        return ReferenceSampling(2, -max_offset, max_offset)
    if cfg.flow_net is None:
        return ReferenceSampling(0)
    return ReferenceSampling(1, -max_offset, 0)


def training_loss(model: nn.Module, batch: dict) -> Tensor:
    """The training loss of a batch of clips: the RPN and R-FCN losses on the current frame's features."""
    features = model.clip_features(batch["current"], batch["references"], batch["same"])
    return total_loss(model.head(features, tuple(batch["current"].shape[-2:]), batch["targets"]))


@torch.no_grad()
def _evaluate(model: VideoDetector, samples: list[dict], num_classes: int) -> dict[str, float]:
    """mAP over held-out samples, each one a one-frame video (motion categories need whole videos), and the scale
    of the features N_feat computed for them (``feat_std``; DFF also ``scale_mean``, its scale field's mean)."""
    model.eval()
    device = next(model.parameters()).device
    detections, truth = [], []
    with FeatureScale(model) as scale:
        for start in range(0, len(samples), 4):
            batch = collate_clips(samples[start:start + 4])
            inputs = to_device(batch, device)
            features = model.clip_features(inputs["current"], inputs["references"], inputs["same"])
            detections += [[d] for d in model.predict(features, tuple(batch["current"].shape[-2:]))]
            truth += [VideoGroundTruth((t["boxes"].numpy(),), (t["labels"].numpy(),), (np.arange(len(t["labels"])),))
                      for t in batch["targets"]]
    learned = model.aggregator is not None and model.aggregator.log_temperature is not None
    temperature = {"temperature": float(model.aggregator.temperature)} if learned else {}
    return {"val_map": evaluate_vid(detections, truth, num_classes).map, **scale.metrics(), **temperature}


def _datasets(cfg: DetTrainConfig, refs: ReferenceSampling
              ) -> tuple[torch.utils.data.Dataset, list[dict], list[str], bool]:
    """(training set, held-out samples, class names, whether the training set is a finite folder)."""
    if cfg.data.source == "synthetic":
        config = SynthConfig.build(cfg.data.geometry, cfg.data.size[0], cfg.data.size[1], 30,
                                   Degradations.parse(cfg.data.degradations))
        train_set = SyntheticDetectionClips(config, cfg.train.iterations * cfg.train.batch_size, refs, cfg.data.seed,
                                            "train", cfg.data.frames_per_video, videos_in_flight=cfg.train.batch_size)
        val_set = SyntheticDetectionClips(config, cfg.eval.samples, refs, cfg.data.seed, "val", 4)
        return train_set, [val_set[i] for i in range(len(val_set))], list(CLASS_NAMES[1:]), False
    root = Path(cfg.data.source)
    train_data, val_data = VidDataset(root, "train"), VidDataset(root, "val")
    val_set = VidDetectionClips(val_data, refs, cfg.data.seed)
    stride = max(len(val_set) // cfg.eval.samples, 1)
    samples = [val_set[i] for i in range(0, len(val_set), stride)][: cfg.eval.samples]
    return VidDetectionClips(train_data, refs, cfg.data.seed), samples, train_data.class_names, True


def train_detection(cfg: DetTrainConfig, out: Path | None = None, resume: bool = False,
                    progress: bool = True) -> TrainResult:
    """Train the detector ``cfg`` describes; weights, optimizer state and metrics go to ``out``."""
    check_paths(cfg, ("data.source", "model.init", "model.flow_init"))
    check_sources(cfg.model)  # before any work: a clear error for an unknown features_init
    out = Path(out or cfg.output)
    torch.manual_seed(cfg.data.seed)
    refs = reference_sampling(cfg.model, cfg.data.max_offset)
    train_set, val_samples, class_names, finite = _datasets(cfg, refs)
    model = cast(VideoDetector, build_video_model(cfg.model, len(class_names)))
    config = to_dict(cfg)

    def save(path: Path, m: nn.Module, iteration: int) -> None:
        save_detector(path, m, class_names, {"iterations": str(iteration), "config": json.dumps(config)})

    def load(path: Path, m: nn.Module) -> None:
        m.load_state_dict(read_weights(path)[0])

    method = "FGFA" if cfg.model.aggregation else ("DFF" if cfg.model.flow_net else "per-frame")
    task = TrainTask(
        name=f"det {cfg.model.arch} {method}", model=model, dataset=train_set, loss=training_loss,
        evaluate=lambda m: _evaluate(m, val_samples, len(class_names)),
        save_weights=save, load_weights=load, backbone=model.feature_net, shuffle=finite, seed=cfg.data.seed,
        config=config, collate=collate_clips,
        # FGFA warps without the scale field: F's scale head, when trained, gets no gradient
        find_unused_parameters=(model.aggregator is not None and model.flow_net is not None
                                and model.flow_net.scale_conv.weight.requires_grad),
    )
    return train(task, cfg.train, out, cfg.eval.every, resume=resume, progress=progress)
