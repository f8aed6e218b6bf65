"""Training as the papers do it: SGD with momentum and a backbone learning rate, frozen BatchNorm in N_feat,
bfloat16 autocast, the feature-scale diagnostic, and the configs and checkpoints around them."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from featflow.data.detection_clips import SyntheticDetectionClips, collate_clips
from featflow.data.references import ReferenceSampling
from featflow.data.synthetic import SynthConfig
from featflow.engine import trainer
from featflow.engine.checkpoint import load_detector, read_weights, save_detector, save_segmenter, save_weights
from featflow.engine.config import from_dict
from featflow.engine.det_training import DetModelConfig, DetTrainConfig, training_loss as det_loss
from featflow.engine.feature_scale import FeatureScale, feature_std
from featflow.engine.models import build_video_model
from featflow.engine.seg_training import SegModelConfig
from featflow.engine.trainer import OptimConfig, TrainTask, train
from featflow.errors import FeatflowError
from featflow.methods.detection import VideoDetector
from featflow.methods.segmentation import VideoSegmenter
from featflow.modeling import precision
from featflow.modeling.feature_net import FeatureNet
from featflow.modeling.rpn import RPNConfig
from tiny_training import TinyNet, TinyPairs, mse_loss


def _save(path: Path, model: nn.Module, iteration: int) -> None:
    save_weights(path, model, {"iterations": str(iteration)})


def _load(path: Path, model: nn.Module) -> None:
    model.load_state_dict(read_weights(path)[0])


def _task(model: nn.Module, loss=mse_loss, backbone: bool = True) -> TrainTask:
    return TrainTask("tiny", model, TinyPairs(8), loss, evaluate=lambda m: {}, save_weights=_save, load_weights=_load,
                     backbone=model.backbone if backbone else None)


SGD = OptimConfig(batch_size=4, iterations=6, lr=0.05, weight_decay=5e-4, warmup=2, workers=0, optimizer="sgd",
                  momentum=0.9, backbone_lr=0.1)


def test_resume_with_sgd_momentum_and_param_groups_reproduces_the_uninterrupted_run(tmp_path):
    whole = train(_task(TinyNet()), SGD, tmp_path / "whole", eval_every=3, progress=False).model
    calls = 0

    def interrupted(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        nonlocal calls
        calls += 1
        if calls == 4:  # after the checkpoint at iteration 3
            raise KeyboardInterrupt
        return mse_loss(model, batch)

    with pytest.raises(KeyboardInterrupt):
        train(_task(TinyNet(), interrupted), SGD, tmp_path / "cut", eval_every=3, progress=False)
    state = torch.load(tmp_path / "cut" / trainer.STATE_FILE, weights_only=True)
    assert state["iteration"] == 3 and state["optimizer_name"] == "sgd"
    assert len(state["optimizer"]["param_groups"]) == 2  # backbone and head
    assert all("momentum_buffer" in s for s in state["optimizer"]["state"].values())
    resumed = train(_task(TinyNet()), SGD, tmp_path / "cut", eval_every=3, resume=True, progress=False).model
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="optimizer: .* was trained with sgd"):  # momentum buffers are not Adam's
        train(_task(TinyNet()), replace(SGD, optimizer="adamw"), tmp_path / "cut", eval_every=3,
              resume=True, progress=False)


def test_backbone_lr_multiplies_the_backbones_learning_rate(tmp_path):
    model = TinyNet()
    groups = trainer.param_groups(list(model.parameters()), model.backbone, 0.25)
    assert [len(g) for g, _ in groups] == [4, 2] and [s for _, s in groups] == [0.25, 1.0]
    optimizer = trainer.build_optimizer(groups, SGD)
    trainer.set_lr(optimizer, [s for _, s in groups], 0.1)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.025, 0.1])
    assert len(trainer.param_groups(list(model.parameters()), model.backbone, 1.0)) == 1  # as before the option
    # in the loop: the saved learning rates keep the ratio, and a multiplier of 0 leaves the backbone where it was
    cfg = replace(SGD, backbone_lr=0.0)
    start = {k: v.clone() for k, v in model.named_parameters()}
    trained = train(_task(model), cfg, tmp_path / "run", eval_every=6, progress=False).model
    assert all(torch.equal(p, start[k]) for k, p in trained.named_parameters() if k.startswith("backbone"))
    assert not torch.equal(trained.head.weight, start["head.weight"])
    state = torch.load(tmp_path / "run" / trainer.STATE_FILE, weights_only=True)
    lrs = [g["lr"] for g in state["optimizer"]["param_groups"]]
    assert lrs[0] == 0.0 and lrs[1] > 0
    with pytest.raises(ValueError, match="backbone_lr: this task has no backbone"):
        train(_task(TinyNet(), backbone=False), SGD, tmp_path / "none", eval_every=6, progress=False)


def test_backbone_until_fixes_the_backbone_and_its_statistics_for_the_rest_of_the_run(tmp_path):
    """backbone_until=0.5 of 6 iterations: the backbone (weights and BatchNorm statistics) trains for 3, then stays
    bit for bit where it was while the head goes on; without it the backbone would move at every iteration. A run
    resumed after the switch reproduces the uninterrupted one."""
    cfg = replace(SGD, backbone_lr=1.0, backbone_until=0.5)  # 1.0: the groups must still be split
    snapshots: list[dict[str, Tensor]] = []

    class Snapshot(trainer.HookBase):
        def after_step(self) -> None:
            snapshots.append({k: v.detach().clone() for k, v in self.trainer.model.state_dict().items()})

    task = _task(TinyNet())
    run = trainer.Trainer(task, cfg, tmp_path / "whole")
    run.register(Snapshot())
    whole = run.train().model
    backbone = [k for k in snapshots[0] if k.startswith("backbone")]
    assert any(k.endswith("running_mean") for k in backbone)

    def moved(a: dict[str, Tensor], b: dict[str, Tensor], keys: list[str]) -> bool:
        return any(not torch.equal(a[k], b[k]) for k in keys)

    assert all(moved(snapshots[i], snapshots[i + 1], backbone) for i in range(2))  # iterations 2 and 3 train it
    assert not any(moved(snapshots[i], snapshots[i + 1], backbone) for i in range(2, 5))  # 4, 5 and 6 do not
    assert all(moved(snapshots[i], snapshots[i + 1], ["head.weight"]) for i in range(5))
    assert all(p.requires_grad is False for p in whole.backbone.parameters())  # no backward through it
    # without the option the backbone keeps moving after iteration 3
    free = trainer.Trainer(_task(TinyNet()), replace(cfg, backbone_until=None), tmp_path / "free")
    late: list[dict[str, Tensor]] = []
    free.register(type("Late", (trainer.HookBase,), {"after_step": lambda self: late.append(
        {k: v.detach().clone() for k, v in self.trainer.model.state_dict().items()})})())
    free.train()
    assert moved(late[3], late[5], backbone)
    # interrupted at iteration 4, after the switch: the resumed run ends where the whole one did
    calls = 0

    def interrupted(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise KeyboardInterrupt
        return mse_loss(model, batch)

    with pytest.raises(KeyboardInterrupt):
        train(_task(TinyNet(), interrupted), cfg, tmp_path / "cut", eval_every=4, progress=False)
    resumed = train(_task(TinyNet()), cfg, tmp_path / "cut", eval_every=4, resume=True, progress=False).model
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="backbone_until: this task has no backbone"):
        train(_task(TinyNet(), backbone=False), cfg, tmp_path / "none", eval_every=6, progress=False)


def _pretrained_batch_norm_net() -> FeatureNet:
    """A small N_feat whose BatchNorm statistics were gathered on 'pre-training' images (uniform in [-50, 50])."""
    torch.manual_seed(0)
    net = FeatureNet("resnet18", out_channels=8, norm="batch").train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(2, 3, 32, 32) * 100 - 50)
    return net.eval()


@pytest.mark.parametrize("norm", ["batch", "frozen"])
def test_frozen_norm_trains_with_the_pre_trainings_statistics(norm):
    """With inputs whose statistics differ from the pre-training's, BatchNorm in train mode normalises by the batch
    (train-mode features differ from eval-mode ones) and moves its statistics at every step; frozen BatchNorm, as
    the papers' ResNets, computes the same features in both modes, its statistics stay where pre-training put
    them and its affine is not trained. (It does not by itself keep the feature scale: under AdamW it lets it
    grow faster, see ``test_sgd_keeps_the_feature_scale_that_adamw_blows_up``.)"""
    pretrained = _pretrained_batch_norm_net()
    net = FeatureNet("resnet18", out_channels=8, norm=norm)
    net.load_state_dict(pretrained.state_dict())  # frozen BatchNorm drops num_batches_tracked
    stats = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    shifted = (torch.rand(2, 3, 32, 32) * 100 - 50) * 3 + 40  # another contrast and brightness
    net.eval()
    with torch.no_grad():
        eval_features = net(shifted)
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    train_features = net(shifted)
    train_features.square().mean().backward()
    optimizer.step()
    same_features = torch.allclose(train_features, eval_features, rtol=1e-4, atol=1e-4 * eval_features.abs().max())
    stats_kept = all(torch.equal(v, net.state_dict()[k]) for k, v in stats.items())
    assert same_features == stats_kept == (norm == "frozen")
    affine_trained = any("bn" in name for name, _ in net.named_parameters())  # frozen: gamma and beta fixed too
    assert affine_trained == (norm == "batch")


class _Repeat(torch.utils.data.Dataset):
    """The same few samples over and over."""

    def __init__(self, samples: list[dict], length: int) -> None:
        self.samples, self.length = samples, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self.samples[index % len(self.samples)]


def _feature_growth(cfg: OptimConfig, out: Path) -> float:
    """How many times N_feat's feature std grows in ``cfg.iterations`` iterations of the per-frame detector, N_feat
    trained from the shipped segmenter's with frozen BatchNorm, on two small synthetic frames."""
    model = build_video_model(DetModelConfig(features_init="seg-dff-r18-synth", norm="frozen"), 8)
    clips = SyntheticDetectionClips(SynthConfig(64, 128, 8), 2, ReferenceSampling(0), 0, "train", 4)
    samples = [clips[i] for i in range(2)]
    images = collate_clips(samples)["current"]  # (2, 3, 64, 128)
    before = feature_std(model, images)
    task = TrainTask("growth", model, _Repeat(samples, 2 * cfg.iterations), det_loss,
                     evaluate=lambda m: {"feat_std": feature_std(m, images)}, save_weights=_save, load_weights=_load,
                     backbone=model.feature_net, collate=collate_clips)
    return train(task, cfg, out, eval_every=cfg.iterations, progress=False).last["feat_std"] / before


