"""The shared training loop as a Trainer with hooks: hook periods and order, custom hooks, checkpoints at the end and
at the time limit, exact resume between evaluations, the step schedule, config and user errors, logging, and which
tasks tell DDP about unused parameters, signals that stop a run with a checkpoint. A tiny model on a tiny dataset:
seconds."""

from __future__ import annotations

import json
import logging
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from featflow.engine import trainer
from featflow.engine.checkpoint import read_weights, save_weights
from featflow.engine.config import from_dict
from featflow.engine.trainer import HookBase, OptimConfig, Trainer, TrainTask, lr_factor, train
from featflow.errors import FeatflowError, MissingInput
from tiny_training import TinyNet, TinyPairs, mse_loss


class _Calls:
    """The iterations at which the task was evaluated and saved."""

    def __init__(self) -> None:
        self.evaluated: list[int] = []
        self.saved: list[int] = []


def _task(calls: _Calls | None = None, loss=mse_loss, model: nn.Module | None = None) -> TrainTask:
    calls = calls or _Calls()
    model = model or TinyNet()

    def evaluate(m: nn.Module) -> dict[str, float]:
        calls.evaluated.append(len(calls.evaluated))
        return {"metric": float(len(calls.evaluated))}

    def save(path: Path, m: nn.Module, iteration: int) -> None:
        calls.saved.append(iteration)
        save_weights(path, m, {"iterations": str(iteration)})

    def load(path: Path, m: nn.Module) -> None:
        m.load_state_dict(read_weights(path)[0])

    return TrainTask("tiny", model, TinyPairs(6), loss, evaluate=evaluate, save_weights=save, load_weights=load,
                     backbone=model.backbone)


CFG = OptimConfig(batch_size=2, iterations=7, lr=0.05, warmup=2, workers=0, optimizer="sgd", backbone_lr=0.5)


