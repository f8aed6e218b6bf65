"""featflow.methods.fgfa: the softmax temperature of the aggregation weights and the aggregation builder."""

import math

import pytest
import torch

from featflow.methods.fgfa import (
    TEMPERATURE_RATE,
    FlowGuidedAggregation,
    aggregated_features,
    aggregation_weights,
    build_aggregation,
    cosine_similarity,
)
from featflow.methods.streams import AggregatedFeatures
from small_detector import small_detector


def test_temperature_sharpens_the_weights_and_one_is_the_papers_softmax():
    cos = torch.tensor([1.0, 0.9, 0.9]).view(1, 3, 1, 1, 1)
    assert torch.allclose(aggregation_weights(cos), cos.softmax(1))
    w1, w10 = aggregation_weights(cos, 1.0), aggregation_weights(cos, 10.0)
    assert w10[0, 0] > w1[0, 0]
    # the bound that motivates it: with T = 1 no frame of 21 can weigh more than e / (e + 20 / e)
    worst = torch.tensor([1.0] + [-1.0] * 20).view(1, 21, 1, 1, 1)
    assert aggregation_weights(worst)[0, 0].item() == pytest.approx(math.e / (math.e + 20 / math.e), rel=1e-5)
    assert aggregation_weights(worst, 5.0)[0, 0].item() > 0.99


def test_learned_temperature_starts_at_the_paper_and_is_trained():
    agg = build_aggregation("adaptive-temperature", 8)
    assert isinstance(agg, FlowGuidedAggregation) and agg.adaptive
    assert agg.temperature.item() == pytest.approx(1.0)
    torch.manual_seed(0)
    a, b = torch.randn(1, 8, 3, 3), torch.randn(1, 8, 3, 3)
    e = agg.embed(a)
    out = agg([a, b], [agg.similarity(e, e), agg.similarity(e, agg.embed(b))])
    out.square().mean().backward()
    assert agg.log_temperature.grad is not None and agg.log_temperature.grad.abs() > 0
    with torch.no_grad():
        agg.log_temperature.fill_(math.log(4.0) / TEMPERATURE_RATE)
    assert agg.temperature.item() == pytest.approx(4.0)
    sims = [agg.similarity(e, e), agg.similarity(e, agg.embed(b))]
    own = aggregation_weights(torch.stack(sims, 1), 4.0).unbind(1)
    assert torch.allclose(agg([a, b], sims), own[0] * a + own[1] * b, atol=1e-6)


def test_the_paper_aggregations_have_no_temperature_and_names_are_checked():
    assert build_aggregation(None, 8) is None
    assert build_aggregation("adaptive", 8).log_temperature is None
    mean = build_aggregation("mean", 8)
    assert mean.embedding is None and mean.temperature == 1.0
    with pytest.raises(ValueError, match="unknown aggregation"):
        build_aggregation("max", 8)
    with pytest.raises(ValueError, match="needs adaptive weights"):
        FlowGuidedAggregation(8, adaptive=False, learned_temperature=True)


def test_a_learned_temperature_detector_saves_and_loads(tmp_path):
    from featflow.engine.checkpoint import load_detector, save_detector
    from featflow.methods.detection import VideoDetector
    from featflow.modeling.rpn import RPNConfig

    torch.manual_seed(0)
    model = VideoDetector(3, "resnet18", 16, "flownet_inception", "adaptive-temperature",
                          rpn=RPNConfig(anchor_sizes=(16, 32, 64)))
    with torch.no_grad():
        model.aggregator.log_temperature.fill_(0.2)
    save_detector(tmp_path / "m.safetensors", model, ["a", "b", "c"])
    loaded = load_detector(tmp_path / "m.safetensors")[0]
    assert loaded.aggregation == "adaptive-temperature"
    assert loaded.aggregator.temperature.item() == pytest.approx(math.exp(2.0), rel=1e-5)


