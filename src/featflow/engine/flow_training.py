"""Flow pre-training (DFF's FlyingChairs step): a flow network learns to estimate motion from
(current, key) pairs with known flow, before DFF trains it end to end with the task loss only.

Loss: multi-scale end-point error. Every decoder level (strides 8..128, in image pixels) and the
pooled stride-16 output that DFF warps with are compared with the ground truth averaged down to
their resolution. Evaluation: EPE at full resolution on held-out pairs, for the stride-8 prediction
(what ``featflow flow`` writes) and for the stride-16 output DFF uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from featflow.data.flow_pairs import FlyingChairsPairs, SyntheticFlowPairs
from featflow.data.synthetic import Degradations, SynthConfig
from featflow.engine.checkpoint import load_flow_net, save_flow_net
from featflow.engine.config import check_paths, to_dict
from featflow.engine.flow_inference import FlowNetEstimator
from featflow.engine.trainer import OptimConfig, TrainResult, TrainTask, train
from featflow.errors import FeatflowError
from featflow.evaluation.flow_metrics import FlowPair, evaluate_flow, held_out_pairs
from featflow.modeling.flow_net import FLOW_STRIDE, FlowOutput, build_flow_net
from featflow.modeling.preprocess import flow_input
from featflow.registry import FLOW_NETS, check_choice

#: Weight of each decoder level's EPE (image-pixel units at every level).
LEVEL_WEIGHTS: dict[int, float] = {8: 1.0, 16: 0.5, 32: 0.25, 64: 0.125, 128: 0.0625}
#: Weight of the pooled stride-16 output, the flow DFF uses.
DFF_OUTPUT_WEIGHT = 1.0


@dataclass(frozen=True)
class FlowDataConfig:
    source: str = "synthetic"  # "synthetic" (generated on the fly) or a FlyingChairs folder
    size: tuple[int, int] = (256, 512)  # synthetic frames, H x W
    degradations: str = "default"
    max_gap: int = 9  # key-frame distance 1..max_gap, either direction
    pairs_per_video: int = 4
    seed: int = 0


@dataclass(frozen=True)
class FlowEvalConfig:
    pairs: int = 64  # held-out validation pairs
    every: int = 1000  # iterations between evaluations (and checkpoints)


@dataclass(frozen=True)
class FlowTrainConfig:
    model: str = "flownet_inception"
    data: FlowDataConfig = field(default_factory=FlowDataConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    eval: FlowEvalConfig = field(default_factory=FlowEvalConfig)
    output: str = "runs/flow"

    def __post_init__(self) -> None:
        check_choice("flow network", self.model, FLOW_NETS, key="model")
        if self.eval.every < 1 or self.eval.pairs < 1:
            raise FeatflowError("eval.every and eval.pairs must be positive")
        Degradations.parse(self.data.degradations)


def multiscale_epe(output: FlowOutput, target: Tensor) -> Tensor:
    """Weighted EPE of every pyramid level and of the stride-16 output; ``target`` (N, 2, H, W) pixels."""
    loss = DFF_OUTPUT_WEIGHT * _epe(output.flow * FLOW_STRIDE, F.avg_pool2d(target, FLOW_STRIDE, ceil_mode=True))
    for stride, pred in output.pyramid.items():
        loss = loss + LEVEL_WEIGHTS[stride] * _epe(pred, F.avg_pool2d(target, stride, ceil_mode=True))
    return loss


def _epe(pred: Tensor, target: Tensor) -> Tensor:
    return torch.linalg.vector_norm(pred - target, dim=1).mean()


def _synth_config(cfg: FlowDataConfig) -> SynthConfig:
    return SynthConfig(height=cfg.size[0], width=cfg.size[1], degradations=Degradations.parse(cfg.degradations))


def _train_dataset(cfg: FlowTrainConfig) -> Dataset:
    if cfg.data.source == "synthetic":
        return SyntheticFlowPairs(_synth_config(cfg.data), cfg.train.iterations * cfg.train.batch_size,
                                  seed=cfg.data.seed, split="train", max_gap=cfg.data.max_gap,
                                  pairs_per_video=cfg.data.pairs_per_video)
    return FlyingChairsPairs(cfg.data.source, "train")


def _evaluate(net: nn.Module, pairs: list[FlowPair]) -> dict[str, float]:
    net.eval()
    return {"val_epe": evaluate_flow(FlowNetEstimator(net, stride=8), pairs).epe,
            "val_epe_dff": evaluate_flow(FlowNetEstimator(net, stride=16), pairs).epe}


def _loss(net: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    return multiscale_epe(net(flow_input(batch["current"]), flow_input(batch["key"]), pyramid=True), batch["flow"])


def train_flow(cfg: FlowTrainConfig, out: Path | None = None, resume: bool = False,
               progress: bool = True) -> TrainResult:
    """Train ``cfg.model`` on flow pairs; checkpoints and metrics go to ``out`` (default ``cfg.output``)."""
    check_paths(cfg, ("data.source",))
    torch.manual_seed(cfg.data.seed)
    net = build_flow_net(cfg.model)
    val_pairs = held_out_pairs(_synth_config(cfg.data), cfg.eval.pairs, seed=cfg.data.seed, split="val",
                               max_gap=cfg.data.max_gap)
    config = to_dict(cfg)

    def save(path: Path, model: nn.Module, iteration: int) -> None:
        save_flow_net(path, model, cfg.model,
                      {"iterations": str(iteration), "config": json.dumps(config, sort_keys=True)})

    def load(path: Path, model: nn.Module) -> None:
        model.load_state_dict(load_flow_net(path)[0].state_dict())

    task = TrainTask(name=cfg.model, model=net, dataset=_train_dataset(cfg), loss=_loss,
                     evaluate=lambda model: _evaluate(model, val_pairs), save_weights=save, load_weights=load,
                     shuffle=cfg.data.source != "synthetic", seed=cfg.data.seed, config=config,
                     find_unused_parameters=True)  # the EPE loss leaves F's scale head (DFF's, trained later) unused
    return train(task, cfg.train, Path(out or cfg.output), cfg.eval.every, resume=resume, progress=progress)
