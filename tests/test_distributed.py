"""Training past one process and through faults: DDP under torchrun (gloo on the CPU), sharded evaluation,
resume after SIGKILL, fixed-seed reproducibility, configs that fail before training."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from featflow.cli import main
from featflow.engine.config import load_config
from featflow.engine.seg_training import SegTrainConfig, train_segmentation

TINY = """model: {arch: resnet18, channels: 16}
data: {size: [32, 64], frames_per_video: 4, seed: 0}
train: {batch_size: 4, iterations: ITERATIONS, lr: 0.001, warmup: 2, workers: 0}
eval: {samples: 2, every: EVERY}
output: out
"""

# Trains the config given on the command line and saves this rank's final weights and history beside the output.
WORKER = """import json, sys, torch
from featflow.engine.config import load_config
from featflow.engine.distributed import init_distributed, shutdown
from featflow.engine.seg_training import SegTrainConfig, train_segmentation
ctx = init_distributed("cpu")
result = train_segmentation(load_config(SegTrainConfig, sys.argv[1], "seg"), out=sys.argv[2], progress=False)
torch.save(result.model.state_dict(), f"{sys.argv[2]}.rank{ctx.rank}.pt")
json.dump(result.history, open(f"{sys.argv[2]}.rank{ctx.rank}.json", "w"))
shutdown()
"""


def _config(folder: Path, iterations: int, every: int) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(TINY.replace("ITERATIONS", str(iterations)).replace("EVERY", str(every)))
    return path


def _env() -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tmp_path):
    config = _config(tmp_path, 6, 3)
    (tmp_path / "worker.py").write_text(WORKER)
    _torchrun("worker.py", str(config), str(tmp_path / "two"), cwd=tmp_path)
    single = subprocess.run([sys.executable, "worker.py", str(config), str(tmp_path / "one")], cwd=tmp_path,
                            env=_env(), capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"two.rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # both ranks end with the same model
    two = json.loads((tmp_path / "two.rank0.json").read_text())
    one = json.loads((tmp_path / "one.rank0.json").read_text())
    assert [h["iteration"] for h in two] == [h["iteration"] for h in one] == [3, 6]
    for a, b in zip(two, one):  # the same global batch of 4 (2 per rank); BatchNorm statistics are per rank
        assert a["loss"] == pytest.approx(b["loss"], rel=0.01)
    assert sorted(os.listdir(tmp_path / "two")) == ["metrics.json", "model.safetensors", "training_state.pt"]
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_sharded_evaluation_gives_the_single_process_numbers(tmp_path):
    from featflow.engine.checkpoint import save_detector, save_segmenter
    from featflow.methods.detection import VideoDetector
    from featflow.methods.segmentation import VideoSegmenter
    from featflow.modeling.rpn import RPNConfig

    assert main(["synth", "--format", "vid", "--out", str(tmp_path / "vid"), "--videos", "0", "--val-videos", "3",
                 "--frames", "6", "--size", "64x96", "--quiet"]) == 0
    assert main(["synth", "--format", "cityscapes", "--out", str(tmp_path / "cs"), "--videos", "0", "--val-videos", "3",
                 "--size", "64x96", "--quiet"]) == 0
    torch.manual_seed(0)
    save_detector(tmp_path / "det.safetensors", VideoDetector(8, "resnet18", 16, rpn=RPNConfig(anchor_sizes=(16, 32))),
                  [f"c{k}" for k in range(8)])
    save_segmenter(tmp_path / "seg.safetensors", VideoSegmenter(9, "resnet18", 16), [f"c{k}" for k in range(9)])
    commands = {"det": ["eval", "det", "--data", str(tmp_path / "vid"), "--weights", str(tmp_path / "det.safetensors"),
                        "--quiet"],
                "seg": ["eval", "seg", "--data", str(tmp_path / "cs"), "--weights", str(tmp_path / "seg.safetensors"),
                        "--method", "frame", "--quiet"]}
    for task, command in commands.items():
        _torchrun("-m", "featflow.cli", *command, "--json", str(tmp_path / f"{task}_two.json"), cwd=tmp_path)
        assert main([*command, "--json", str(tmp_path / f"{task}_one.json")]) == 0
        two, one = (json.loads((tmp_path / f"{task}_{n}.json").read_text()) for n in ("two", "one"))
        for key in ("map", "slow", "medium", "fast", "num_gt", "frames") if task == "det" else ("miou", "iou"):
            assert two[key] == one[key], (task, key)


@pytest.mark.slow
def test_resume_after_sigkill_ends_where_an_uninterrupted_run_does(tmp_path):
    config = _config(tmp_path, 24, 4)
    command = [sys.executable, "-m", "featflow.cli", "train", "seg", "--config", str(config), "--quiet"]
    whole = subprocess.run([*command, "--out", str(tmp_path / "whole")], env=_env(), capture_output=True, text=True,
                           timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]
    run = subprocess.Popen([*command, "--out", str(tmp_path / "killed")], env=_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "training_state.pt"
    saved = 0
    deadline = time.monotonic() + 300
    while saved < 8 and time.monotonic() < deadline:  # wait for the checkpoint at iteration 8 (of 24)
        time.sleep(0.02)
        if state.is_file():
            saved = int(torch.load(state, weights_only=True)["iteration"])
    assert run.poll() is None and 8 <= saved < 24, "the run ended before it could be killed mid-way"
    run.send_signal(signal.SIGKILL)
    run.wait()
    saved = int(torch.load(state, weights_only=True)["iteration"])  # the last checkpoint before the kill
    resumed = subprocess.run([*command, "--out", str(tmp_path / "killed"), "--resume"], env=_env(),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = json.loads((tmp_path / "killed" / "metrics.json").read_text())["history"]
    reference = json.loads((tmp_path / "whole" / "metrics.json").read_text())["history"]
    assert [h["iteration"] for h in history] == [h["iteration"] for h in reference] == [4, 8, 12, 16, 20, 24]
    for a, b in zip(history, reference):  # lost at most the iterations since the last checkpoint, then the same run
        assert (a["loss"] == pytest.approx(b["loss"], rel=1e-4)
                and a["val_miou"] == pytest.approx(b["val_miou"], abs=1e-6))
    from featflow.engine.checkpoint import read_weights

    killed, whole_weights = read_weights(tmp_path / "killed" / "model.safetensors")[0], read_weights(
        tmp_path / "whole" / "model.safetensors")[0]
    assert all(torch.allclose(killed[k], whole_weights[k], atol=1e-5) for k in killed)


@pytest.mark.slow
def test_fixed_seed_gives_the_same_loss_curve(tmp_path):
    cfg = load_config(SegTrainConfig, _config(tmp_path, 6, 2), "seg")
    first = train_segmentation(cfg, out=tmp_path / "a", progress=False).history
    second = train_segmentation(cfg, out=tmp_path / "b", progress=False).history
    assert [h["loss"] for h in first] == [h["loss"] for h in second]
    assert [h["val_miou"] for h in first] == [h["val_miou"] for h in second]


@pytest.mark.parametrize("change,message", [
    ("train: {batch_size: 4, iterations: 6, lr: 0.001, warmup: 2, workers: 0, momentun: 0.9}",
     "train: unknown key 'momentun'"),
    ("train: {batch_size: 4, iterations: 6, optimizer: adam}", "train: optimizer: unknown optimizer 'adam'"),
    ("train: {batch_size: four, iterations: 6}", "train.batch_size: expected an integer"),
    ("data: {source: /no/such/folder, size: [32, 64]}", "data.source: no such file or folder"),
    ("model: {arch: resnet18, channels: 16, init: /no/such/model.safetensors}", "model.init: no such file or folder"),
])
def test_bad_config_fails_before_training_and_names_the_key(tmp_path, capsys, change, message):
    text = _config(tmp_path, 6, 3).read_text()
    section = change.split(":")[0]
    lines = [change if line.startswith(section + ":") else line for line in text.splitlines()]
    (tmp_path / "bad.yaml").write_text("\n".join(lines) + "\n")
    assert main(["train", "seg", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing started


def test_global_batch_must_divide_among_ranks():
    from featflow.engine.distributed import DistContext, local_batch, shard, unshard

    assert local_batch(8, DistContext(1, 2)) == 4
    with pytest.raises(ValueError, match="does not divide among 3"):
        local_batch(8, DistContext(0, 3))
    items = list(range(7))
    assert unshard([shard(items, DistContext(r, 3)) for r in range(3)]) == items