def test_fgfa_weights_and_identical_frames():
    current = torch.randn(1, 6, 2, 3)
    refs = [current, -current, 2 * current]  # the same direction twice and its opposite once
    cos = torch.stack([cosine_similarity(current, r) for r in refs], 1)
    assert torch.allclose(cos, torch.tensor([1.0, -1.0, 1.0]).view(1, 3, 1, 1, 1).expand(1, 3, 1, 2, 3), atol=1e-6)
    other = torch.randn_like(current)
    assert torch.allclose(cosine_similarity(current, other)[:, 0],
                          torch.nn.functional.cosine_similarity(current, other, dim=1), atol=1e-6)
    w = aggregation_weights(cos)
    assert w.shape == (1, 3, 1, 2, 3)
    assert torch.allclose(w.sum(1), torch.ones(1, 1, 2, 3))
    assert torch.allclose(w[:, 0], w[:, 2]) and (w[:, 0] > w[:, 1]).all()  # cos 1 beats cos -1
    model = small_detector(flow_net="flownet_inception", aggregation="adaptive").eval()
    features = torch.randn(1, 16, 4, 6)
    # every frame the same: softmax weights sum to one, so the aggregate is the frame's features
    embedding = model.aggregator.embedding(features)
    out = model.aggregator.aggregate(embedding, [features] * 3, [embedding] * 3)
    assert torch.allclose(out, features, atol=1e-5)
    other = torch.randn(1, 16, 4, 6)  # two different frames: the softmax of their cosines weighs them
    e_other = model.aggregator.embedding(other)
    w_own, w_other = aggregation_weights(torch.stack([cosine_similarity(embedding, embedding),
                                                      cosine_similarity(embedding, e_other)], 1)).unbind(1)
    out = model.aggregator.aggregate(embedding, [features, other], [embedding, e_other])
    assert torch.allclose(out, w_own * features + w_other * other, atol=1e-5)


def test_aggregation_ablations_without_flow_and_without_adaptive_weights():
    frames = [torch.rand(2, 3, 32, 48) * 255 for _ in range(3)]
    mean = small_detector(aggregation="mean").eval()  # no flow net: features are aggregated unwarped
    assert mean.aggregator.embedding is None and mean.flow_net is None
    out = aggregated_features(mean, frames[0], frames[1:])
    expected = (mean.key_features(frames[1]) + mean.key_features(frames[2])) / 2
    assert torch.allclose(out, expected, atol=1e-4)
    adaptive = small_detector(aggregation="adaptive").eval()
    stream = AggregatedFeatures(adaptive, window=1, online=True)
    assert [item.index for item in stream.push(frames[0][:1])] == [0]
    with pytest.raises(ValueError, match="unknown aggregation"):
        small_detector(aggregation="max")


@pytest.mark.parametrize("name", ["adaptive", "mean"])
def test_the_in_place_sum_is_the_weighted_sum_and_trains(name):
    torch.manual_seed(0)
    agg = build_aggregation(name, 8)
    features = [torch.randn(2, 8, 5, 6, requires_grad=True) for _ in range(3)]
    sims = [torch.rand(2, 1, 5, 6) * 2 - 1 for _ in range(3)] if name == "adaptive" else [None] * 3
    weights = aggregation_weights(torch.stack(sims, 1)).unbind(1) if name == "adaptive" else [1 / 3] * 3
    out = agg(features, sims)
    torch.testing.assert_close(out, sum(f * w for f, w in zip(features, weights)))
    out.sum().backward()  # the accumulation in place keeps every frame's gradient
    for f, w in zip(features, weights):
        expected = w if name == "adaptive" else torch.full((2, 1, 5, 6), w)
        torch.testing.assert_close(f.grad, expected.expand(2, 8, 5, 6))


def test_cosine_similarity_is_float32_under_bfloat16_autocast():
    """The weights' logits are computed in float32 whatever the autocast: bf16 inputs give the float32 cosine of
    their values, not a bf16-rounded one."""
    from featflow.methods.fgfa import cosine_similarity

    torch.manual_seed(0)
    a, b = (torch.randn(2, 64, 5, 7).bfloat16().contiguous(memory_format=torch.channels_last) for _ in range(2))
    with torch.autocast("cpu", torch.bfloat16):
        got = cosine_similarity(a, b)
    assert got.dtype == torch.float32 and got.shape == (2, 1, 5, 7)
    want = torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=1).unsqueeze(1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("online", [False, True])
def test_the_stream_runs_a_frames_pairs_in_one_flow_call_with_the_pair_by_pair_result(online):
    """With the learned F the stream computes frame t's 2K flows (K online) in one batched call; a flow source
    that is not the stream's own (any callable) goes pair by pair. Both give the same aggregated features."""
    torch.manual_seed(0)
    model = small_detector(flow_net="flownet_inception", aggregation="adaptive").eval()
    frames = [torch.rand(1, 3, 32, 48) * 255 for _ in range(6)]
    batched = AggregatedFeatures(model, window=2, online=online)
    calls: list[int] = []
    forward = model.flow_net.forward

    def counted(*args, **kwargs):
        calls.append(len(args[0]))
        return forward(*args, **kwargs)

    model.flow_net.forward = counted
    fast = [item for frame in frames for item in batched.push(frame)] + batched.finish()
    model.flow_net.forward = forward
    pairwise = AggregatedFeatures(model, window=2, online=online,
                                  source=lambda current, key: model.learned_flow(current, key, with_scale=False))
    slow = [item for frame in frames for item in pairwise.push(frame)] + pairwise.finish()
    assert [a.index for a in fast] == [b.index for b in slow] == list(range(6))
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a.features, b.features, rtol=1e-4, atol=1e-4)
    # one call per frame with all of its distinct neighbours (the ends repeat frames; online, frame 0 has none)
    assert calls == ([1, 2, 2, 2, 2] if online else [2, 3, 4, 4, 3, 2])


