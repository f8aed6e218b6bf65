"""The training loop every featflow model shares.

Linear warm-up then cosine decay of the learning rate (over the iterations, or over the time limit
when that comes first), gradient clipping, periodic evaluation with a checkpoint each time (weights as
safetensors + optimizer state read back with ``weights_only=True``), resume after an interruption,
a progress bar, and ``metrics.json`` with the whole history. What differs between models (the loss,
the evaluation, how weights are saved) comes in as functions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from featflow.engine.checkpoint import read_weights
from featflow.utils.io import atomic_path, write_json

T = TypeVar("T")
STATE_FILE = "training_state.pt"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class OptimConfig:
    batch_size: int = 8
    iterations: int = 10000
    time_limit_minutes: float | None = None  # stop (and save) after this much training time, resumes included
    lr: float = 3e-4
    weight_decay: float = 4e-4
    warmup: int = 200
    grad_clip: float = 10.0
    workers: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.iterations < 1 or self.lr <= 0 or self.workers < 0 or self.warmup < 0:
            raise ValueError("batch_size, iterations and lr must be positive; workers and warmup non-negative")


def override_train(cfg: T, iterations: int | None = None, time_limit: float | None = None) -> T:
    """A training config (any dataclass with a ``train: OptimConfig``) with command-line overrides."""
    changes = {k: v for k, v in (("iterations", iterations), ("time_limit_minutes", time_limit)) if v is not None}
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes)) if changes else cfg


def lr_factor(iteration: int, cfg: OptimConfig, elapsed_minutes: float) -> float:
    """Linear warm-up, then cosine decay to 1% over the run. With a time limit, the run ends at whichever
    comes first, iterations or minutes, so the rate has decayed when the time limit stops training."""
    if iteration < cfg.warmup:
        return (iteration + 1) / cfg.warmup
    progress = (iteration - cfg.warmup) / max(1, cfg.iterations - cfg.warmup)
    if cfg.time_limit_minutes:
        progress = max(progress, elapsed_minutes / cfg.time_limit_minutes)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def epoch_order(length: int, start: int, stop: int, seed: int, shuffle: bool) -> Iterator[int]:
    """Sample indices for positions start..stop-1: in order (datasets whose every index is a new sample)
    or reshuffled every epoch (a fixed folder of samples)."""
    if not shuffle:
        yield from range(start, stop)
        return
    epoch, order = -1, []
    for position in range(start, stop):
        if position // length != epoch:
            epoch = position // length
            order = torch.randperm(length, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        yield order[position % length]


@dataclass
class TrainResult:
    output: Path
    iterations: int
    wall_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


@dataclass
class TrainTask:
    """What a model's training supplies to the shared loop."""

    name: str
    model: nn.Module
    dataset: Dataset
    loss: Callable[[nn.Module, dict[str, Tensor]], Tensor]
    evaluate: Callable[[nn.Module], dict[str, float]]  # held-out metrics; the model is put back in train mode
    save_weights: Callable[[Path, nn.Module, int], None]  # (path, model, iteration)
    load_weights: Callable[[Path, nn.Module], None]
    parameters: Iterable[nn.Parameter] | None = None  # default: every parameter that requires grad
    shuffle: bool = False  # True for finite folders; synthetic datasets give a new sample per index
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)  # written into metrics.json
    collate: Callable[[list], Any] | None = None  # batches of samples (default: torch's default_collate)


def _save_state(out: Path, optimizer: torch.optim.Optimizer, iteration: int, wall: float, history: list) -> None:
    state = {"iteration": iteration, "optimizer": optimizer.state_dict(), "wall_seconds": wall,
             "history": json.dumps(history)}
    with atomic_path(out / STATE_FILE) as tmp:
        torch.save(state, tmp)


def train(task: TrainTask, cfg: OptimConfig, out: Path, eval_every: int, resume: bool = False,
          progress: bool = True) -> TrainResult:
    """Run (or resume) ``task`` for ``cfg.iterations`` iterations; checkpoints and metrics go to ``out``."""
    if eval_every < 1:
        raise ValueError(f"{task.name}: evaluations must be at least 1 iteration apart, got {eval_every}")
    out.mkdir(parents=True, exist_ok=True)
    model = task.model
    params = list(task.parameters) if task.parameters is not None else [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{task.name}: nothing to train (every parameter is frozen)")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, history, wall_before = 0, [], 0.0
    if resume:
        state_path = out / STATE_FILE
        if not state_path.is_file():
            raise FileNotFoundError(f"nothing to resume: {state_path} does not exist")
        state = torch.load(state_path, weights_only=True)
        weights_iteration = read_weights(out / WEIGHTS_FILE)[1].get("iterations")
        if weights_iteration is not None and int(weights_iteration) != int(state["iteration"]):
            raise ValueError(f"{out}: the weights are from iteration {weights_iteration} but the optimizer state from "
                             f"{state['iteration']} (the last checkpoint was interrupted); start again without --resume")
        task.load_weights(out / WEIGHTS_FILE, model)
        optimizer.load_state_dict(state["optimizer"])
        start, wall_before = int(state["iteration"]), float(state["wall_seconds"])
        history = json.loads(state["history"])
    order = list(epoch_order(len(task.dataset), start * cfg.batch_size, cfg.iterations * cfg.batch_size, task.seed,
                             task.shuffle))
    loader = DataLoader(task.dataset, batch_size=cfg.batch_size, sampler=order, num_workers=cfg.workers, drop_last=True,
                        collate_fn=task.collate)
    began = time.monotonic()

    def wall() -> float:
        return wall_before + time.monotonic() - began

    def checkpoint(iteration: int, smooth: float | None) -> None:
        metrics = task.evaluate(model)
        model.train()
        history.append({"iteration": iteration, "loss": smooth, **metrics, "wall_seconds": wall()})
        task.save_weights(out / WEIGHTS_FILE, model, iteration)
        _save_state(out, optimizer, iteration, wall(), history)
        bar.write(f"iteration {iteration}: loss {smooth if smooth is None else round(smooth, 4)}, "
                  + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

    iteration, smooth = start, (history[-1]["loss"] if history else None)
    model.train()
    bar = tqdm(total=cfg.iterations, initial=start, desc=f"train {task.name}", disable=not progress)
    for batch in loader:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(iteration, cfg, wall() / 60)
        loss = task.loss(model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{task.name}: loss became {loss.item()} at iteration {iteration}; lower the lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        iteration += 1
        smooth = loss.item() if smooth is None else 0.98 * smooth + 0.02 * loss.item()
        bar.update()
        bar.set_postfix(loss=f"{smooth:.4f}")
        out_of_time = cfg.time_limit_minutes is not None and wall() / 60 > cfg.time_limit_minutes
        if iteration % eval_every == 0 or iteration == cfg.iterations or out_of_time:
            checkpoint(iteration, smooth)
        if out_of_time:
            bar.write(f"time limit of {cfg.time_limit_minutes} min reached at iteration {iteration}")
            break
    if not history or history[-1]["iteration"] != iteration:  # nothing ran: record where the model stands
        checkpoint(iteration, smooth)
    bar.close()
    result = TrainResult(out, iteration, history[-1]["wall_seconds"], history)
    write_json(out / "metrics.json", {"name": task.name, "config": task.config, "iterations": iteration,
                                       "wall_seconds": result.wall_seconds, "final": history[-1], "history": history})
    return result
