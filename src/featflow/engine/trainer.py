"""The training loop every featflow model shares.

AdamW or SGD with momentum (the papers'), linear warm-up then cosine decay of the learning rate (over the
iterations, or over the time limit when that comes first), a learning-rate multiplier for the task's backbone
(N_feat), optional bfloat16 autocast of the forward pass and loss, gradient clipping, periodic evaluation with a
checkpoint each time (weights as safetensors + optimizer state read back with ``weights_only=True``), resume after
an interruption, a progress bar, and ``metrics.json`` with the whole history. What differs between models (the loss,
the evaluation, how weights are saved) comes in as functions.

Under ``torchrun`` (``featflow.engine.distributed``) every rank trains a DistributedDataParallel copy on its
share of each global batch (``train.batch_size`` is the global batch, so the learning rate applies to the same
batch whatever the number of processes); rank 0 alone evaluates and writes. The random state is a function of
(seed, iteration, rank), set at every iteration, and the sampler's order a function of the position in the run,
so a resumed run continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from featflow.engine.checkpoint import read_weights
from featflow.engine.distributed import (DistContext, barrier, broadcast_buffers, context, gather, local_batch,
                                         mean_over_ranks)
from featflow.utils.io import atomic_path, write_json

log = logging.getLogger(__name__)

T = TypeVar("T")
OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
#: Training stops as diverged when the smoothed loss exceeds this multiple of the run's first one (a finite loss can
#: still explode: N_feat's features grew 1e10-fold within 80 iterations at too high a learning rate).
DIVERGENCE_FACTOR = 100.0
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
    optimizer: str = "adamw"  # "adamw" or "sgd" (with momentum, as the papers train)
    momentum: float = 0.9  # SGD only
    backbone_lr: float = 1.0  # the backbone's (N_feat's) learning rate, as a multiple of lr
    precision: str = "fp32"  # "fp32" or "bf16" (autocast of the forward pass and loss; fp32 where unsupported)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.iterations < 1 or self.lr <= 0 or self.workers < 0 or self.warmup < 0:
            raise ValueError("batch_size, iterations and lr must be positive; workers and warmup non-negative")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum: must be in [0, 1), got {self.momentum}")
        if self.backbone_lr < 0:
            raise ValueError(f"backbone_lr: must be non-negative (a multiple of lr), got {self.backbone_lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: must be non-negative, got {self.weight_decay}")


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
    model: nn.Module | None = None  # the trained model (this rank's copy under torchrun)

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
    backbone: nn.Module | None = None  # trained at ``backbone_lr`` times the learning rate (N_feat)
    shuffle: bool = False  # True for finite folders; synthetic datasets give a new sample per index
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)  # written into metrics.json
    collate: Callable[[list], Any] | None = None  # batches of samples (default: torch's default_collate)


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors in (nested dicts / lists / tuples of) a batch moved to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def seed_iteration(seed: int, iteration: int, rank: int = 0) -> None:
    """The random state of an iteration, a function of (seed, iteration, rank) only: a resumed run draws the
    same numbers as an uninterrupted one (RPN / R-FCN sampling, anything else drawn in the loss)."""
    torch.manual_seed((seed * 1_000_003 + iteration * 7_919 + rank) % (2 ** 63))


def rank_positions(positions: list[int], global_batch: int, ctx: DistContext) -> list[int]:
    """This rank's samples: its contiguous slice of every global batch (all ranks together see each batch
    a single process would)."""
    size = global_batch // ctx.world_size
    return [p for i, p in enumerate(positions) if (i % global_batch) // size == ctx.rank]


class _Objective(nn.Module):
    """The task's loss as one module, so DistributedDataParallel sees the whole computation in its forward."""

    def __init__(self, model: nn.Module, loss: Callable[[nn.Module, Any], Tensor]) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, batch: Any) -> Tensor:
        return self.loss(self.model, batch)


