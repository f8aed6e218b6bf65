"""Training video segmentation models: the per-frame baseline, DFF end to end, and its ablations.

- per-frame: N_feat + head on single frames (``model.flow_net: null``);
- DFF: starts from a per-frame checkpoint (``model.init``) and pre-trained flow (``model.flow_init``),
  trained on (current, key) pairs with the segmentation loss only, no flow supervision;
- DFF fix N: the same with N_feat frozen (``freeze_features``); DFF fix F: F frozen (``freeze_flow``).
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
from featflow.data.segmentation_pairs import CityscapesPairs, SyntheticSegmentationPairs
from featflow.data.synthetic import CLASS_NAMES, Degradations, SynthConfig
from featflow.engine.checkpoint import read_weights, save_segmenter
from featflow.engine.config import check_paths, to_dict
from featflow.engine.feature_scale import FeatureScale
from featflow.engine.models import SegModelConfig, build_video_model, check_sources
from featflow.engine.trainer import DataConfig, EvalConfig, OptimConfig, TrainResult, TrainTask, to_device, train
from featflow.errors import FeatflowError
from featflow.evaluation.segmentation import IGNORE, ConfusionMatrix
from featflow.methods.segmentation import VideoSegmenter


@dataclass(frozen=True)
class SegDataConfig(DataConfig):
    """Segmentation's defaults; source: synthetic (every frame labelled) or a Cityscapes-layout folder."""

    size: tuple[int, int] = (128, 256)
    max_offset: int = 4  # key frame = current - U{0..max_offset}; ignored by per-frame models


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


def _datasets(cfg: SegTrainConfig, max_offset: int) -> tuple[torch.utils.data.Dataset, list[dict], list[str], bool]:
    """(training set, held-out samples, class names, whether the training set is a finite folder)."""
    if cfg.data.source == "synthetic":
        config = SynthConfig.build(cfg.data.geometry, cfg.data.size[0], cfg.data.size[1], 30,
                                   Degradations.parse(cfg.data.degradations))
        train_set = SyntheticSegmentationPairs(config, cfg.train.iterations * cfg.train.batch_size, cfg.data.seed,
                                               "train", max_offset, cfg.data.frames_per_video,
                                               videos_in_flight=cfg.train.batch_size)
        val_set = SyntheticSegmentationPairs(config, cfg.eval.samples, cfg.data.seed, "val", max_offset, 4)
        return train_set, [val_set[i] for i in range(len(val_set))], list(CLASS_NAMES), False
    root = Path(cfg.data.source)
    video = CityscapesVideo(root, "train")
    val_video = CityscapesVideo(root, "val")
    val_set = CityscapesPairs(val_video, max_offset, seed=cfg.data.seed)
    samples = [val_set[i] for i in range(min(len(val_set), cfg.eval.samples))]
    # one index per draw, so every draw gets its own key offset; the trainer shuffles them
    repeats = -(-cfg.train.iterations * cfg.train.batch_size // len(video))
    return (CityscapesPairs(video, max_offset, seed=cfg.data.seed, repeats=repeats), samples,
            video.table.class_names, True)


def training_loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """The training loss of a batch of (current, key) pairs: cross-entropy of the segmentation of current."""
    key = None if model.flow_net is None else batch["key"]
    logits = model(batch["current"], key, batch["same"])
    return F.cross_entropy(logits, batch["label"], ignore_index=IGNORE)


@torch.no_grad()
def _evaluate(model: nn.Module, samples: list[dict], num_classes: int) -> dict[str, float]:
    """mIoU over held-out samples and the scale of N_feat's features (``feat_std``; DFF also ``scale_mean``)."""
    model.eval()
    device = next(model.parameters()).device
    matrix = ConfusionMatrix(num_classes)
    with FeatureScale(model) as scale:
        for start in range(0, len(samples), 8):
            batch = torch.utils.data.default_collate(samples[start:start + 8])
            inputs = to_device(batch, device)
            key = None if model.flow_net is None else inputs["key"]
            pred = model(inputs["current"], key, inputs["same"]).argmax(1)
            matrix.update(pred.cpu().numpy(), batch["label"].numpy())
    return {"val_miou": matrix.miou(), **scale.metrics()}


def train_segmentation(cfg: SegTrainConfig, out: Path | None = None, resume: bool = False,
                       progress: bool = True) -> TrainResult:
    """Train the segmenter ``cfg`` describes; weights, optimizer state and metrics go to ``out``."""
    check_paths(cfg, ("data.source", "model.init", "model.flow_init"))
    check_sources(cfg.model)
    if cfg.model.aggregation:  # the pairs below hold one key frame: FGFA segmenters are built and run, not trained
        raise FeatflowError(f"model.aggregation: segmentation training runs per frame or DFF (frame pairs), not "
                            f"FGFA; set it to null (got {cfg.model.aggregation!r})")
    out = Path(out or cfg.output)
    torch.manual_seed(cfg.data.seed)
    max_offset = cfg.data.max_offset if cfg.model.flow_net else 0
    train_set, val_samples, class_names, finite = _datasets(cfg, max_offset)
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

    task = TrainTask(
        name=f"seg {cfg.model.arch}" + (f" + {cfg.model.flow_net}" if cfg.model.flow_net else " per-frame"),
        model=model, dataset=train_set, loss=training_loss,
        evaluate=lambda m: _evaluate(m, val_samples, len(class_names)),
        save_weights=save, load_weights=load, backbone=model.feature_net, shuffle=finite, seed=cfg.data.seed,
        config=config, find_unused_parameters=False,  # per-frame and DFF (its scale field too) use every parameter
    )
    return train(task, cfg.train, out, cfg.eval.every, resume=resume, progress=progress)