class _Recorder(HookBase):
    """Everything a custom hook can see, step by step."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.steps: list[tuple[int, float, float]] = []  # (iteration, lr, smoothed loss)
        self.state_at: list[int | None] = []  # the checkpoint on disk after each step

    def before_train(self) -> None:
        self.events.append(f"before_train {self.trainer.iteration}")

    def before_step(self) -> None:
        self.events.append(f"before_step {self.trainer.iteration}")

    def after_step(self) -> None:
        t = self.trainer
        self.steps.append((t.iteration, t.lr, t.smooth))
        path = t.out / trainer.STATE_FILE
        self.state_at.append(int(torch.load(path, weights_only=True)["iteration"]) if path.is_file() else None)

    def after_train(self) -> None:
        self.events.append(f"after_train {self.trainer.iteration}")

    def close(self) -> None:
        self.events.append("close")


def test_hooks_run_at_their_periods_and_a_custom_hook_sees_every_step(tmp_path):
    calls, recorder = _Calls(), _Recorder()
    cfg = replace(CFG, checkpoint_every=2)
    result = train(_task(calls), cfg, tmp_path / "run", eval_every=3, progress=False, hooks=[recorder])
    assert [h["iteration"] for h in result.history] == [3, 6, 7]  # every 3, and at the end
    assert calls.saved == [2, 4, 6, 7]  # every 2 (its own period), and at the end
    assert [s[0] for s in recorder.steps] == list(range(1, 8))
    # the custom hook runs after the defaults: it sees each checkpoint written at its own step
    assert recorder.state_at == [None, 2, 2, 4, 4, 6, 7]
    assert recorder.events[0] == "before_train 0" and recorder.events[-2:] == ["after_train 7", "close"]
    assert [e for e in recorder.events if e.startswith("before_step")] == [f"before_step {i}" for i in range(7)]
    assert [s[1] for s in recorder.steps] == pytest.approx([cfg.lr * lr_factor(i, cfg, 0.0) for i in range(7)])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["iterations"] == 7 and metrics["final"] == result.history[-1]
    assert metrics["history"] == result.history


def test_the_checkpoint_period_defaults_to_the_evaluation_period(tmp_path):
    calls = _Calls()
    train(_task(calls), replace(CFG, iterations=6), tmp_path / "run", eval_every=4, progress=False)
    assert calls.saved == [4, 6] and len(calls.evaluated) == 2
    state = torch.load(tmp_path / "run" / trainer.STATE_FILE, weights_only=True)
    assert state["iteration"] == 6 and [h["iteration"] for h in json.loads(state["history"])] == [4, 6]
    assert state["optimizer_name"] == "sgd" and state["smoothed_loss"] == json.loads(state["history"])[-1]["loss"]


def test_the_time_limit_stops_the_run_with_an_evaluation_and_a_checkpoint(tmp_path, caplog):
    calls = _Calls()
    cfg = replace(CFG, iterations=50, time_limit_minutes=1e-9)
    with caplog.at_level(logging.INFO, logger="featflow.engine.trainer"):
        result = train(_task(calls), cfg, tmp_path / "run", eval_every=20, progress=False)
    assert result.iterations == 1 and [h["iteration"] for h in result.history] == [1] and calls.saved == [1]
    assert torch.load(tmp_path / "run" / trainer.STATE_FILE, weights_only=True)["iteration"] == 1
    assert "time limit of 1e-09 min reached at iteration 1" in caplog.text


class _StopAt(HookBase):
    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def after_step(self) -> None:
        if self.trainer.iteration == self.iteration:
            self.trainer.stop_reason = "asked to stop"


def test_a_hook_can_stop_the_run_and_it_still_ends_with_a_checkpoint(tmp_path):
    calls = _Calls()
    result = train(_task(calls), CFG, tmp_path / "run", eval_every=4, progress=False, hooks=[_StopAt(2)])
    assert result.iterations == 2 and [h["iteration"] for h in result.history] == [2] and calls.saved == [2]


def test_an_exception_skips_after_train_but_closes_every_hook(tmp_path):
    calls, recorder = _Calls(), _Recorder()

    class _Fail(HookBase):
        def after_step(self) -> None:
            if self.trainer.iteration == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_task(calls), CFG, tmp_path / "run", eval_every=2, progress=False, hooks=[recorder, _Fail()])
    assert calls.saved == [2]  # no checkpoint of the interrupted state
    assert recorder.events[-1] == "close" and not any(e.startswith("after_train") for e in recorder.events)


def _interrupt_after(calls_before: int):
    count = 0

    def loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        nonlocal count
        count += 1
        if count > calls_before:
            raise KeyboardInterrupt
        return mse_loss(model, batch)

    return loss


def test_resume_from_a_checkpoint_between_evaluations_is_exact(tmp_path):
    cfg = replace(CFG, iterations=9, checkpoint_every=2)
    whole = train(_task(), cfg, tmp_path / "whole", eval_every=3, progress=False)
    with pytest.raises(KeyboardInterrupt):  # checkpoints at 2 and 4, evaluation at 3
        train(_task(loss=_interrupt_after(5)), cfg, tmp_path / "cut", eval_every=3, progress=False)
    state = torch.load(tmp_path / "cut" / trainer.STATE_FILE, weights_only=True)
    assert state["iteration"] == 4 and [h["iteration"] for h in json.loads(state["history"])] == [3]
    resumed = train(_task(), cfg, tmp_path / "cut", eval_every=3, resume=True, progress=False)
    assert [h["iteration"] for h in resumed.history] == [h["iteration"] for h in whole.history] == [3, 6, 9]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]  # the smoothed loss carried over
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_training_states_written_before_the_loss_statistics_still_resume(tmp_path):
    whole = train(_task(), CFG, tmp_path / "whole", eval_every=3, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(_task(loss=_interrupt_after(4)), CFG, tmp_path / "cut", eval_every=3, progress=False)
    path = tmp_path / "cut" / trainer.STATE_FILE
    state = torch.load(path, weights_only=True)
    old = {k: v for k, v in state.items() if k not in ("smoothed_loss", "first_loss")}  # the earlier format
    torch.save(old, path)
    resumed = train(_task(), CFG, tmp_path / "cut", eval_every=3, resume=True, progress=False)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]
    assert all(torch.equal(a, b)
               for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()))


def test_the_step_schedule_drops_by_gamma_at_fractions_of_the_run(tmp_path):
    cfg = OptimConfig(iterations=10, warmup=2, lr=1.0, schedule="step", steps=(0.5, 0.8), gamma=0.1)
    assert [lr_factor(i, cfg, 0.0) for i in range(10)] == pytest.approx(
        [0.5, 1, 1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01])
    timed = replace(cfg, warmup=0, time_limit_minutes=10.0)  # half the time gone: past the first step already
    assert lr_factor(1, timed, 5.0) == pytest.approx(0.1) and lr_factor(1, timed, 0.0) == 1.0
    cosine = OptimConfig(iterations=10, warmup=2)  # the default, as before
    assert cosine.schedule == "cosine" and lr_factor(2, cosine, 0.0) == 1.0
    assert lr_factor(10, cosine, 0.0) == pytest.approx(0.01)
    # in the loop: the rate of each iteration, the backbone's at its multiple
    recorder = _Recorder()
    step = replace(CFG, iterations=6, warmup=0, schedule="step", steps=(0.5,), gamma=0.2)
    train(_task(), step, tmp_path / "run", eval_every=6, progress=False, hooks=[recorder])
    assert [s[1] for s in recorder.steps] == pytest.approx([0.05] * 3 + [0.01] * 3)
    groups = torch.load(tmp_path / "run" / trainer.STATE_FILE, weights_only=True)["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([0.005, 0.01])  # backbone_lr 0.5


@pytest.mark.parametrize("values,message", [
    ({"schedule": "linear"}, "schedule: unknown schedule 'linear'; choose one of cosine, step"),
    ({"schedule": "step", "steps": (0.8, 0.5)}, "steps: must be increasing fractions"),
    ({"steps": (0.5, 1.0)}, "steps: must be increasing fractions"),
    ({"gamma": 0.0}, "gamma: must be in (0, 1]"),
    ({"gamma": 2.0}, "gamma: must be in (0, 1]"),
    ({"checkpoint_every": 0}, "checkpoint_every: must be at least 1"),
    ({"batch_size": 0}, "batch_size: must be positive"),
    ({"warmup": -1}, "warmup: must be non-negative"),
])
def test_bad_schedule_and_checkpoint_settings_name_the_key(values, message):
    with pytest.raises(FeatflowError, match=message.replace("(", r"\(").replace("]", r"\]")):
        OptimConfig(**values)
    from featflow.engine.flow_training import FlowTrainConfig

    data = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    with pytest.raises(ValueError, match="config.train: " + message.split(":")[0] + ":"):
        from_dict(FlowTrainConfig, {"train": data})


def test_step_schedule_settings_read_from_a_config():
    from featflow.engine.flow_training import FlowTrainConfig

    cfg = from_dict(FlowTrainConfig, {"train": {"schedule": "step", "steps": [0.5, 0.75], "gamma": 0.5,
                                                "checkpoint_every": 100}})
    assert (cfg.train.schedule, cfg.train.steps, cfg.train.gamma, cfg.train.checkpoint_every) == (
        "step", (0.5, 0.75), 0.5, 100)


def test_user_errors_are_featflow_errors(tmp_path):
    with pytest.raises(MissingInput, match="nothing to resume"):
        train(_task(), CFG, tmp_path / "empty", eval_every=3, resume=True, progress=False)
    with pytest.raises(FeatflowError, match="eval.every: evaluations must be at least 1 iteration apart"):
        train(_task(), CFG, tmp_path / "run", eval_every=0, progress=False)
    frozen = TinyNet().requires_grad_(False)
    with pytest.raises(FeatflowError, match="nothing to train"):
        train(_task(model=frozen), CFG, tmp_path / "frozen", eval_every=3, progress=False)
    short = replace(CFG, iterations=2)
    train(_task(), short, tmp_path / "run", eval_every=2, progress=False)
    with pytest.raises(FeatflowError, match="optimizer: .* was trained with sgd"):
        train(_task(), replace(short, optimizer="adamw"), tmp_path / "run", eval_every=2, resume=True, progress=False)
    with pytest.raises(FeatflowError, match="the optimizer state does not fit"):  # one param group, not two
        train(_task(), replace(short, backbone_lr=1.0), tmp_path / "run", eval_every=2, resume=True, progress=False)
    with pytest.raises(FloatingPointError, match="loss became nan"):  # a diverged run stays what it was
        train(_task(loss=lambda m, b: mse_loss(m, b) * torch.nan), short, tmp_path / "nan", eval_every=2,
              progress=False)


def test_logging_goes_to_the_trainer_logger(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="featflow.engine.trainer"):
        train(_task(), replace(CFG, iterations=6), tmp_path / "run", eval_every=3, progress=False, log_every=2)
    records = [r for r in caplog.records if r.name == "featflow.engine.trainer"]
    evaluations = [r.getMessage() for r in records if "metric" in r.getMessage()]
    assert [m.split(":")[0] for m in evaluations] == ["iteration 3", "iteration 6"]
    assert "metric 1.0000" in evaluations[0] and "metric 2.0000" in evaluations[1]
    periodic = [r.getMessage() for r in records if ", lr " in r.getMessage()]
    assert [m.split(":")[0] for m in periodic] == ["iteration 2", "iteration 4", "iteration 6"]


def test_without_logging_configured_the_lines_are_printed_as_before(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(trainer.log, "hasHandlers", lambda: False)  # as in a plain script (pytest adds handlers)
    level = trainer.log.level
    train(_task(), replace(CFG, iterations=2), tmp_path / "run", eval_every=1, progress=False)
    out = capsys.readouterr().out
    assert "iteration 1: loss" in out and "iteration 2: loss" in out
    assert trainer.log.level == level and not trainer.log.handlers  # the run's handler is gone


def test_trainer_runs_without_hooks(tmp_path):
    t = Trainer(_task(), replace(CFG, iterations=3), tmp_path / "run")
    result = t.train()
    assert result.iterations == 3 and result.history == [] and not (tmp_path / "run" / trainer.STATE_FILE).exists()


def _captured_task(module, monkeypatch, run, cfg, tmp_path) -> TrainTask:
    """The TrainTask a task's training function builds (training itself skipped)."""
    seen: list[TrainTask] = []
    monkeypatch.setattr(module, "train", lambda task, *args, **kwargs: seen.append(task))
    run(cfg, out=tmp_path / "run", progress=False)
    return seen[0]


