"""The one model builder of both tasks (``engine.models``): one config core, one way to start from a checkpoint."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from featflow.data.references import ReferenceSampling
from featflow.engine.checkpoint import load_model, save_detector, save_segmenter
from featflow.engine.config import from_dict, load_config
from featflow.engine.det_training import DetTrainConfig
from featflow.engine.models import DetModelConfig, ModelConfig, SegModelConfig, build_video_model
from featflow.engine.seg_training import SegTrainConfig
from featflow.errors import FeatflowError
from featflow.methods.detection import VideoDetector
from featflow.methods.segmentation import VideoSegmenter
from featflow.modeling.rpn import RPNConfig

FLOW = "flownet_inception"


def _names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_both_tasks_build_from_the_same_config_core(tmp_path):
    core = _names(ModelConfig)
    assert _names(SegModelConfig) == core
    assert _names(DetModelConfig) == [*core, "anchor_sizes"]  # detection adds only its own setting
    # the same model: section reads the same shared values in either task
    section = {"arch": "resnet18", "channels": 16, "flow_net": FLOW, "aggregation": "adaptive", "norm": "frozen",
               "freeze_flow": True, "freeze_scale": True}
    seg_cfg = from_dict(SegModelConfig, section)
    det_cfg = from_dict(DetModelConfig, {**section, "anchor_sizes": [16, 32]})
    assert {k: getattr(seg_cfg, k) for k in core} == {k: getattr(det_cfg, k) for k in core}
    seg, det = build_video_model(seg_cfg, 4), build_video_model(det_cfg, 3)
    assert isinstance(seg, VideoSegmenter) and isinstance(det, VideoDetector)
    for model in (seg, det):
        assert (model.arch, model.channels, model.flow_name, model.aggregation, model.norm) == (
            "resnet18", 16, FLOW, "adaptive", "frozen")
        assert not any(p.requires_grad for p in model.flow_net.parameters())
        assert model.flow_net.scale_conv.weight.abs().sum() == 0  # the shipped flow, scale field at 1
    assert det.anchor_sizes == (16, 32)
    # features_init works for a segmenter too: N_feat from a detector checkpoint
    save_detector(tmp_path / "det.safetensors", det, ["a", "b", "c"])
    from_det = build_video_model(SegModelConfig(channels=16, features_init=str(tmp_path / "det.safetensors")), 4)
    for name, value in det.feature_net.state_dict().items():
        torch.testing.assert_close(from_det.feature_net.state_dict()[name], value, msg=name)


def test_a_segmenter_with_aggregation_from_a_per_frame_checkpoint(tmp_path):
    torch.manual_seed(0)
    frame = VideoSegmenter(4, "resnet18", channels=16)
    save_segmenter(tmp_path / "frame.safetensors", frame, ["bg", "a", "b", "c"])
    cfg = load_config(SegTrainConfig, _write(tmp_path / "fgfa.yaml", {"model": {
        "channels": 16, "flow_net": FLOW, "aggregation": "adaptive", "init": str(tmp_path / "frame.safetensors"),
        "freeze_features": True}}), kind="seg")
    model = build_video_model(cfg.model, 4)
    assert model.aggregator is not None and model.aggregation == "adaptive" and model.flow_name == FLOW
    torch.testing.assert_close(model.feature_net.conv1.weight, frame.feature_net.conv1.weight)
    assert not any(p.requires_grad for p in model.feature_net.parameters())
    assert all(p.requires_grad for p in model.aggregator.parameters())
    # it saves and loads back as an FGFA segmenter, and is its own init
    save_segmenter(tmp_path / "fgfa.safetensors", model, ["bg", "a", "b", "c"])
    loaded, meta = load_model(tmp_path / "fgfa.safetensors")
    assert isinstance(loaded, VideoSegmenter) and meta["aggregation"] == "adaptive"
    again = build_video_model(SegModelConfig(channels=16, flow_net=FLOW, aggregation="adaptive",
                                       init=str(tmp_path / "fgfa.safetensors")), 4)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], value, msg=name)
    # it trains on clips of two neighbours on either side (tests/test_segmentation.py trains one)
    assert cfg.model.references(4) == ReferenceSampling(2, -4, 4)
    assert SegModelConfig(flow_net=FLOW).references(4) == ReferenceSampling(1, -4, 0)


def test_an_init_that_does_not_fit_names_the_keys_in_one_line(tmp_path):
    save_segmenter(tmp_path / "seg.safetensors", VideoSegmenter(4, "resnet18", channels=16), ["c"] * 4)
    save_detector(tmp_path / "det.safetensors", VideoDetector(3, "resnet18", 16, rpn=RPNConfig(anchor_sizes=(16, 32))),
                  ["a", "b", "c"])
    cases = [
        (SegModelConfig(arch="resnet34", channels=16, init=str(tmp_path / "seg.safetensors")), 4, ["arch"]),
        (SegModelConfig(channels=16, init=str(tmp_path / "seg.safetensors")), 5, ["classes"]),
        (DetModelConfig(channels=32, anchor_sizes=(32, 64), init=str(tmp_path / "det.safetensors")), 3,
         ["channels", "anchor_sizes"]),
    ]
    for cfg, classes, keys in cases:
        with pytest.raises(FeatflowError) as err:
            build_video_model(cfg, classes)
        message = str(err.value)
        assert message.startswith(f"model.init: {cfg.init} does not fit the config") and "\n" not in message
        assert all(f"{key} " in message for key in keys), message
    assert "arch resnet18 (the config: resnet34)" in _error(cases[0][0], 4)
    # a checkpoint of the other task is not an init
    with pytest.raises(FeatflowError, match="does not hold featflow detector weights"):
        build_video_model(DetModelConfig(channels=16, init=str(tmp_path / "seg.safetensors")), 4)


def test_bad_model_keys_are_one_line_errors_naming_the_key(tmp_path):
    for cls, kind in ((SegTrainConfig, "seg"), (DetTrainConfig, "det")):
        for model, key in (({"aggregaton": "adaptive"}, "aggregaton"), ({"aggregation": "sum"}, "aggregation"),
                           ({"freeze_scale": True}, "freeze_scale")):
            path = _write(tmp_path / f"{kind}.yaml", {"model": model})
            with pytest.raises(FeatflowError, match=rf"^{path}\.model.*{key}") as err:
                load_config(cls, path, kind=kind)
            assert "\n" not in str(err.value)
    with pytest.raises(FeatflowError, match="unknown key 'anchor_sizes'"):  # detection's own setting
        load_config(SegTrainConfig, _write(tmp_path / "anchors.yaml", {"model": {"anchor_sizes": [16]}}), kind="seg")


def _error(cfg: ModelConfig, classes: int) -> str:
    with pytest.raises(FeatflowError) as err:
        build_video_model(cfg, classes)
    return str(err.value)


def _write(path, data: dict):
    path.write_text(yaml.safe_dump(data))
    return path


def test_features_init_takes_n_feat_from_a_segmenter(tmp_path):
    from featflow.engine.checkpoint import save_segmenter
    from featflow.engine.det_training import DetModelConfig
    from featflow.methods.segmentation import VideoSegmenter

    torch.manual_seed(1)
    seg = VideoSegmenter(5, "resnet18", channels=16)
    save_segmenter(tmp_path / "seg.safetensors", seg, [f"c{k}" for k in range(5)])
    det = build_video_model(DetModelConfig(channels=16, features_init=str(tmp_path / "seg.safetensors")), 3)
    for name, value in seg.feature_net.state_dict().items():
        assert torch.equal(det.feature_net.state_dict()[name], value), name
    with pytest.raises(ValueError, match="channels"):
        build_video_model(DetModelConfig(channels=32, features_init=str(tmp_path / "seg.safetensors")), 3)
    with pytest.raises(ValueError, match="alternatives"):
        DetModelConfig(init="a", features_init="b")
    dff = build_video_model(DetModelConfig(channels=16, flow_net="flownet_inception", freeze_scale=True,
                                        features_init=str(tmp_path / "seg.safetensors"), freeze_features=True), 3)
    assert not any(p.requires_grad for p in dff.flow_net.scale_conv.parameters())  # the scale field stays at 1
    assert all(p.requires_grad for n, p in dff.flow_net.named_parameters() if not n.startswith("scale_conv"))
    assert not any(p.requires_grad for p in dff.feature_net.parameters())


def test_freeze_stem_fixes_conv1_and_res2_and_their_statistics():
    """The papers' ResNets keep conv1 and res2 at their ImageNet weights: no gradient reaches them and a training
    step leaves their BatchNorm statistics as loaded, while res3 onwards trains."""
    model = build_video_model(SegModelConfig(channels=16, freeze_stem=True), 3)
    net = model.feature_net
    stem = [p for m in net.stem() for p in m.parameters()]
    assert stem and not any(p.requires_grad for p in stem)
    assert all(p.requires_grad for p in net.res3.parameters())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model.train()
    assert not net.bn1.training and not net.res2.training and net.res3.training
    model(torch.rand(2, 3, 64, 64) * 255).sum().backward()
    after = net.state_dict()
    for name in before:
        if name.startswith(("bn1.", "res2.")):
            assert torch.equal(after[name], before[name]), name
    assert not torch.equal(after["res3.0.bn1.running_mean"], before["res3.0.bn1.running_mean"])
    assert net.res3[0].conv1.weight.grad is not None and net.conv1.weight.grad is None
    # off by default
    assert all(p.requires_grad for p in build_video_model(SegModelConfig(channels=16), 3).feature_net.parameters())


def test_a_checkpoint_refuses_a_flow_net_without_a_registry_name(tmp_path):
    from featflow.methods.segmentation import VideoSegmenter
    from featflow.modeling.flow_net import FlowNetInception

    model = VideoSegmenter(3, "resnet18", 16)
    model.flow_net = FlowNetInception(scale_channels=16)  # made by hand: no name, so a file could not rebuild it
    with pytest.raises(ValueError, match="flow network has no registry name"):
        save_segmenter(tmp_path / "m.safetensors", model, ["a", "b", "c"])
    assert not (tmp_path / "m.safetensors").exists()
    model.flow_net.name = "flownet_inception"
    save_segmenter(tmp_path / "m.safetensors", model, ["a", "b", "c"])