def test_sgd_keeps_the_feature_scale_that_adamw_blows_up(tmp_path):
    """What keeps N_feat's features at their scale when it trains: SGD. Adam's steps are about lr per weight
    whatever the gradient, so every conv of the pre-trained N_feat moves by a fixed amount each iteration and, with
    no BatchNorm renormalising (frozen statistics, the papers' recipe), the change compounds layer by layer (150
    iterations at 3e-4 on the synthetic detection data: std 5.3 -> 36000). SGD's steps follow the gradient,
    which is small for a pre-trained backbone (same run with SGD at 0.01: 5.3 -> 3.8)."""
    common = dict(batch_size=2, iterations=10, warmup=0, workers=0)
    sgd = _feature_growth(OptimConfig(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, **common),
                          tmp_path / "sgd")
    adamw = _feature_growth(OptimConfig(optimizer="adamw", lr=3e-4, weight_decay=1e-4, **common), tmp_path / "adamw")
    assert 0.8 < sgd < 1.3  # measured 1.14
    assert adamw > 2.0  # measured 2.69, and growing faster with every iteration (10.7 after 16)


def test_bf16_autocast_trains_with_a_finite_loss_and_fp32_stays_the_default(tmp_path, monkeypatch, caplog):
    assert OptimConfig().precision == "fp32" and OptimConfig().optimizer == "adamw"
    seen: list[torch.dtype] = []

    def loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        seen.append(model.backbone(batch[0]).dtype)
        return mse_loss(model, batch)

    cfg = replace(SGD, iterations=1, precision="bf16")
    result = train(_task(TinyNet(), loss), cfg, tmp_path / "bf16", eval_every=1, progress=False)
    native = precision.bf16_supported(torch.device("cpu"))
    assert seen[-1] == (torch.bfloat16 if native else torch.float32)
    assert result.history[-1]["loss"] is not None and torch.isfinite(torch.tensor(result.history[-1]["loss"]))
    assert all(p.dtype == torch.float32 for p in result.model.parameters())  # the weights stay float32
    train(_task(TinyNet(), loss), replace(cfg, precision="fp32"), tmp_path / "fp32", 1,
          progress=False)
    assert seen[-1] == torch.float32
    monkeypatch.setattr(precision, "bf16_supported", lambda device: False)  # a CPU without native bfloat16
    with caplog.at_level(logging.WARNING, logger="featflow.modeling.precision"):
        train(_task(TinyNet(), loss), cfg, tmp_path / "fallback", eval_every=1, progress=False)
    assert seen[-1] == torch.float32 and "training in fp32" in caplog.text
    with pytest.raises(FeatflowError, match="fp16 training would need loss scaling"):
        replace(SGD, precision="fp16")