def test_quality_starts_as_the_temperature_model_and_can_prefer_a_dissimilar_frame(tmp_path):
    """adaptive-quality: softmax(T * cos + Q(e_j)). Q starts at zero (the temperature model's weights); once trained,
    a frame whose own embedding Q rates high can outweigh the current frame that the cosine alone favours."""
    from featflow.engine.checkpoint import load_detector, save_detector

    torch.manual_seed(0)
    agg = build_aggregation("adaptive-quality", 8)
    assert agg.log_temperature is not None and agg.quality is not None
    a, b = torch.randn(1, 8, 3, 3), torch.randn(1, 8, 3, 3)
    ea, eb = agg.embed(a), agg.embed(b)
    sims = [agg.similarity(ea, ea), agg.similarity(ea, eb)]
    assert sims[0].shape == (1, 2, 3, 3) and torch.all(sims[0][:, 1] == 0)  # cosine, then the zero quality
    plain = aggregation_weights(torch.stack([s[:, :1] for s in sims], 1)).unbind(1)
    torch.testing.assert_close(agg([a, b], sims), plain[0] * a + plain[1] * b)
    assert (plain[0] > plain[1]).all()  # the cosine favours the current frame
    agg([a, b], sims).square().mean().backward()
    assert agg.quality.weight.grad.abs().sum() > 0 and agg.log_temperature.grad is not None
    with torch.no_grad():  # Q rates b's embedding 5 higher than a's, everywhere
        direction = (eb - ea).mean((0, 2, 3))
        agg.quality.weight.copy_((direction / direction.square().sum()).view(1, -1, 1, 1) * 5.0)
        agg.quality.bias.zero_()
        sims = [agg.similarity(ea, ea), agg.similarity(ea, eb)]
        weights = agg.weights(sims)
    assert weights.shape == (1, 2, 1, 3, 3)
    assert weights[:, 1].mean() > weights[:, 0].mean()  # the higher-quality neighbour now weighs more
    torch.testing.assert_close(weights.sum(1), torch.ones(1, 1, 3, 3))
    # a detector with it saves and loads its quality head
    model = small_detector(flow_net="flownet_inception", aggregation="adaptive-quality")
    with torch.no_grad():
        model.aggregator.quality.bias.fill_(0.5)
    save_detector(tmp_path / "q.safetensors", model, ["a", "b", "c"])
    loaded = load_detector(tmp_path / "q.safetensors")[0]
    assert loaded.aggregation == "adaptive-quality" and loaded.aggregator.quality.bias.item() == 0.5


def test_train_with_current_aggregates_the_current_frame_as_the_test_window_does():
    """FGFA's training path aggregates the references only (the papers); with ``train_with_current`` the current
    frame joins them, as at test. The config refuses it without an aggregation."""
    from featflow.engine.models import DetModelConfig, build_video_model
    from featflow.errors import FeatflowError

    torch.manual_seed(0)
    current = torch.rand(1, 3, 32, 48) * 255
    refs = torch.stack([torch.rand(1, 3, 32, 48) * 255 for _ in range(2)], 1)  # (N, R, 3, H, W)
    same = torch.zeros(1, 2, dtype=torch.bool)
    cfg = DetModelConfig(channels=16, aggregation="adaptive", anchor_sizes=(16, 32, 64), train_with_current=True)
    model = build_video_model(cfg, 3).eval()
    assert model.train_with_current
    with torch.no_grad():
        with_current = model.clip_features(current, refs, same)
        torch.testing.assert_close(with_current, aggregated_features(model, current, list(refs.unbind(1)), True))
        model.train_with_current = False
        torch.testing.assert_close(model.clip_features(current, refs, same),
                                   aggregated_features(model, current, list(refs.unbind(1))))
        assert not torch.allclose(with_current, model.clip_features(current, refs, same))
    assert not build_video_model(DetModelConfig(channels=16, aggregation="adaptive", anchor_sizes=(16, 32, 64)),
                                 3).train_with_current
    with pytest.raises(FeatflowError, match="train_with_current needs an aggregation"):
        DetModelConfig(train_with_current=True)
