"""Training video detectors: the per-frame R-FCN, DFF end to end, and FGFA.

- per-frame: N_feat + RPN + R-FCN on single frames (``model.flow_net: null``);
- DFF: starts from a per-frame checkpoint (``model.init``) and pre-trained flow; trained on (current, key)
  pairs, key = current + U{-max_offset..0}, with the detection loss only;
- FGFA (``model.aggregation: adaptive``): two reference frames at current + U{-max_offset..max_offset}, warped
  to the current frame and aggregated; ``freeze_flow`` gives "FGFA without end-to-end training", no flow net
  gives "without flow", ``aggregation: mean`` without flow "without flow and adaptive weights".
Held-out metric during training: VID mAP@0.5 over single held-out frames, in the original images' pixels.

Data (``DetDataConfig``): the synthetic source, or an ImageNet VID-layout folder whose frames are resized as the
papers do (shorter side ``min(data.size)``, longer side at most ``max(data.size)``: 600 and 1000), with
``data.det_share`` of the training samples ImageNet DET images from the same folder (one-frame videos).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import Tensor, nn

from featflow.data.detection_clips import SyntheticDetectionClips, VidDetectionClips, collate_clips
from featflow.data.imagenet_det import DetDataset
from featflow.data.mixing import Mixed
from featflow.data.references import ReferenceSampling
from featflow.data.resize import Resize, boxes_to_original
from featflow.data.synthetic import CLASS_NAMES, Degradations, SynthConfig
from featflow.data.vid import VidDataset
from featflow.engine.checkpoint import read_weights, save_detector
from featflow.engine.config import check_paths, to_dict
from featflow.engine.feature_scale import FeatureScale
from featflow.engine.models import DetModelConfig, build_video_model, check_sources, has_unused_parameters
from featflow.engine.trainer import DataConfig, EvalConfig, OptimConfig, TrainResult, TrainTask, to_device, train
from featflow.errors import FeatflowError, MissingInput
from featflow.evaluation.vid_map import evaluate_vid
from featflow.methods.detection import VideoDetector
from featflow.modeling.heads import total_loss
from featflow.structures import Detections, VideoGroundTruth


@dataclass(frozen=True)
class DetDataConfig(DataConfig):
    """Detection's data: ``source`` is ``synthetic`` or an ImageNet VID-layout folder (ILSVRC2015).

    ``size``: the synthetic frames' (H, W); a folder's frames (and boxes) are resized by one factor each, so that
    the shorter side is ``min(size)`` and the longer at most ``max(size)`` (the papers' 600 and 1000), in training
    and in its held-out evaluation (whose boxes go back to the original pixels).
    ``det_share``: the share of training samples that are ImageNet DET images (``Data/DET``, ``Annotations/DET`` and
    ``ImageSets/DET_train_30classes.txt`` in the same folder; only the VID classes' boxes), each a one-frame video
    whose key / reference frames are the image itself. 0: VID alone. The released DFF and FGFA code train on the
    concatenation of DET_train_30classes (about 54K images) and VID_train_15frames (57,930 frames): about 0.5.
    ``frame_list``: the VID training frames, from a list in ``ImageSets/VID`` (``VID_train_15frames.txt``, as the
    released code), or every frame (null)."""

    det_share: float = 0.0
    # a folder: the list of training frames in ImageSets/VID (VID_train_15frames.txt: the 15 per video the released
    # code trains on; references still come from the whole video); null: every frame of VID train
    frame_list: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.frame_list and self.source == "synthetic":
            raise FeatflowError("data.frame_list: a list of ImageNet VID training frames needs an ILSVRC2015 folder "
                                "(data.source); set it to null for synthetic data")
        if not 0.0 <= self.det_share < 1.0:
            raise FeatflowError(f"data.det_share: the share of ImageNet DET images must be in [0, 1), "
                                f"got {self.det_share}")
        if self.det_share and self.source == "synthetic":
            raise FeatflowError("data.det_share: ImageNet DET images come from an ILSVRC2015 folder (data.source); "
                                "the synthetic source has none, set it to 0")


@dataclass(frozen=True)
class DetTrainConfig:
    model: DetModelConfig = field(default_factory=DetModelConfig)
    data: DetDataConfig = field(default_factory=DetDataConfig)  # synthetic or an ImageNet VID-layout folder
    train: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: str = "runs/det"


def training_loss(model: nn.Module, batch: dict) -> Tensor:
    """The training loss of a batch of clips: the RPN and R-FCN losses on the current frame's features."""
    features = model.clip_features(batch["current"], batch["references"], batch["same"])
    return total_loss(model.head(features, tuple(batch["current"].shape[-2:]), batch["targets"]))


def _batches(samples: list[dict], size: int) -> list[list[dict]]:
    """Consecutive samples in batches of at most ``size``, each of one frame size (a folder's frames differ)."""
    batches: list[list[dict]] = []
    for sample in samples:
        last = batches[-1] if batches else None
        if last and len(last) < size and last[0]["current"].shape == sample["current"].shape:
            last.append(sample)
        else:
            batches.append([sample])
    return batches


def _in_original_pixels(detections: Detections, sample: dict) -> tuple[Detections, np.ndarray]:
    """A held-out sample's detections and ground-truth boxes, in the original image's pixels (a resized folder
    frame's boxes divided by its factor; a factor of 1 leaves them as they are)."""
    scale = float(sample["scale"])
    truth = sample["boxes"].numpy()
    if scale == 1.0:
        return detections, truth
    return (Detections(boxes_to_original(detections.boxes, scale), detections.scores, detections.labels),
            boxes_to_original(truth, scale))


@torch.no_grad()
def _evaluate(model: VideoDetector, samples: list[dict], num_classes: int) -> dict[str, float]:
    """mAP over held-out samples, each one a one-frame video (motion categories need whole videos), in the original
    images' pixels, and the scale of the features N_feat computed for them (``feat_std``; DFF also ``scale_mean``,
    its scale field's mean)."""
    model.eval()
    device = next(model.parameters()).device
    detections, truth = [], []
    with FeatureScale(model) as scale:
        for group in _batches(samples, 4):
            batch = collate_clips(group)
            inputs = to_device(batch, device)
            features = model.clip_features(inputs["current"], inputs["references"], inputs["same"])
            for found, sample in zip(model.predict(features, tuple(batch["current"].shape[-2:])), group):
                dets, boxes = _in_original_pixels(found, sample)
                labels = sample["labels"].numpy()
                detections.append([dets])
                truth.append(VideoGroundTruth((boxes,), (labels,), (np.arange(len(labels)),)))
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
    resize = Resize.from_size(cfg.data.size)
    train_data, val_data = VidDataset(root, "train"), VidDataset(root, "val")
    val_set = VidDetectionClips(val_data, refs, cfg.data.seed, resize)
    stride = max(len(val_set) // cfg.eval.samples, 1)
    samples = [val_set[i] for i in range(0, len(val_set), stride)][: cfg.eval.samples]
    frames = train_data.listed_frames(cfg.data.frame_list) if cfg.data.frame_list else None
    train_set: torch.utils.data.Dataset = VidDetectionClips(train_data, refs, cfg.data.seed, resize, frames)
    if cfg.data.det_share:
        try:  # labelled with the VID folder's class map, so a label is the same class in both
            det = DetDataset(root, train_data.classes)
        except MissingInput as err:
            raise MissingInput(f"data.det_share: {err}") from None
        train_set = Mixed(train_set, VidDetectionClips(det, refs, cfg.data.seed, resize), cfg.data.det_share)
    return train_set, samples, train_data.class_names, True


def train_detection(cfg: DetTrainConfig, out: Path | None = None, resume: bool = False,
                    progress: bool = True) -> TrainResult:
    """Train the detector ``cfg`` describes; weights, optimizer state and metrics go to ``out``."""
    check_paths(cfg, ("data.source", "model.init", "model.flow_init"))
    check_sources(cfg.model)  # before any work: a clear error for an unknown features_init
    out = Path(out or cfg.output)
    torch.manual_seed(cfg.data.seed)
    refs = cfg.model.references(cfg.data.max_offset, cfg.data.same_share)
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
        find_unused_parameters=has_unused_parameters(model),
    )
    return train(task, cfg.train, out, cfg.eval.every, resume=resume, progress=progress)
