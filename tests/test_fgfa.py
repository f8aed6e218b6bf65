"""featflow.methods.fgfa: the softmax temperature of the aggregation weights and the aggregation builder."""

import math

import pytest
import torch

from featflow.methods.fgfa import TEMPERATURE_RATE, FlowGuidedAggregation, aggregation_weights, build_aggregation


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
