"""Flow pre-training (DFF's FlyingChairs step): a flow network learns to estimate motion from
(current, key) pairs with known flow, before DFF trains it end to end with the task loss only.

Loss: multi-scale end-point error. Every decoder level (strides 8..128, in image pixels) and the
pooled stride-16 output that DFF warps with are compared with the ground truth averaged down to
their resolution. Evaluation: EPE at full resolution (the stride-8 prediction upsampled) on
held-out pairs.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from featflow.data.flow_pairs import FlyingChairsPairs, SyntheticFlowPairs
from featflow.data.synthetic import Degradations, SynthConfig
from featflow.engine.checkpoint import load_flow_net, save_flow_net
from featflow.engine.config import to_dict
from featflow.engine.flow_inference import FlowNetEstimator
from featflow.evaluation.flow_metrics import evaluate_flow, held_out_pairs
from featflow.modeling.flow_net import FLOW_NETS, FLOW_STRIDE, FlowNetBase, FlowOutput, build_flow_net
from featflow.modeling.preprocess import flow_input
from featflow.utils.io import atomic_path, write_json

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
class FlowOptimConfig:
    batch_size: int = 8
    iterations: int = 10000
    time_limit_minutes: float | None = None  # stop (and save) after this much training time, resumes included
    lr: float = 3e-4
    weight_decay: float = 4e-4
    warmup: int = 200
    grad_clip: float = 10.0
    workers: int = 1


@dataclass(frozen=True)
class FlowEvalConfig:
    pairs: int = 64  # held-out validation pairs
    every: int = 1000  # iterations between evaluations (and checkpoints)


@dataclass(frozen=True)
class FlowTrainConfig:
    model: str = "flownet_inception"
    data: FlowDataConfig = field(default_factory=FlowDataConfig)
    train: FlowOptimConfig = field(default_factory=FlowOptimConfig)
    eval: FlowEvalConfig = field(default_factory=FlowEvalConfig)
    output: str = "runs/flow"

    def __post_init__(self) -> None:
        if self.model not in FLOW_NETS:
            raise ValueError(f"unknown flow network {self.model!r}; choose one of {', '.join(FLOW_NETS)}")
        if self.train.batch_size < 1 or self.train.iterations < 1 or self.eval.every < 1 or self.eval.pairs < 1:
            raise ValueError("batch_size, iterations, eval.every and eval.pairs must be positive")
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


def _indices(length: int, start: int, stop: int, seed: int, synthetic: bool) -> Iterator[int]:
    """Sample order: synthetic samples are all distinct; a folder is reshuffled every epoch."""
    if synthetic:
        yield from range(start, stop)
        return
    epoch, order = -1, None
    for position in range(start, stop):
        if position // length != epoch:
            epoch = position // length
            order = torch.randperm(length, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        yield order[position % length]


def _lr_factor(iteration: int, cfg: FlowOptimConfig, elapsed_minutes: float) -> float:
    """Linear warm-up, then cosine decay to 1% over the run. With a time limit, the run ends at whichever
    comes first, iterations or minutes, so the rate has decayed when the time limit stops training."""
    if iteration < cfg.warmup:
        return (iteration + 1) / cfg.warmup
    progress = (iteration - cfg.warmup) / max(1, cfg.iterations - cfg.warmup)
    if cfg.time_limit_minutes:
        progress = max(progress, elapsed_minutes / cfg.time_limit_minutes)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@dataclass
class FlowTrainResult:
    output: Path
    iterations: int
    wall_seconds: float
    val_epe: float  # full resolution, stride-8 prediction
    val_epe_dff: float  # full resolution, the stride-16 output DFF uses
    history: list[dict] = field(default_factory=list)


def _evaluate(net: FlowNetBase, pairs: list) -> tuple[float, float]:
    was_training = net.training
    fine = evaluate_flow(FlowNetEstimator(net, stride=8), pairs).epe
    coarse = evaluate_flow(FlowNetEstimator(net, stride=16), pairs).epe
    net.train(was_training)
    return fine, coarse


def _save(out: Path, net: FlowNetBase, cfg: FlowTrainConfig, optimizer: torch.optim.Optimizer, iteration: int,
          history: list[dict], wall: float) -> None:
    extra = {"iterations": str(iteration), "config": json.dumps(to_dict(cfg), sort_keys=True)}
    save_flow_net(out / "model.safetensors", net, cfg.model, extra)
    state = {"iteration": iteration, "optimizer": optimizer.state_dict(), "wall_seconds": wall,
             "history": json.dumps(history)}
    with atomic_path(out / "training_state.pt") as tmp:
        torch.save(state, tmp)


def train_flow(cfg: FlowTrainConfig, out: Path | None = None, resume: bool = False,
               progress: bool = True) -> FlowTrainResult:
    """Train ``cfg.model`` on flow pairs; checkpoints and metrics go to ``out`` (default ``cfg.output``)."""
    out = Path(out or cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.data.seed)
    net = build_flow_net(cfg.model)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    start, history, wall_before = 0, [], 0.0
    state_path = out / "training_state.pt"
    if resume:
        if not state_path.is_file():
            raise FileNotFoundError(f"nothing to resume: {state_path} does not exist")
        loaded, _ = load_flow_net(out / "model.safetensors")
        net.load_state_dict(loaded.state_dict())
        state = torch.load(state_path, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        start, wall_before = int(state["iteration"]), float(state["wall_seconds"])
        history = json.loads(state["history"])
    dataset = _train_dataset(cfg)
    synthetic = cfg.data.source == "synthetic"
    total = cfg.train.iterations * cfg.train.batch_size
    sampler = list(_indices(len(dataset), start * cfg.train.batch_size, total, cfg.data.seed, synthetic))
    loader = DataLoader(dataset, batch_size=cfg.train.batch_size, sampler=sampler, num_workers=cfg.train.workers,
                        persistent_workers=False, drop_last=True)
    val_pairs = held_out_pairs(_synth_config(cfg.data), cfg.eval.pairs, seed=cfg.data.seed, split="val",
                               max_gap=cfg.data.max_gap)
    began = time.monotonic()
    limit = cfg.train.time_limit_minutes
    iteration = start
    net.train()
    bar = tqdm(total=cfg.train.iterations, initial=start, desc=f"train {cfg.model}", disable=not progress)
    smooth = None
    for batch in loader:
        elapsed_minutes = (wall_before + time.monotonic() - began) / 60
        for group in optimizer.param_groups:
            group["lr"] = cfg.train.lr * _lr_factor(iteration, cfg.train, elapsed_minutes)
        output = net(flow_input(batch["current"]), flow_input(batch["key"]), pyramid=True)
        loss = multiscale_epe(output, batch["flow"])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at iteration {iteration}; lower train.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.train.grad_clip)
        optimizer.step()
        iteration += 1
        smooth = loss.item() if smooth is None else 0.98 * smooth + 0.02 * loss.item()
        bar.update()
        bar.set_postfix(loss=f"{smooth:.3f}")
        out_of_time = limit is not None and (wall_before + time.monotonic() - began) / 60 > limit
        if iteration % cfg.eval.every == 0 or iteration == cfg.train.iterations or out_of_time:
            fine, coarse = _evaluate(net, val_pairs)
            wall = wall_before + time.monotonic() - began
            history.append({"iteration": iteration, "loss": smooth, "val_epe": fine, "val_epe_dff": coarse,
                            "wall_seconds": wall})
            bar.write(f"iteration {iteration}: loss {smooth:.3f}, val EPE {fine:.3f} px (DFF stride 16: {coarse:.3f})")
            _save(out, net, cfg, optimizer, iteration, history, wall)
        if out_of_time:
            bar.write(f"time limit of {cfg.train.time_limit_minutes} min reached at iteration {iteration}")
            break
    bar.close()
    if not history or history[-1]["iteration"] != iteration:  # nothing ran (already finished)
        fine, coarse = _evaluate(net, val_pairs)
        history.append({"iteration": iteration, "loss": smooth, "val_epe": fine, "val_epe_dff": coarse,
                        "wall_seconds": wall_before + time.monotonic() - began})
        _save(out, net, cfg, optimizer, iteration, history, history[-1]["wall_seconds"])
    last = history[-1]
    result = FlowTrainResult(out, iteration, last["wall_seconds"], last["val_epe"], last["val_epe_dff"], history)
    write_json(out / "metrics.json", {"model": cfg.model, "config": to_dict(cfg), "iterations": iteration,
                                       "wall_seconds": result.wall_seconds, "val_epe": result.val_epe,
                                       "val_epe_dff": result.val_epe_dff, "history": history})
    return result
