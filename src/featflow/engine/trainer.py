"""The training loop every featflow model shares: a ``Trainer`` that runs the iterations and hooks that act
between them, each with its own period (as detectron2's ``HookBase``).

``Trainer.run_step`` is one iteration: the learning rate from the schedule, the iteration's random state, the forward
pass and loss (optionally under bfloat16 autocast), a check that the loss is finite, backward, gradient clipping and
the optimiser's step. The optimiser is AdamW or SGD with momentum (the papers'), with a learning-rate multiplier for
the task's backbone (N_feat); the schedule (``schedule``) is a linear warm-up, then either a cosine decay to 1% or
steps down by ``gamma`` at fractions of the run, over the iterations or over the time limit, whichever comes first.

Everything else is a hook, run in this order after every iteration (``default_hooks``): ``Interrupt`` (SIGINT or
SIGTERM: a checkpoint, then stop), ``DivergenceStop`` (the smoothed loss exploding), ``TimeLimit``, ``ProgressBar``
(tqdm; its end follows the time limit), ``Evaluation`` (the task's held-out metrics into the history, every
``eval.every`` iterations), ``Checkpoint`` (weights as safetensors + optimizer state read back with
``weights_only=True``, every ``train.checkpoint_every`` iterations, by default at every evaluation) and ``Logging``
(Python ``logging``, logger ``featflow.engine.trainer``). Evaluation and checkpoint also run at the end and when the
time limit stops a run. ``train`` builds a Trainer with these hooks, runs it, and writes ``metrics.json`` with the
whole history; what differs between models (the loss, the evaluation, how weights are saved) comes in a
``TrainTask``.

Under ``torchrun`` (``featflow.engine.distributed``) every rank trains a DistributedDataParallel copy on its
share of each global batch (``train.batch_size`` is the global batch, so the learning rate applies to the same
batch whatever the number of processes); rank 0 alone evaluates and writes. The random state is a function of
(seed, iteration, rank), set at every iteration, the sampler's order a function of the position in the run, and the
learning rate a function of (iteration, config, elapsed minutes), so a resumed run continues exactly as the
uninterrupted one would have.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from featflow.engine.checkpoint import read_weights
from featflow.engine.distributed import (
    DistContext,
    barrier,
    broadcast_buffers,
    context,
    gather,
    local_batch,
    mean_over_ranks,
)
from featflow.errors import FeatflowError, MissingInput
from featflow.modeling.precision import autocast, autocast_dtype
from featflow.registry import GEOMETRIES, OPTIMIZERS, PRECISIONS, SCHEDULES, check_choice
from featflow.utils.io import atomic_path, write_json

log = logging.getLogger(__name__)

T = TypeVar("T")
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
    # the backbone trains for this share of the run, then stays fixed while the heads go on (None: to the end).
    # Why: with frozen BatchNorm nothing holds N_feat's output scale, and late in a long detection run its
    # gradients grew 30-fold within 50 iterations at a rate of 0.0027 (reports/training_divergence.md)
    backbone_until: float | None = None
    precision: str = "fp32"  # "fp32" or "bf16" (autocast of the forward pass and loss; fp32 where unsupported)
    schedule: str = "cosine"  # after the warm-up: "cosine" (decay to 1% of lr) or "step" (x gamma at each of steps)
    steps: tuple[float, ...] = (0.667,)  # step schedule: where the rate drops, as fractions of the run
    gamma: float = 0.1  # step schedule: the factor at each step
    checkpoint_every: int | None = None  # iterations between checkpoints (None: at every evaluation, eval.every)

    def __post_init__(self) -> None:
        for key, value in (("batch_size", self.batch_size), ("iterations", self.iterations), ("lr", self.lr)):
            if value <= 0:
                raise FeatflowError(f"{key}: must be positive, got {value}")
        for key, value in (("workers", self.workers), ("warmup", self.warmup)):
            if value < 0:
                raise FeatflowError(f"{key}: must be non-negative, got {value}")
        check_choice("optimizer", self.optimizer, OPTIMIZERS, key="optimizer")
        check_choice("precision", self.precision, PRECISIONS, key="precision")
        if self.precision == "fp16":
            raise FeatflowError("precision: fp16 training would need loss scaling; train in bf16 (or fp32), and "
                                "use fp16 for inference on a GPU")
        if not 0.0 <= self.momentum < 1.0:
            raise FeatflowError(f"momentum: must be in [0, 1), got {self.momentum}")
        if self.backbone_lr < 0:
            raise FeatflowError(f"backbone_lr: must be non-negative (a multiple of lr), got {self.backbone_lr}")
        if self.backbone_until is not None and not 0.0 < self.backbone_until <= 1.0:
            raise FeatflowError(f"backbone_until: must be a share of the run in (0, 1], got {self.backbone_until}")
        if self.weight_decay < 0:
            raise FeatflowError(f"weight_decay: must be non-negative, got {self.weight_decay}")
        check_choice("schedule", self.schedule, SCHEDULES, key="schedule")
        steps = list(self.steps)
        if any(not 0.0 < s < 1.0 for s in steps) or any(a >= b for a, b in zip(steps, steps[1:])):
            raise FeatflowError(f"steps: must be increasing fractions of the run, each in (0, 1), got {steps}")
        if not 0.0 < self.gamma <= 1.0:
            raise FeatflowError(f"gamma: must be in (0, 1] (the factor at each step), got {self.gamma}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise FeatflowError(f"checkpoint_every: must be at least 1 iteration, got {self.checkpoint_every}")


@dataclass(frozen=True)
class DataConfig:
    """Where a task's training samples come from. The defaults are detection's; segmentation's config
    subclasses it with its own (``seg_training.SegDataConfig``)."""

    source: str = "synthetic"  # "synthetic" (generated on the fly) or a folder in the task's layout
    size: tuple[int, int] = (192, 384)
    geometry: str = "shapes"  # synthetic only: "shapes" (many small objects) or "vid" (ImageNet VID's geometry)
    degradations: str = "default"
    max_offset: int = 9  # other frames (key or reference) up to this many frames from the current one
    # the share of DFF keys (FGFA references) drawn as the current frame itself, beyond U{..}'s offset 0:
    # about that share of DFF samples then trains N_feat per frame (0: the papers' sampling)
    same_share: float = 0.0
    frames_per_video: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        from featflow.data.synthetic import Degradations

        if not 0.0 <= self.same_share < 1.0:
            raise FeatflowError(f"data.same_share: must be in [0, 1), got {self.same_share}")

        Degradations.parse(self.degradations)
        check_choice("synthetic geometry", self.geometry, GEOMETRIES, key="data.geometry")


@dataclass(frozen=True)
class EvalConfig:
    """The held-out evaluation during training."""

    samples: int = 64  # held-out (validation) samples
    every: int = 500  # iterations between evaluations


def override_train(cfg: T, iterations: int | None = None, time_limit: float | None = None) -> T:
    """A training config (any dataclass with a ``train: OptimConfig``) with command-line overrides."""
    changes = {k: v for k, v in (("iterations", iterations), ("time_limit_minutes", time_limit)) if v is not None}
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes)) if changes else cfg


def lr_factor(iteration: int, cfg: OptimConfig, elapsed_minutes: float) -> float:
    """The learning rate of ``iteration`` as a multiple of ``cfg.lr``: a linear warm-up, then the schedule over the
    run. With a time limit the run ends at whichever comes first, iterations or minutes, so the rate has decayed
    when the time limit stops training.

    - cosine: from 1 down to 0.01, over the iterations after the warm-up;
    - step: 1, times ``gamma`` from each fraction in ``steps`` of the run on (of all its iterations)."""
    if iteration < cfg.warmup:
        return (iteration + 1) / cfg.warmup
    if cfg.schedule == "step":
        progress = iteration / cfg.iterations
        if cfg.time_limit_minutes:
            progress = max(progress, elapsed_minutes / cfg.time_limit_minutes)
        return cfg.gamma ** sum(progress >= step for step in cfg.steps)
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
    interrupted_by: str | None = None  # "SIGINT" / "SIGTERM" when a signal stopped the run (its checkpoint is saved)

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
    # True when the loss leaves some trained parameters without a gradient (DDP must then look for them at every
    # iteration, which costs a graph traversal; without it, DDP stops with an error at the second iteration)
    find_unused_parameters: bool = False


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


def backbone_fixed(iteration: int, cfg: OptimConfig, elapsed_minutes: float) -> bool:
    """Whether ``iteration`` is past the share of the run the backbone trains for (``backbone_until``, of the
    iterations or of the time limit, whichever is reached first, as the schedule's progress)."""
    if cfg.backbone_until is None:
        return False
    progress = iteration / cfg.iterations
    if cfg.time_limit_minutes:
        progress = max(progress, elapsed_minutes / cfg.time_limit_minutes)
    return progress >= cfg.backbone_until


def param_groups(params: list[nn.Parameter], backbone: nn.Module | None, backbone_lr: float, split: bool = False
                 ) -> list[tuple[list[nn.Parameter], float]]:
    """The trained parameters as (group, learning-rate multiplier): the backbone's (at ``backbone_lr``) first, then
    the rest (at 1). ``split`` keeps the two groups apart at any multiplier (``backbone_until`` later sets the
    backbone's to 0). One group when every multiplier is 1 (as before backbone_lr existed, so older training states
    resume); empty groups are left out (a frozen backbone)."""
    if backbone is None and backbone_lr != 1.0:
        raise FeatflowError("backbone_lr: this task has no backbone to train at another learning rate")
    if backbone is None or (backbone_lr == 1.0 and not split):
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


# ---- the trainer --------------------------------------------------------------------------------------------------


class HookBase:
    """One concern of the loop (evaluation, checkpoints, logging, ...), called by the ``Trainer`` it is registered
    with (``self.trainer``) around the iterations, on every rank.

    ``after_train`` runs only when the loop ends without an exception, so a diverged or interrupted run leaves its
    last checkpoint as it was; ``close`` runs in any case, to release what ``before_train`` took."""

    trainer: Trainer

    def before_train(self) -> None:
        """Before the first iteration (of this process: after a resume, ``trainer.start`` may be past 0)."""

    def before_step(self) -> None:
        """Before each iteration; ``trainer.iteration`` is the number of iterations done."""

    def after_step(self) -> None:
        """After each iteration; ``trainer.iteration`` counts it. Set ``trainer.stop_reason`` to end the run."""

    def after_train(self) -> None:
        """After the last iteration (the run's end, or a stop)."""

    def close(self) -> None:
        """At the very end, also after an exception."""


class PeriodicHook(HookBase):
    """A hook that acts every ``period`` iterations, at the end of the run and when it stops early, and once more
    after the loop unless it already acted at the final iteration."""

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError(f"{type(self).__name__}: the period must be at least 1 iteration, got {period}")
        self.period = period
        self.last: int | None = None  # the iteration it last acted at

    def due(self) -> bool:
        t = self.trainer
        return t.iteration % self.period == 0 or t.iteration == t.cfg.iterations or t.stop_reason is not None

    def act(self) -> None:
        raise NotImplementedError

    def after_step(self) -> None:
        if self.due():
            self.act()
            self.last = self.trainer.iteration

    def after_train(self) -> None:
        if self.last != self.trainer.iteration:  # nothing ran (a resume at the end), or a stop from a later hook
            self.act()
            self.last = self.trainer.iteration


class DivergenceStop(HookBase):
    """Stops training (``FloatingPointError``) when the smoothed loss exceeds ``factor`` times the run's first
    one: a finite loss can still explode, and the rest of the budget would be wasted on it."""

    def __init__(self, factor: float = DIVERGENCE_FACTOR) -> None:
        self.factor = factor

    def after_step(self) -> None:
        t = self.trainer
        first, smooth = t.first_smooth, t.smooth
        if first is not None and smooth is not None and first > 0 and smooth > self.factor * first:
            raise FloatingPointError(f"{t.task.name}: diverged at iteration {t.iteration}: the smoothed loss "
                                     f"{smooth:.4g} is over {self.factor:g}x its first value ({first:.4g}); "
                                     "lower the lr")


class Interrupt(HookBase):
    """SIGINT (Ctrl-C) or SIGTERM ends the run after the iteration in flight, with a checkpoint, so ``--resume``
    goes on from there: nothing trained is lost, however early the signal comes. The held-out evaluation is
    skipped (the user is waiting). A second signal stops at once. Under torchrun the ranks agree to stop together
    (a signal on any rank stops all of them at the same iteration)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # the second one: the user does not want to wait
            raise KeyboardInterrupt
        self.received = signum

    def before_train(self) -> None:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def after_step(self) -> None:
        t = self.trainer
        stop = self.received is not None
        if t.ctx.distributed:
            stop = mean_over_ranks(float(stop), t.ctx) > 0
        if stop:
            name = signal.Signals(self.received).name if self.received is not None else "a signal on another rank"
            t.interrupted_by = name
            t.stop_reason = f"interrupted by {name} at iteration {t.iteration}; checkpoint saved (--resume goes on)"

    def close(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class TimeLimit(HookBase):
    """Stops the run once ``minutes`` of training time (resumes included, the mean over ranks: one clock for all)
    have passed; the evaluation and checkpoint hooks then run for the iteration it stopped at."""

    def __init__(self, minutes: float) -> None:
        self.minutes = minutes

    def after_step(self) -> None:
        t = self.trainer
        if mean_over_ranks(t.wall() / 60, t.ctx) > self.minutes:
            t.stop_reason = f"time limit of {self.minutes} min reached at iteration {t.iteration}"


class ProgressBar(HookBase):
    """A tqdm bar of the iterations with the smoothed loss (rank 0, when ``enabled``). With a time limit, the bar's
    end is where the run will stop: the iterations that fit in the time left at the pace so far, so its time
    estimate is the time limit's when that comes first."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None

    def before_train(self) -> None:
        t = self.trainer
        self.bar = tqdm(total=t.cfg.iterations, initial=t.start, desc=f"train {t.task.name}",
                        disable=not (self.enabled and t.ctx.is_main))

    def after_step(self) -> None:
        if self.bar is not None:
            t = self.trainer
            limit = t.cfg.time_limit_minutes
            if limit is not None and t.iteration > t.start:
                pace = (t.wall() - t.wall_before) / (t.iteration - t.start)  # seconds an iteration, this process
                self.bar.total = expected_end(t.iteration, t.cfg.iterations, 60 * limit - t.wall(), pace)
            self.bar.update()
            self.bar.set_postfix(loss=f"{t.smooth:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def expected_end(iteration: int, iterations: int, seconds_left: float, pace: float) -> int:
    """The iteration a run will end at: its last, or the one the time left reaches at ``pace`` seconds each."""
    if pace <= 0:
        return iterations
    return max(iteration, min(iterations, iteration + int(max(seconds_left, 0.0) / pace)))


class Evaluation(PeriodicHook):
    """The task's held-out metrics every ``period`` iterations (and at the end), appended to the history; not when
    a signal interrupts the run."""

    def before_train(self) -> None:
        history = self.trainer.history
        self.last = history[-1]["iteration"] if history else None

    def act(self) -> None:
        if self.trainer.interrupted_by is None:
            self.trainer.evaluate()


class Checkpoint(PeriodicHook):
    """Weights and training state every ``period`` iterations, at the end, and when a run stops early."""

    def before_train(self) -> None:
        self.last = self.trainer.start if self.trainer.resumed else None  # a resumed run starts from a checkpoint

    def act(self) -> None:
        self.trainer.save_checkpoint()


class _TqdmHandler(logging.Handler):
    """Log records printed with ``tqdm.write`` (to stdout, above any progress bar)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record))
        except Exception:  # logging's convention: report, never raise
            self.handleError(record)


class Logging(HookBase):
    """Writes the run to the logger ``featflow.engine.trainer`` (rank 0): each evaluation, the reason a run stopped
    early and, every ``period`` iterations when one is given, the smoothed loss and the learning rate.

    Where no logging is configured (no handler on the logger or its ancestors) the records are printed with
    ``tqdm.write`` for the run, as the loop printed them before it logged."""

    def __init__(self, period: int | None = None) -> None:
        if period is not None and period < 1:
            raise ValueError(f"Logging: the period must be at least 1 iteration, got {period}")
        self.period = period
        self.seen = 0  # history entries already logged
        self._handler: logging.Handler | None = None
        self._level = logging.NOTSET

    def before_train(self) -> None:
        self.seen = len(self.trainer.history)
        if self.trainer.ctx.is_main and not log.hasHandlers():
            self._handler, self._level = _TqdmHandler(), log.level
            log.addHandler(self._handler)
            if log.getEffectiveLevel() > logging.INFO:
                log.setLevel(logging.INFO)

    def _evaluations(self) -> None:
        t = self.trainer
        for entry in t.history[self.seen:]:
            metrics = {k: v for k, v in entry.items() if k not in ("iteration", "loss", "wall_seconds")}
            loss = entry["loss"]
            log.info("iteration %d: loss %s, %s", entry["iteration"], loss if loss is None else round(loss, 4),
                     ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        self.seen = len(t.history)

    def after_step(self) -> None:
        t = self.trainer
        if not t.ctx.is_main:
            return
        if self.period is not None and t.iteration % self.period == 0:
            log.info("iteration %d: loss %.4f (smoothed %.4f), lr %.4g", t.iteration, t.loss, t.smooth, t.lr)
        self._evaluations()

    def after_train(self) -> None:
        if self.trainer.ctx.is_main:
            self._evaluations()
            if self.trainer.stop_reason is not None:
                log.info("%s", self.trainer.stop_reason)

    def close(self) -> None:
        if self._handler is not None:
            log.removeHandler(self._handler)
            log.setLevel(self._level)
            self._handler = None


def _ignore_interrupts(worker: int) -> None:
    """Data-loading workers ignore Ctrl-C (the terminal sends it to the whole process group): the main process
    finishes its iteration and saves a checkpoint, and needs its workers alive until then."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Trainer:
    """Trains ``task`` with ``cfg`` into ``out``: the optimiser, the data in the run's order, DDP under torchrun,
    and (with ``resume``) the state of the last checkpoint, set up at construction; ``train`` then runs
    ``run_step`` for every remaining iteration with the registered hooks around it.

    State the hooks read: ``iteration`` (iterations done), ``start`` (where this process began), ``loss`` (the last
    global batch's), ``smooth`` (its running average), ``first_smooth``, ``lr`` (the last iteration's base rate),
    ``history`` (the evaluations so far; rank 0's until the end), ``stop_reason`` (set to end the run early)."""

    def __init__(self, task: TrainTask, cfg: OptimConfig, out: Path, resume: bool = False) -> None:
        self.task, self.cfg, self.out, self.resumed = task, cfg, Path(out), resume
        self.ctx = ctx = context()
        per_rank = local_batch(cfg.batch_size, ctx)
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.model = task.model.to(ctx.device)
        self.params = (list(task.parameters) if task.parameters is not None
                       else [p for p in self.model.parameters() if p.requires_grad])
        if not self.params:
            raise FeatflowError(f"{task.name}: nothing to train (every parameter is frozen)")
        if cfg.backbone_until is not None and task.backbone is None:
            raise FeatflowError("backbone_until: this task has no backbone to fix")
        groups = param_groups(self.params, task.backbone, cfg.backbone_lr, split=cfg.backbone_until is not None)
        self.scales = [scale for _, scale in groups]  # from the config, also on resume
        inside = {id(p) for p in task.backbone.parameters()} if task.backbone is not None else set()
        # the optimizer group backbone_until sets to rate 0 (None: no backbone group)
        self.backbone_group = next((i for i, (group, _) in enumerate(groups) if id(group[0]) in inside), None
                                   ) if cfg.backbone_until is not None else None
        self.optimizer = build_optimizer(groups, cfg)
        self.cast = autocast_dtype(cfg.precision, ctx.device)
        self.start, self.history, self.wall_before = 0, [], 0.0
        self.smooth: float | None = None
        self.first_smooth: float | None = None
        if resume:
            self._resume()
        self.iteration = self.start
        self.loss = math.nan
        self.lr = cfg.lr * lr_factor(self.start, cfg, 0.0)
        self.stop_reason: str | None = None
        self.interrupted_by: str | None = None  # set by the Interrupt hook
        self.hooks: list[HookBase] = []
        positions = list(epoch_order(len(task.dataset), self.start * cfg.batch_size, cfg.iterations * cfg.batch_size,
                                     task.seed, task.shuffle))
        self.loader = DataLoader(task.dataset, batch_size=per_rank,
                                 sampler=rank_positions(positions, cfg.batch_size, ctx), num_workers=cfg.workers,
                                 drop_last=True, collate_fn=task.collate, worker_init_fn=_ignore_interrupts)
        self.objective: nn.Module = _Objective(self.model, task.loss)
        if ctx.distributed:  # gradients averaged over ranks in backward; rank 0's weights broadcast at the start
            self.objective = DistributedDataParallel(
                self.objective, device_ids=[ctx.device] if ctx.device.type == "cuda" else None,
                find_unused_parameters=task.find_unused_parameters)
        self.began = time.monotonic()

    def _resume(self) -> None:
        """The optimizer state, weights, position, clock, loss statistics and history of the last checkpoint."""
        out, cfg = self.out, self.cfg
        state_path = out / STATE_FILE
        if not state_path.is_file():
            raise MissingInput(f"nothing to resume: {state_path} does not exist")
        state = torch.load(state_path, weights_only=True, map_location=self.ctx.device)
        weights_iteration = read_weights(out / WEIGHTS_FILE)[1].get("iterations")
        if weights_iteration is not None and int(weights_iteration) != int(state["iteration"]):
            raise FeatflowError(f"{out}: the weights are from iteration {weights_iteration} but the optimizer state "
                                f"from {state['iteration']} (the last checkpoint was interrupted); start again "
                                "without --resume")
        saved_optimizer = state.get("optimizer_name", "adamw")  # states written before SGD was an option
        if saved_optimizer != cfg.optimizer:
            raise FeatflowError(f"optimizer: {out} was trained with {saved_optimizer}, the config asks for "
                                f"{cfg.optimizer}; resume with the same optimizer or start again")
        self.task.load_weights(out / WEIGHTS_FILE, self.model)
        self.model.to(self.ctx.device)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as err:  # other parameter groups: another model, or backbone_lr now (not) 1
            raise FeatflowError(f"{out}: the optimizer state does not fit this model and config ({err}); resume "
                                "with the same model and backbone_lr, or start again") from None
        self.start, self.wall_before = int(state["iteration"]), float(state["wall_seconds"])
        self.history = json.loads(state["history"])
        # states written before these were saved: both read from the history (then checkpoints were evaluations)
        recorded = [h["loss"] for h in self.history if h.get("loss") is not None]
        self.smooth = state.get("smoothed_loss", self.history[-1]["loss"] if self.history else None)
        self.first_smooth = state.get("first_loss", recorded[0] if recorded else None)

    def register(self, *hooks: HookBase) -> None:
        """Add hooks; they run in the order registered."""
        for hook in hooks:
            hook.trainer = self
            self.hooks.append(hook)

    def wall(self) -> float:
        """Training seconds so far, resumes included."""
        return self.wall_before + time.monotonic() - self.began

    def run_step(self, batch: Any) -> None:
        """One iteration on this rank's share of a global batch."""
        cfg, ctx = self.cfg, self.ctx
        minutes = mean_over_ranks(self.wall() / 60, ctx) if cfg.time_limit_minutes else 0.0  # one clock for all ranks
        self.lr = cfg.lr * lr_factor(self.iteration, cfg, minutes)
        scales = self.scales
        if backbone_fixed(self.iteration, cfg, minutes):
            self._fix_backbone()
            scales = [0.0 if i == self.backbone_group else s for i, s in enumerate(scales)]
        set_lr(self.optimizer, scales, self.lr)
        seed_iteration(self.task.seed, self.iteration, ctx.rank)
        with autocast(ctx.device, self.cast):
            loss = self.objective(to_device(batch, ctx.device)).float()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.task.name}: loss became {loss.item()} at iteration {self.iteration}; "
                                     "lower the lr")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.optimizer.step()
        self.iteration += 1
        self.loss = mean_over_ranks(loss.item(), ctx)  # the global batch's loss
        self.smooth = self.loss if self.smooth is None else 0.98 * self.smooth + 0.02 * self.loss
        if self.first_smooth is None:
            self.first_smooth = self.smooth

    def _fix_backbone(self) -> None:
        """The backbone from now on: no updates (its group's rate is 0, which also holds under DDP), no BatchNorm
        statistics gathered (inference mode, set again after each evaluation's ``model.train()``), and in a
        single process no gradients either, so the backward pass stops at its output."""
        backbone = self.task.backbone
        assert backbone is not None
        backbone.eval()
        if not self.ctx.distributed and self.backbone_group is not None:  # DDP expects every parameter's gradient
            if self.optimizer.param_groups[self.backbone_group]["params"][0].requires_grad:  # once
                backbone.requires_grad_(False)

    def evaluate(self) -> None:
        """The task's held-out metrics at this iteration, appended to the history (rank 0; the others wait)."""
        if self.ctx.is_main:
            metrics = self.task.evaluate(self.model)
            self.model.train()
            self.history.append({"iteration": self.iteration, "loss": self.smooth, **metrics,
                                 "wall_seconds": self.wall()})
        barrier(self.ctx)

    def save_checkpoint(self) -> None:
        """The weights and the training state (``STATE_FILE``) at this iteration (rank 0; the others wait)."""
        if self.ctx.is_main:
            self.task.save_weights(self.out / WEIGHTS_FILE, self.model, self.iteration)
            state = {"iteration": self.iteration, "optimizer": self.optimizer.state_dict(),
                     "optimizer_name": self.cfg.optimizer, "wall_seconds": self.wall(),
                     "history": json.dumps(self.history), "smoothed_loss": self.smooth,
                     "first_loss": self.first_smooth}
            with atomic_path(self.out / STATE_FILE) as tmp:
                torch.save(state, tmp)
        barrier(self.ctx)

    def train(self) -> TrainResult:
        """Run the remaining iterations with the hooks; then the record of the run (``metrics.json``)."""
        self.began = time.monotonic()
        self.model.train()
        try:
            for hook in self.hooks:
                hook.before_train()
            for batch in self.loader:
                for hook in self.hooks:
                    hook.before_step()
                self.run_step(batch)
                for hook in self.hooks:
                    hook.after_step()
                if self.stop_reason is not None:
                    break
            for hook in self.hooks:
                hook.after_train()
        finally:
            for hook in self.hooks:
                hook.close()
        return self._finish()

    def _finish(self) -> TrainResult:
        history = self.history
        if self.ctx.distributed:  # every rank ends with rank 0's BatchNorm statistics and record of the run
            broadcast_buffers(self.model, self.ctx)
            history = gather(history, self.ctx)[0]
        final = history[-1] if history else {}
        result = TrainResult(self.out, self.iteration, final.get("wall_seconds", self.wall()), history, self.model,
                             self.interrupted_by)
        if self.ctx.is_main:
            write_json(self.out / "metrics.json", {"name": self.task.name, "config": self.task.config,
                                                    "iterations": self.iteration, "world_size": self.ctx.world_size,
                                                    "interrupted_by": self.interrupted_by,
                                                    "wall_seconds": result.wall_seconds, "final": final,
                                                    "history": history})
        return result