def param_groups(params: list[nn.Parameter], backbone: nn.Module | None, backbone_lr: float
                 ) -> list[tuple[list[nn.Parameter], float]]:
    """The trained parameters as (group, learning-rate multiplier): the backbone's (at ``backbone_lr``) first, then
    the rest (at 1). One group when every multiplier is 1 (as before backbone_lr existed, so older training states
    resume); empty groups are left out (a frozen backbone)."""
    if backbone is None and backbone_lr != 1.0:
        raise ValueError("backbone_lr: this task has no backbone to train at another learning rate")
    if backbone is None or backbone_lr == 1.0:
        return [(params, 1.0)]
    inside = {id(p) for p in backbone.parameters()}
    groups = [([p for p in params if id(p) in inside], backbone_lr),
              ([p for p in params if id(p) not in inside], 1.0)]
    return [(group, scale) for group, scale in groups if group]


def build_optimizer(groups: list[tuple[list[nn.Parameter], float]], cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW, or SGD with momentum, with one param group per entry of ``groups`` (learning rates are set at every
    iteration by ``set_lr``)."""
    params = [{"params": group} for group, _ in groups]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, scales: list[float], lr: float) -> None:
    """Every group's learning rate: ``lr`` (the schedule's) times the group's multiplier."""
    for group, scale in zip(optimizer.param_groups, scales):
        group["lr"] = lr * scale


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 natively: a GPU that supports it, or a CPU with AVX512-BF16 or AMX
    (elsewhere bfloat16 is emulated, slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check is not None and check() for check in checks)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast type for ``precision`` on ``device`` (None: float32), with a warning where bf16 falls back."""
    if precision != "bf16":
        return None
    if bf16_supported(device):
        return torch.bfloat16
    log.warning("precision bf16: %s has no native bfloat16 (cpu capability %s); training in fp32", device,
                torch.backends.cpu.get_cpu_capability())
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``, or nothing (float32) when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _save_state(out: Path, optimizer: torch.optim.Optimizer, iteration: int, wall: float, history: list,
                name: str) -> None:
    state = {"iteration": iteration, "optimizer": optimizer.state_dict(), "optimizer_name": name,
             "wall_seconds": wall, "history": json.dumps(history)}
    with atomic_path(out / STATE_FILE) as tmp:
        torch.save(state, tmp)


def train(task: TrainTask, cfg: OptimConfig, out: Path, eval_every: int, resume: bool = False,
          progress: bool = True) -> TrainResult:
    """Run (or resume) ``task`` for ``cfg.iterations`` iterations; checkpoints and metrics go to ``out``
    (under torchrun: on every rank, rank 0 writing)."""
    if eval_every < 1:
        raise ValueError(f"{task.name}: evaluations must be at least 1 iteration apart, got {eval_every}")
    ctx = context()
    per_rank = local_batch(cfg.batch_size, ctx)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    model = task.model.to(ctx.device)
    params = list(task.parameters) if task.parameters is not None else [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{task.name}: nothing to train (every parameter is frozen)")
    groups = param_groups(params, task.backbone, cfg.backbone_lr)
    scales = [scale for _, scale in groups]  # from the config, also on resume
    optimizer = build_optimizer(groups, cfg)
    cast = autocast_dtype(cfg.precision, ctx.device)
    start, history, wall_before = 0, [], 0.0
    if resume:
        state_path = out / STATE_FILE
        if not state_path.is_file():
            raise FileNotFoundError(f"nothing to resume: {state_path} does not exist")
        state = torch.load(state_path, weights_only=True, map_location=ctx.device)
        weights_iteration = read_weights(out / WEIGHTS_FILE)[1].get("iterations")
        if weights_iteration is not None and int(weights_iteration) != int(state["iteration"]):
            raise ValueError(f"{out}: the weights are from iteration {weights_iteration} but the optimizer state from "
                             f"{state['iteration']} (the last checkpoint was interrupted); start again without --resume")
        saved_optimizer = state.get("optimizer_name", "adamw")  # states written before SGD was an option
        if saved_optimizer != cfg.optimizer:
            raise ValueError(f"optimizer: {out} was trained with {saved_optimizer}, the config asks for "
                             f"{cfg.optimizer}; resume with the same optimizer or start again")
        task.load_weights(out / WEIGHTS_FILE, model)
        model.to(ctx.device)
        optimizer.load_state_dict(state["optimizer"])
        start, wall_before = int(state["iteration"]), float(state["wall_seconds"])
        history = json.loads(state["history"])
    positions = list(epoch_order(len(task.dataset), start * cfg.batch_size, cfg.iterations * cfg.batch_size, task.seed,
                                 task.shuffle))
    loader = DataLoader(task.dataset, batch_size=per_rank, sampler=rank_positions(positions, cfg.batch_size, ctx),
                        num_workers=cfg.workers, drop_last=True, collate_fn=task.collate)
    objective: nn.Module = _Objective(model, task.loss)
    if ctx.distributed:  # gradients averaged over ranks in backward; rank 0's weights broadcast at the start
        objective = DistributedDataParallel(objective, device_ids=[ctx.device] if ctx.device.type == "cuda" else None,
                                            find_unused_parameters=True)
    began = time.monotonic()

    def wall() -> float:
        return wall_before + time.monotonic() - began

    last_saved = start if history else None

    def checkpoint(iteration: int, smooth: float | None) -> None:
        nonlocal last_saved
        last_saved = iteration
        if ctx.is_main:
            metrics = task.evaluate(model)
            model.train()
            history.append({"iteration": iteration, "loss": smooth, **metrics, "wall_seconds": wall()})
            task.save_weights(out / WEIGHTS_FILE, model, iteration)
            _save_state(out, optimizer, iteration, wall(), history, cfg.optimizer)
            bar.write(f"iteration {iteration}: loss {smooth if smooth is None else round(smooth, 4)}, "
                      + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        barrier(ctx)

    iteration, smooth = start, (history[-1]["loss"] if history else None)
    first = next((h["loss"] for h in history if h.get("loss") is not None), None)  # the run's first smoothed loss
    model.train()
    bar = tqdm(total=cfg.iterations, initial=start, desc=f"train {task.name}", disable=not (progress and ctx.is_main))
    for batch in loader:
        minutes = mean_over_ranks(wall() / 60, ctx) if cfg.time_limit_minutes else 0.0  # one clock for all ranks
        set_lr(optimizer, scales, cfg.lr * lr_factor(iteration, cfg, minutes))
        seed_iteration(task.seed, iteration, ctx.rank)
        with autocast(ctx.device, cast):
            loss = objective(to_device(batch, ctx.device)).float()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{task.name}: loss became {loss.item()} at iteration {iteration}; lower the lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        iteration += 1
        value = mean_over_ranks(loss.item(), ctx)  # the global batch's loss
        smooth = value if smooth is None else 0.98 * smooth + 0.02 * value
        first = smooth if first is None else first
        if first > 0 and smooth > DIVERGENCE_FACTOR * first:
            raise FloatingPointError(f"{task.name}: diverged at iteration {iteration}: the smoothed loss {smooth:.4g} is "
                                     f"over {DIVERGENCE_FACTOR:g}x its first value ({first:.4g}); lower the lr")
        bar.update()
        bar.set_postfix(loss=f"{smooth:.4f}")
        out_of_time = cfg.time_limit_minutes is not None and mean_over_ranks(wall() / 60, ctx) > cfg.time_limit_minutes
        if iteration % eval_every == 0 or iteration == cfg.iterations or out_of_time:
            checkpoint(iteration, smooth)
        if out_of_time:
            bar.write(f"time limit of {cfg.time_limit_minutes} min reached at iteration {iteration}")
            break
    if last_saved != iteration:  # nothing ran: record where the model stands
        checkpoint(iteration, smooth)
    bar.close()
    if ctx.distributed:  # every rank ends with rank 0's BatchNorm statistics and record of the run
        broadcast_buffers(model, ctx)
        history = gather(history, ctx)[0]
    result = TrainResult(out, iteration, history[-1]["wall_seconds"], history, model)
    if ctx.is_main:
        write_json(out / "metrics.json", {"name": task.name, "config": task.config, "iterations": iteration,
                                           "world_size": ctx.world_size, "wall_seconds": result.wall_seconds,
                                           "final": history[-1], "history": history})
    return result