def test_detector_trains_under_bf16_with_its_heads_in_fp32():
    torch.manual_seed(0)
    model = VideoDetector(3, "resnet18", 16, rpn=RPNConfig(anchor_sizes=(16, 32, 64))).train()
    targets = [{"boxes": torch.tensor([[10.0, 8, 40, 50]]), "labels": torch.tensor([2])}]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(torch.rand(1, 3, 64, 96) * 255, targets=targets)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.feature_net.conv1.weight.grad is not None


@pytest.mark.parametrize("section,values,key", [
    ("train", {"optimizer": "adam"}, "optimizer"),
    ("train", {"precision": "fp16"}, "precision"),
    ("train", {"momentum": 1.5}, "momentum"),
    ("train", {"backbone_lr": -1.0}, "backbone_lr"),
    ("train", {"backbone_until": 0.0}, "backbone_until"),
    ("train", {"backbone_until": 1.5}, "backbone_until"),
    ("model", {"norm": "group"}, "norm"),
])
def test_bad_optimiser_precision_and_norm_names_raise_naming_the_key(section, values, key):
    with pytest.raises(ValueError, match=rf"config\.{section}: {key}: "):
        from_dict(DetTrainConfig, {section: values})
    with pytest.raises(ValueError, match="norm: unknown normalisation 'group'"):
        SegModelConfig(norm="group")