def default_hooks(cfg: OptimConfig, eval_every: int, progress: bool = True, log_every: int | None = None
                  ) -> list[HookBase]:
    """The hooks of a training run, in the order they run: signals, the divergence stop, the time limit (if any), the
    progress bar, evaluation every ``eval_every`` iterations, checkpoints every ``cfg.checkpoint_every`` (default:
    at every evaluation) and logging (every evaluation; the loss and lr every ``log_every`` iterations if given)."""
    hooks: list[HookBase] = [Interrupt(), DivergenceStop()]
    if cfg.time_limit_minutes is not None:
        hooks.append(TimeLimit(cfg.time_limit_minutes))
    hooks += [ProgressBar(progress), Evaluation(eval_every), Checkpoint(cfg.checkpoint_every or eval_every),
              Logging(log_every)]
    return hooks


def train(task: TrainTask, cfg: OptimConfig, out: Path, eval_every: int, resume: bool = False,
          progress: bool = True, hooks: Sequence[HookBase] = (), log_every: int | None = None) -> TrainResult:
    """Run (or resume) ``task`` for ``cfg.iterations`` iterations with the default hooks, then ``hooks`` (run after
    them); checkpoints and metrics go to ``out`` (under torchrun: on every rank, rank 0 writing)."""
    if eval_every < 1:
        raise FeatflowError(f"eval.every: evaluations must be at least 1 iteration apart, got {eval_every} "
                            f"({task.name})")
    trainer = Trainer(task, cfg, out, resume)
    trainer.register(*default_hooks(cfg, eval_every, progress, log_every), *hooks)
    return trainer.train()
