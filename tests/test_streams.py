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
from featflow.methods.fgfa import frame_features
from featflow.methods.schedulers import FixedInterval
from featflow.methods.segmentation import VideoSegmenter
from featflow.methods.streams import (
    AggregatedFeatures,
    KeyFrameFeatures,
    StreamItem,
    StreamOptions,
    build_stream,
    run_stream,
    strategy,
    supported,
)
from featflow.modeling.rpn import RPNConfig
from small_detector import small_detector

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


class _CountingZeroFlow:
    """A flow source with zero flow that records each (current, reference) call."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, current, key):
        self.calls += 1
        n, _, h, w = current.shape
        return torch.zeros(n, 2, -(-h // 16), -(-w // 16)), None


def test_fgfa_stream_offline_online_padding_and_bounded_memory():
    model = small_detector(flow_net="flownet_inception", aggregation="adaptive").eval()
    frames = [torch.rand(1, 3, 32, 48) * 255 for _ in range(7)]
    source = _CountingZeroFlow()
    stream = AggregatedFeatures(model, window=2, source=source)
    out = []
    for t, frame in enumerate(frames):
        ready = stream.push(frame)
        assert [item.index for item in ready] == ([t - 2] if t >= 2 else [])  # offline: K = 2 frames late
        assert len(stream.buffer) <= 5
        out += ready
    out += stream.finish()
    assert [item.index for item in out] == list(range(7))
    # F runs once per distinct (current, reference) pair: frame 0 sees refs {1, 2} (the padding repeats frame 0),
    # frame 1 sees {0, 2, 3}, frames 2..4 four each, frame 5 {3, 4, 6}, frame 6 {4, 5}
    assert source.calls == 2 + 3 + 4 * 3 + 3 + 2
    # with zero flow, frame 0's window is frames 0, 0, 0, 1, 2 (padding by repetition): the weights follow
    feats = [frame_features(model, f) for f in frames[:3]]
    expected = model.aggregator.aggregate(feats[0][1], [feats[0][0]] * 3 + [feats[1][0], feats[2][0]],
                                          [feats[0][1]] * 3 + [feats[1][1], feats[2][1]])
    assert torch.allclose(out[0].features, expected, atol=1e-5)
    online = AggregatedFeatures(model, window=2, online=True, source=_CountingZeroFlow())
    assert [[item.index for item in online.push(f)] for f in frames[:3]] == [[0], [1], [2]]  # no delay
    assert online.finish() == []


def test_dff_feature_stream_key_frames():
    model = small_detector(flow_net="flownet_inception").eval()
    from featflow.methods.schedulers import FixedInterval

    stream = KeyFrameFeatures(model, propagate=True, scheduler=FixedInterval(3))
    keys = [stream.step(torch.rand(1, 3, 32, 48) * 255)[1] for _ in range(7)]
    assert keys == [True, False, False, True, False, False, True]
    with pytest.raises(ValueError, match="flow network"):
        KeyFrameFeatures(small_detector(), propagate=True)


def test_streams_prepare_each_frames_flow_input_once(monkeypatch):
    import featflow.methods.dff as dff
    from featflow.methods.schedulers import FixedInterval

    prepared = []
    real = dff.flow_input
    monkeypatch.setattr(dff, "flow_input", lambda images: prepared.append(images) or real(images))
    model = small_detector(flow_net="flownet_inception", aggregation="adaptive").eval()
    frames = [torch.rand(1, 3, 32, 48) * 255 for _ in range(7)]
    stream = AggregatedFeatures(model, window=2)
    out = [o for f in frames for o in stream.push(f)] + stream.finish()
    assert len(out) == 7 and len(prepared) == 7  # once per frame, though each frame is in up to 4 pairs
    assert all(any(p is f for p in prepared) for f in frames)
    prepared.clear()
    keyed = KeyFrameFeatures(model, propagate=True, scheduler=FixedInterval(3))
    for f in frames:
        keyed.step(f)
    assert len(prepared) == 6  # the 4 non-key frames and their key frames 0 and 3, once each (8 without the cache)
    # the cached input is the one F would have computed: the stream's features equal the model's own path
    keyed = KeyFrameFeatures(model, propagate=True, scheduler=FixedInterval(3))
    streamed = [keyed.step(f)[0] for f in frames[:3]]
    torch.testing.assert_close(streamed[2], model.features(frames[2], frames[0]), atol=1e-5, rtol=1e-5)


def test_a_compiled_model_streams_what_the_eager_one_does():
    torch.manual_seed(0)
    eager = small_detector(flow_net="flownet_inception", aggregation="adaptive")
    compiled = small_detector(flow_net="flownet_inception", aggregation="adaptive")
    compiled.load_state_dict(eager.state_dict())
    eager.for_inference(), compiled.for_inference(compile=True)
    assert list(compiled.state_dict()) == list(eager.state_dict())  # compiled in place: checkpoints unchanged
    frames = [torch.rand(1, 3, 32, 48) * 255 for _ in range(4)]
    outputs = []
    for model in (eager, compiled):
        stream = AggregatedFeatures(model, window=1)
        outputs.append([o.features for f in frames for o in stream.push(f)] + [o.features for o in stream.finish()])
    for x, y in zip(*outputs, strict=True):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", ["dff", "sff-fast"])
def test_offline_dff_batches_a_key_intervals_flow_and_gives_the_same_features(method):
    """flow_batch b: propagated frames wait for b of them (or the next key frame, or the end), F runs on them in
    one call, and every frame's features are those of the frame-by-frame stream, in frame order."""
    model = _models()["seg"]
    frames = _frames(9)
    images = [torch.from_numpy(f).permute(2, 0, 1)[None].float() for f in frames]
    reference = build_stream(method, model, StreamOptions(FixedInterval(4)))
    expected = [reference.push(image)[0] for image in images]
    batched = build_stream(method, model, StreamOptions(FixedInterval(4), flow_batch=2))
    given = [[item.index for item in batched.push(image)] for image in images]
    # keys 0, 4, 8 at once; frames 1-2 and 5-6 in pairs, 3 and 7 when the next key frame comes
    assert given == [[0], [], [1, 2], [], [3, 4], [], [5, 6], [], [7, 8]]
    batched.reset()
    items = [item for image in images for item in batched.push(image)] + batched.finish()
    assert [i.index for i in items] == list(range(9))
    assert [i.is_key for i in items] == [i.is_key for i in expected]
    for got, want in zip(items, expected):
        torch.testing.assert_close(got.features, want.features, rtol=1e-4, atol=1e-4)
    tail = build_stream(method, model, StreamOptions(FixedInterval(4), flow_batch=3))
    assert [len(tail.push(image)) for image in images[:3]] == [1, 0, 0]
    assert [i.index for i in tail.finish()] == [1, 2]  # the end gives out the frames still waiting


def test_offline_dff_calls_the_flow_once_per_batch():
    model = _models()["det"]
    flow = _CountingZeroFlow()
    options = StreamOptions(FixedInterval(5), flow_batch=4, source=flow)
    out = list(run_stream(model, _frames(10), "dff", options))
    assert [item.index for item, _, _ in out] == list(range(10))
    assert flow.calls == 2  # frames 1-4 and 6-9, one call each
    with pytest.raises(FeatflowError, match="flow_batch must be at least 1"):
        StreamOptions(flow_batch=0)