def test_checkpoints_move_between_batch_and_frozen_norm(tmp_path):
    torch.manual_seed(1)
    seg = VideoSegmenter(5, "resnet18", channels=16)  # BatchNorm, as the shipped segmenter
    seg.feature_net.bn1.running_var.fill_(4.0)
    save_segmenter(tmp_path / "seg.safetensors", seg, [f"c{k}" for k in range(5)])
    det = build_video_model(DetModelConfig(channels=16, norm="frozen",
                                           features_init=str(tmp_path / "seg.safetensors")), 3)
    assert det.norm == "frozen" and torch.equal(det.feature_net.bn1.running_var, torch.full((64,), 4.0))
    save_detector(tmp_path / "frozen.safetensors", det, ["a", "b", "c"])
    again, meta = load_detector(tmp_path / "frozen.safetensors")
    assert meta["norm"] == "frozen" and again.norm == "frozen"  # rebuilt with the norm it was saved with
    as_batch, _ = load_detector(tmp_path / "frozen.safetensors", norm="batch")  # no num_batches_tracked: fine
    assert isinstance(as_batch.feature_net.bn1, nn.BatchNorm2d)
    assert torch.equal(as_batch.feature_net.bn1.running_var, det.feature_net.bn1.running_var)
    batch_det = build_video_model(DetModelConfig(channels=16, features_init=str(tmp_path / "frozen.safetensors")), 3)
    assert batch_det.norm == "batch"  # a frozen N_feat's weights into a BatchNorm detector
    assert torch.equal(batch_det.feature_net.bn1.running_var, det.feature_net.bn1.running_var)
    dff = build_video_model(DetModelConfig(channels=16, flow_net="flownet_inception", norm="frozen",
                                        init=str(tmp_path / "frozen.safetensors")), 3)
    assert dff.norm == "frozen" and all(p.requires_grad for p in dff.flow_net.scale_conv.parameters())


def test_features_init_names_a_shipped_model():
    det = build_video_model(DetModelConfig(norm="frozen", features_init="seg-dff-r18-synth"), 8)
    assert det.norm == "frozen" and det.feature_net.feat_conv.weight.dtype == torch.float32
    assert det.feature_net.feat_conv.weight.abs().sum() > 0 and det.feature_net.bn1.running_var.std() > 0
    with pytest.raises(ValueError, match="model.features_init: 'seg-dff' is neither a shipped model"):
        build_video_model(DetModelConfig(features_init="seg-dff"), 8)


