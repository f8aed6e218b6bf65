"""Training video segmentation models: the per-frame baseline, DFF end to end and its ablations, and FGFA.

- per-frame: N_feat + head on single frames (``model.flow_net: null``);
- DFF: starts from a per-frame checkpoint (``model.init``) and pre-trained flow (``model.flow_init``),
  trained on (current, key) pairs, key = current - U{0..max_offset}, with the segmentation loss only, no flow
  supervision;
- DFF fix N: the same with N_feat frozen (``freeze_features``); DFF fix F: F frozen (``freeze_flow``);
- FGFA (``model.aggregation``): two reference frames at current + U{-max_offset..max_offset}, warped to the current
  frame and aggregated with the current frame's own features left out, as in FGFA's training (detection's rule).
DFF separate needs no training: it is the per-frame checkpoint composed with the pre-trained flow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featflow.data.cityscapes import CityscapesVideo
from featflow.data.references import ReferenceSampling
from featflow.data.segmentation_clips import CityscapesClips, SyntheticSegmentationClips
from featflow.data.synthetic import CLASS_NAMES, Degradations, SynthConfig
from featflow.engine.checkpoint import read_weights, save_segmenter
from featflow.engine.config import check_paths, to_dict
from featflow.engine.feature_scale import FeatureScale
from featflow.engine.models import SegModelConfig, build_video_model, check_sources, has_unused_parameters
from featflow.engine.trainer import DataConfig, EvalConfig, OptimConfig, TrainResult, TrainTask, to_device, train
from featflow.errors import FeatflowError
from featflow.evaluation.segmentation import IGNORE, ConfusionMatrix
from featflow.methods.segmentation import VideoSegmenter


@dataclass(frozen=True)
class SegDataConfig(DataConfig):
    """Segmentation's defaults; source: synthetic (every frame labelled) or a Cityscapes-layout folder."""

    size: tuple[int, int] = (128, 256)
    max_offset: int = 4  # DFF: key = current - U{0..max_offset}; FGFA: references at current + U{-max_offset..}


@dataclass(frozen=True)
class SegEvalConfig(EvalConfig):
    samples: int = 96


@dataclass(frozen=True)
class SegTrainConfig:
    model: SegModelConfig = field(default_factory=SegModelConfig)
    data: SegDataConfig = field(default_factory=SegDataConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    eval: SegEvalConfig = field(default_factory=SegEvalConfig)
    output: str = "runs/seg"


def _datasets(cfg: SegTrainConfig, refs: ReferenceSampling
              ) -> tuple[torch.utils.data.Dataset, list[dict], list[str], bool]:
    """(training set, held-out samples, class names, whether the training set is a finite folder)."""
    if cfg.data.source == "synthetic":
        config = SynthConfig.build(cfg.data.geometry, cfg.data.size[0], cfg.data.size[1], 30,
                                   Degradations.parse(cfg.data.degradations))
        train_set = SyntheticSegmentationClips(config, cfg.train.iterations * cfg.train.batch_size, refs,
                                               cfg.data.seed, "train", cfg.data.frames_per_video,
                                               videos_in_flight=cfg.train.batch_size)
        val_set = SyntheticSegmentationClips(config, cfg.eval.samples, refs, cfg.data.seed, "val", 4)
        return train_set, [val_set[i] for i in range(len(val_set))], list(CLASS_NAMES), False
    root = Path(cfg.data.source)
    video = CityscapesVideo(root, "train")
    val_video = CityscapesVideo(root, "val")
    val_set = CityscapesClips(val_video, refs, seed=cfg.data.seed)
    samples = [val_set[i] for i in range(min(len(val_set), cfg.eval.samples))]
    # one index per draw, so every draw gets its own references; the trainer shuffles them
    repeats = -(-cfg.train.iterations * cfg.train.batch_size // len(video))
    return (CityscapesClips(video, refs, seed=cfg.data.seed, repeats=repeats), samples,
            video.table.class_names, True)


def _logits(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """Class scores (N, classes, H, W) of the current frames, from their features by the model's method."""
    features = model.clip_features(batch["current"], batch["references"], batch["same"])
    return model.head(features, tuple(batch["current"].shape[-2:]))


def training_loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """The training loss of a batch of clips: cross-entropy of the segmentation of the current frames."""
    return F.cross_entropy(_logits(model, batch), batch["label"], ignore_index=IGNORE)


@torch.no_grad()
def _evaluate(model: nn.Module, samples: list[dict], num_classes: int) -> dict[str, float]:
    """mIoU over held-out samples and the scale of N_feat's features (``feat_std``; DFF also ``scale_mean``)."""
    model.eval()
    device = next(model.parameters()).device
    matrix = ConfusionMatrix(num_classes)
    with FeatureScale(model) as scale:
        for start in range(0, len(samples), 8):
            batch = torch.utils.data.default_collate(samples[start:start + 8])
            pred = _logits(model, to_device(batch, device)).argmax(1)
            matrix.update(pred.cpu().numpy(), batch["label"].numpy())
    return {"val_miou": matrix.miou(), **scale.metrics()}


def train_segmentation(cfg: SegTrainConfig, out: Path | None = None, resume: bool = False,
                       progress: bool = True) -> TrainResult:
    """Train the segmenter ``cfg`` describes; weights, optimizer state and metrics go to ``out``."""
    check_paths(cfg, ("data.source", "model.init", "model.flow_init"))
    check_sources(cfg.model)
    out = Path(out or cfg.output)
    torch.manual_seed(cfg.data.seed)
    refs = cfg.model.references(cfg.data.max_offset, cfg.data.same_share)
    train_set, val_samples, class_names, finite = _datasets(cfg, refs)
    model = cast(VideoSegmenter, build_video_model(cfg.model, len(class_names)))
    labels = np.concatenate([s["label"].numpy().ravel() for s in val_samples])
    if (labels[labels != IGNORE] >= len(class_names)).any():
        raise FeatflowError(f"held-out labels exceed the {len(class_names)} classes of the label table")
    config = to_dict(cfg)

    def save(path: Path, m: nn.Module, iteration: int) -> None:
        save_segmenter(path, m, class_names, {"iterations": str(iteration), "config": json.dumps(config)})

    def load(path: Path, m: nn.Module) -> None:
        tensors, _ = read_weights(path)
        m.load_state_dict(tensors)

    method = "FGFA" if cfg.model.aggregation else ("DFF" if cfg.model.flow_net else "per-frame")
    task = TrainTask(
        name=f"seg {cfg.model.arch} {method}",
        model=model, dataset=train_set, loss=training_loss,
        evaluate=lambda m: _evaluate(m, val_samples, len(class_names)),
        save_weights=save, load_weights=load, backbone=model.feature_net, shuffle=finite, seed=cfg.data.seed,
        config=config, find_unused_parameters=has_unused_parameters(model),
    )
    return train(task, cfg.train, out, cfg.eval.every, resume=resume, progress=progress)

