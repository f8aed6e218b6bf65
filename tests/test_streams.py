"""One stream protocol for every method and task: each method is a ``FeatureStream`` named once in
``featflow.registry.STRATEGIES``; segmenters and detectors run every method through the same code, and a new
method is one class and one registry line."""

import numpy as np
import pytest
import torch

import featflow
from featflow import registry
from featflow.engine.checkpoint import save_detector, save_segmenter
from featflow.errors import FeatflowError
from featflow.methods.detection import VideoDetector
from featflow.methods.schedulers import FixedInterval
from featflow.methods.segmentation import VideoSegmenter
from featflow.methods.streams import (
    KeyFrameFeatures,
    StreamItem,
    StreamOptions,
    build_stream,
    run_stream,
    strategy,
    supported,
)
from featflow.modeling.rpn import RPNConfig

SIZE = (32, 48)


def _models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"seg": VideoSegmenter(4, "resnet18", 16, "flownet_inception", aggregation="adaptive").eval(),
            "det": VideoDetector(3, "resnet18", 16, "flownet_inception", "adaptive",
                                 rpn=RPNConfig(anchor_sizes=(16, 32))).eval()}


def _frames(n: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(n)]


def test_every_registered_method_names_a_stream_class():
    for method in registry.STRATEGIES:
        cls = strategy(method)
        assert hasattr(cls, "push") and hasattr(cls, "finish") and hasattr(cls, "unsupported")
    with pytest.raises(FeatflowError, match="unknown method 'magic'"):
        strategy("magic")


@pytest.mark.parametrize("task", ["seg", "det"])
def test_both_tasks_run_every_method_through_one_stream(task):
    model = _models()[task]
    assert supported(model) == registry.METHODS  # a flow net and an aggregator: everything
    options = StreamOptions(FixedInterval(3), window=1)
    for method in registry.METHODS:
        out = list(run_stream(model, _frames(), method, options))
        assert [item.index for item, _, _ in out] == list(range(5)), method  # in frame order, FGFA's delay included
        keys = [item.is_key for item, _, _ in out]
        expected = [True] * 5 if method in ("frame", "fgfa") else [True, False, False, True, False]
        assert keys == expected, method
        assert all(seconds >= 0 for _, _, seconds in out)
        output = out[0][1]
        if task == "seg":
            assert output.shape == SIZE and output.dtype == torch.uint8
        else:
            assert len(output.boxes) == len(output.scores) <= 300


def test_streams_tell_which_methods_a_model_cannot_run():
    per_frame = VideoDetector(3, "resnet18", 16, rpn=RPNConfig(anchor_sizes=(16, 32))).eval()
    assert supported(per_frame) == ("frame", "sff-slow", "sff-fast")
    with pytest.raises(FeatflowError, match="method 'dff' cannot run on this model: it has no flow network"):
        build_stream("dff", per_frame)
    with pytest.raises(FeatflowError, match="no aggregation network"):
        build_stream("fgfa", per_frame)


class EveryOtherFrame(KeyFrameFeatures):
    """A test method: DFF with a key frame every second frame, whatever the caller's schedule."""

    def __init__(self, model, options=StreamOptions()):
        super().__init__(model, True, FixedInterval(2), options.source)

    @staticmethod
    def unsupported(model):
        return None if model.flow_net is not None else "no flow network"


def test_a_new_method_is_one_class_and_one_registry_line(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.STRATEGIES, "every-other", f"{__name__}:EveryOtherFrame")  # the one line
    models = _models()
    save_segmenter(tmp_path / "seg.safetensors", models["seg"], [f"c{k}" for k in range(4)])
    save_detector(tmp_path / "det.safetensors", models["det"], [f"c{k}" for k in range(3)])
    for name in ("seg", "det"):
        model = featflow.load(tmp_path / f"{name}.safetensors")
        assert "every-other" in model.methods
        results = list(model.stream(_frames(), method="every-other"))
        assert [r.is_key for r in results] == [True, False, True, False, True]
        assert all((r.labels is not None) == (name == "seg") for r in results)


def test_fgfa_segments_and_sff_detects_through_the_api(tmp_path):
    models = _models()
    save_segmenter(tmp_path / "seg.safetensors", models["seg"], [f"c{k}" for k in range(4)])
    save_detector(tmp_path / "det.safetensors", models["det"], [f"c{k}" for k in range(3)])
    seg = featflow.load(tmp_path / "seg.safetensors")
    labelled = list(seg.stream(_frames(), method="fgfa", window=1))
    assert [r.index for r in labelled] == list(range(5)) and labelled[0].labels.shape == SIZE
    det = featflow.load(tmp_path / "det.safetensors")
    boxes = list(det.stream(_frames(), method="sff-fast", key_interval=2))
    assert [r.is_key for r in boxes] == [True, False, True, False, True]
    assert all(r.detections is not None for r in boxes)


def test_the_stream_item_is_what_push_gives_out():
    model = _models()["det"]
    stream = build_stream("dff", model, StreamOptions(FixedInterval(2)))
    image = torch.from_numpy(_frames(1)[0]).permute(2, 0, 1)[None].float()
    (item,) = stream.push(image)
    assert isinstance(item, StreamItem) and item.index == 0 and item.is_key
    assert item.features.shape == (1, 16, 2, 3) and stream.finish() == []