def test_feature_scale_reports_n_feats_std_and_dffs_scale_field():
    torch.manual_seed(0)
    model = VideoDetector(3, "resnet18", 16, "flownet_inception", rpn=RPNConfig(anchor_sizes=(16, 32, 64))).eval()
    current, key = torch.rand(2, 3, 64, 96) * 255, torch.rand(2, 3, 64, 96) * 255
    with torch.no_grad(), FeatureScale(model) as scale:
        model.features(current, key)
        key_features = model.key_features(key)
    metrics = scale.metrics()
    assert metrics["feat_std"] == pytest.approx(key_features.double().std(unbiased=False).item(), rel=1e-6)
    assert metrics["scale_mean"] == 1.0  # the scale field starts at exactly 1
    with torch.no_grad():
        model.features(current, key)
    assert scale.metrics() == metrics  # the hooks are gone after the block


@pytest.mark.slow
def test_detection_training_records_the_feature_scale(tmp_path):
    from featflow.engine.det_training import train_detection

    cfg = from_dict(DetTrainConfig, {
        "model": {"channels": 16, "anchor_sizes": [16, 32, 64], "norm": "frozen"},
        "data": {"size": [64, 96], "frames_per_video": 2},
        "train": {"batch_size": 2, "iterations": 2, "lr": 0.01, "warmup": 1, "workers": 0, "optimizer": "sgd",
                  "backbone_lr": 0.1},
        "eval": {"samples": 2, "every": 1}})
    result = train_detection(cfg, out=tmp_path / "det", progress=False)
    assert [h["iteration"] for h in result.history] == [1, 2]
    assert all(h["feat_std"] > 0 and "scale_mean" not in h for h in result.history)  # per-frame: no scale field
    assert read_weights(tmp_path / "det" / "model.safetensors")[1]["norm"] == "frozen"


def test_every_packaged_det_config_loads_and_the_geometry_is_checked():
    from importlib import resources

    from featflow.engine.config import load_config
    from featflow.engine.det_training import DetTrainConfig
    from featflow.engine.trainer import DataConfig

    folder = resources.files("featflow") / "configs" / "det"
    names = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
    assert {"vid_frame_r18", "vid_fgfa_r18_inception", "vid_dff_r18_inception", "vid_frame_r18_long"} <= set(names)
    for name in names:
        config = load_config(DetTrainConfig, name, kind="det")
        if name.startswith("vid_"):  # the VID-geometry benchmark, trained as the papers do
            assert (config.data.geometry, config.data.degradations) == ("vid", "video")
            assert (config.train.optimizer, config.model.norm, config.model.freeze_features) == ("sgd", "frozen", False)
            assert not config.model.freeze_scale
    with pytest.raises(ValueError, match="data.geometry"):
        DetTrainConfig(data=DataConfig(geometry="cityscapes"))


def test_a_finite_but_exploding_loss_stops_training_as_diverged(tmp_path):
    """A loss can explode without ever being inf (N_feat's features grew 1e10-fold at too high a learning rate):
    training stops with an error naming the iteration instead of running on for the rest of its budget."""
    calls = []

    def exploding(model: nn.Module, batch) -> Tensor:
        calls.append(1)
        # 1.5, 2.25, ...: finite, the smoothed value 100x the first soon
        return mse_loss(model, batch) * 0 + 1.5 ** len(calls)

    cfg = replace(SGD, iterations=200)
    with pytest.raises(FloatingPointError, match="diverged at iteration"):
        train(_task(TinyNet(), loss=exploding), cfg, tmp_path / "run", eval_every=1000, progress=False)
    assert len(calls) < 60
    # a loss that only falls trains to the end
    result = train(_task(TinyNet()), replace(SGD, iterations=12), tmp_path / "ok", eval_every=6, progress=False)
    assert result.iterations == 12


def test_both_tasks_share_the_data_and_eval_configs_each_with_its_own_defaults():
    from featflow.engine.config import from_dict
    from featflow.engine.det_training import DetTrainConfig
    from featflow.engine.seg_training import SegTrainConfig
    from featflow.engine.trainer import DataConfig, EvalConfig

    seg = from_dict(SegTrainConfig, {"eval": {"every": 10}, "data": {"geometry": "vid"}})
    assert isinstance(seg.data, DataConfig) and isinstance(seg.eval, EvalConfig)
    assert (seg.eval.samples, seg.data.size, seg.data.max_offset, seg.data.geometry) == (96, (128, 256), 4, "vid")
    det = from_dict(DetTrainConfig, {"eval": {"every": 10}})
    assert (det.eval.samples, det.data.size, det.data.max_offset) == (64, (192, 384), 9)
    with pytest.raises(ValueError, match="data.geometry"):
        from_dict(SegTrainConfig, {"data": {"geometry": "cityscapes"}})