def test_only_the_tasks_that_leave_parameters_unused_tell_ddp(tmp_path, monkeypatch):
    from featflow.engine import det_training, flow_training, seg_training

    flow = from_dict(flow_training.FlowTrainConfig, {"data": {"size": [32, 48]}, "eval": {"pairs": 1}})
    assert _captured_task(flow_training, monkeypatch, flow_training.train_flow, flow, tmp_path).find_unused_parameters
    for model, unused in [({}, False), ({"flow_net": "flownet_inception"}, False),
                          ({"flow_net": "flownet_inception", "aggregation": "adaptive"}, True),
                          ({"flow_net": "flownet_inception", "aggregation": "adaptive", "freeze_flow": True}, False),
                          ({"aggregation": "adaptive"}, False)]:
        det = from_dict(det_training.DetTrainConfig, {
            "model": {"channels": 16, "anchor_sizes": [16, 32], "flow_init": None, **model},
            "data": {"size": [32, 48], "frames_per_video": 2}, "eval": {"samples": 1}})
        task = _captured_task(det_training, monkeypatch, det_training.train_detection, det, tmp_path)
        assert task.find_unused_parameters == unused, model
    for model in ({}, {"flow_net": "flownet_inception"}):
        seg = from_dict(seg_training.SegTrainConfig, {"model": {"channels": 16, "flow_init": None, **model},
                                                      "data": {"size": [32, 48]}, "eval": {"samples": 1}})
        assert not _captured_task(seg_training, monkeypatch, seg_training.train_segmentation, seg,
                                  tmp_path).find_unused_parameters


class _SignalAt(HookBase):
    """Sends the process ``signum`` after iteration ``at``, as Ctrl-C (SIGINT) or a job scheduler (SIGTERM) would."""

    def __init__(self, at: int, signum: int) -> None:
        self.at, self.signum = at, signum

    def after_step(self) -> None:
        if self.trainer.iteration == self.at:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_a_checkpoint_that_resumes_exactly(tmp_path, signum):
    """Ctrl-C before the first periodic checkpoint used to lose everything; now the iteration in flight ends, its
    checkpoint is written (no evaluation: the user is waiting), and --resume ends where an uninterrupted run ends."""
    calls = _Calls()
    cfg = replace(CFG, iterations=7)
    whole = train(_task(), cfg, tmp_path / "whole", eval_every=100, progress=False)
    before = signal.getsignal(signum)
    cut = train(_task(calls), cfg, tmp_path / "cut", eval_every=100, progress=False, hooks=[_SignalAt(3, signum)])
    # the signal comes after iteration 3's hooks have looked: the run stops after the next iteration, the one in flight
    assert cut.interrupted_by == signal.Signals(signum).name and cut.iterations == 4
    assert calls.saved == [4] and calls.evaluated == []  # the checkpoint, and no evaluation
    assert signal.getsignal(signum) is before  # the handler is given back
    assert read_weights(tmp_path / "cut" / "model.safetensors")[1]["iterations"] == "4"
    resumed = train(_task(), cfg, tmp_path / "cut", eval_every=100, resume=True, progress=False)
    assert resumed.iterations == 7 and resumed.interrupted_by is None
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_progress_bar_ends_where_the_time_limit_stops_the_run():
    assert trainer.expected_end(10, 100, seconds_left=30.0, pace=1.0) == 40  # 30 more iterations fit
    assert trainer.expected_end(10, 100, seconds_left=1e6, pace=1.0) == 100  # the iterations come first
    assert trainer.expected_end(10, 100, seconds_left=-5.0, pace=1.0) == 10  # past the limit: this one is the last
    assert trainer.expected_end(0, 100, seconds_left=30.0, pace=0.0) == 100


def test_the_cli_exits_130_after_an_interrupted_run(tmp_path, monkeypatch, capsys):
    from featflow.cli import train as train_command

    result = trainer.TrainResult(tmp_path, 3, 1.0, [], None, "SIGINT")
    assert train_command._interrupted(result) == 130
    err = capsys.readouterr().err
    assert "interrupted by SIGINT at iteration 3" in err and "add --resume to go on" in err
    assert train_command._interrupted(replace(result, interrupted_by="SIGTERM")) == 143
    assert train_command._interrupted(replace(result, interrupted_by=None)) is None
