import json

import numpy as np
import pytest
import torch
import yaml

from featflow.cli import main
from featflow.data.flow_pairs import FlyingChairsPairs, SyntheticFlowPairs
from featflow.data.synthetic import SynthConfig
from featflow.data.synthetic.export import export
from featflow.engine.checkpoint import load_flow_net, read_weights, save_flow_net
from featflow.engine.config import load_config
from featflow.engine.flow_inference import FlowNetEstimator, predict_flow, upsample_flow
from featflow.engine.flow_training import FlowTrainConfig, multiscale_epe, train_flow
from featflow.errors import FeatflowError
from featflow.modeling.flow_net import build_flow_net
from featflow.modeling.preprocess import flow_input

TINY = {
    "model": "flownet_inception",
    "data": {"size": [48, 64], "pairs_per_video": 2, "max_gap": 3},
    "train": {"batch_size": 2, "iterations": 4, "warmup": 2, "workers": 0},
    "eval": {"pairs": 2, "every": 2},
}


def _write_config(path, overrides=None):
    data = json.loads(json.dumps(TINY))
    for key, value in (overrides or {}).items():
        data[key] = value if not isinstance(value, dict) else {**data.get(key, {}), **value}
    path.write_text(yaml.safe_dump(data))
    return path


def test_flow_pairs_are_deterministic_and_consistent():
    config = SynthConfig(height=48, width=64)
    a = SyntheticFlowPairs(config, 6, seed=3, max_gap=4, pairs_per_video=2)
    b = SyntheticFlowPairs(config, 6, seed=3, max_gap=4, pairs_per_video=2)
    for i in (0, 3, 5):
        sa, sb = a[i], b[i]
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        current, key = a.frames(i)
        assert 1 <= abs(current - key) <= 4
    s = a[0]
    assert s["current"].shape == (3, 48, 64) and s["flow"].shape == (2, 48, 64) and s["valid"].dtype == torch.bool


def test_multiscale_loss_is_zero_for_perfect_predictions():
    net = build_flow_net("flownet_half", scale_channels=4)
    frames = flow_input(torch.rand(1, 3, 64, 96) * 255)
    out = net(frames, frames, pyramid=True)
    target = torch.zeros(1, 2, 64, 96)
    target[:, 0] = 3.0
    perfect = out._replace(flow=torch.full_like(out.flow, 3.0 / 16).index_fill(1, torch.tensor([1]), 0.0),
                           pyramid={s: torch.zeros_like(p).index_fill(1, torch.tensor([0]), 3.0)
                                    for s, p in out.pyramid.items()})
    assert multiscale_epe(perfect, target).item() == pytest.approx(0.0, abs=1e-5)
    assert multiscale_epe(out, target).item() > 1.0


def test_flow_net_learns_a_batch():
    torch.manual_seed(0)
    dataset = SyntheticFlowPairs(SynthConfig(height=48, width=64), 4, seed=1, max_gap=3)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(4)])
    net = build_flow_net("flownet_inception", scale_channels=4)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    losses = []
    for _ in range(60):
        loss = multiscale_epe(net(flow_input(batch["current"]), flow_input(batch["key"]), pyramid=True), batch["flow"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


@pytest.mark.slow
def test_train_resume_and_weights(tmp_path):
    config = load_config(FlowTrainConfig, _write_config(tmp_path / "tiny.yaml"), kind="flow")
    result = train_flow(config, out=tmp_path / "run", progress=False)
    assert result.iterations == 4 and [h["iteration"] for h in result.history] == [2, 4]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["iterations"] == 4 and np.isfinite(metrics["final"]["val_epe"])
    net, meta = load_flow_net(tmp_path / "run" / "model.safetensors", scale_channels=16)
    assert meta["featflow.model"] == "flownet_inception" and meta["iterations"] == "4"
    assert net.scale_conv.out_channels == 16
    # resume continues from iteration 4 up to the new total
    longer = load_config(FlowTrainConfig, _write_config(tmp_path / "longer.yaml", {"train": {"iterations": 6}}),
                         kind="flow")
    resumed = train_flow(longer, out=tmp_path / "run", resume=True, progress=False)
    assert resumed.iterations == 6 and [h["iteration"] for h in resumed.history] == [2, 4, 6]
    # weights and optimizer state from different checkpoints (an interrupted save) are refused
    save_flow_net(tmp_path / "run" / "model.safetensors", net, "flownet_inception", {"iterations": "3"})
    with pytest.raises(ValueError, match="interrupted"):
        train_flow(longer, out=tmp_path / "run", resume=True, progress=False)


@pytest.mark.slow
def test_train_on_a_flyingchairs_folder(tmp_path):
    export("flyingchairs", tmp_path / "chairs", SynthConfig(height=48, width=64, num_frames=5), videos=3,
           val_videos=1, progress=False)
    assert len(FlyingChairsPairs(tmp_path / "chairs", "train")) == 3
    config = load_config(FlowTrainConfig,
                         _write_config(tmp_path / "c.yaml", {"data": {"source": str(tmp_path / "chairs")}}),
                         kind="flow")
    assert train_flow(config, out=tmp_path / "run", progress=False).iterations == 4


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="unknown key 'lr_rate'"):
        load_config(FlowTrainConfig, _write_config(tmp_path / "a.yaml", {"train": {"lr_rate": 1}}), kind="flow")
    with pytest.raises(ValueError, match="batch_size"):
        load_config(FlowTrainConfig, _write_config(tmp_path / "b.yaml", {"train": {"batch_size": "eight"}}),
                    kind="flow")
    with pytest.raises(ValueError, match="unknown flow network"):
        load_config(FlowTrainConfig, _write_config(tmp_path / "c.yaml", {"model": "raft"}), kind="flow")
    (tmp_path / "d.yaml").write_text("model: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(FlowTrainConfig, tmp_path / "d.yaml", kind="flow")
    with pytest.raises(FileNotFoundError):
        load_config(FlowTrainConfig, tmp_path / "missing.yaml", kind="flow")


@pytest.mark.parametrize("name", ["flownet", "flownet_half", "flownet_inception"])
def test_packaged_configs_load(name):
    config = load_config(FlowTrainConfig, name, kind="flow")
    assert config.model == name


def test_weights_round_trip_and_bad_files(tmp_path):
    net = build_flow_net("flownet_half", scale_channels=8)
    save_flow_net(tmp_path / "w.safetensors", net, "flownet_half", {"note": "x"}, dtype=torch.float16)
    tensors, meta = read_weights(tmp_path / "w.safetensors")
    assert "scale_conv.weight" not in tensors and meta["note"] == "x"
    loaded, _ = load_flow_net(tmp_path / "w.safetensors", scale_channels=8)
    frames = torch.randn(1, 3, 32, 48)
    torch.testing.assert_close(loaded(frames, frames).flow, net.half().float()(frames, frames).flow,
                               atol=1e-3, rtol=1e-2)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a safetensors"):
        load_flow_net(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="flow-network"):
        load_flow_net(tmp_path / "other.safetensors")


def test_upsampled_flow_keeps_pixel_centres():
    coarse = torch.zeros(1, 2, 3, 4)
    coarse[:, 0] = torch.arange(4.0) * 8 + 3.5  # x coordinate of each stride-8 pixel centre
    up = upsample_flow(coarse, 8, (20, 30))
    assert up.shape == (1, 2, 20, 30)
    torch.testing.assert_close(up[0, 0, 5, 4:28], torch.arange(4.0, 28.0))  # linear inside the map


def test_estimator_shapes():
    estimator = FlowNetEstimator(build_flow_net("flownet_inception", scale_channels=4))
    image = np.zeros((37, 53, 3), np.uint8)
    assert estimator(image, image).shape == (37, 53, 2)
    net = build_flow_net("flownet_inception", scale_channels=4)
    assert predict_flow(net, torch.zeros(1, 3, 37, 53), torch.zeros(1, 3, 37, 53), stride=16).shape == (1, 2, 37, 53)


@pytest.mark.slow
def test_train_cli(tmp_path, capsys):
    config = _write_config(tmp_path / "tiny.yaml")
    assert main(["train", "flow", "--config", str(config), "--out", str(tmp_path / "run"), "--iterations", "2",
                 "--quiet"]) == 0
    assert "2 iterations" in capsys.readouterr().out
    assert main(["train", "flow", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "no config file" in capsys.readouterr().err


def test_real_texture_pairs_mix_into_the_synthetic_ones(tmp_path):
    from featflow.data.mixing import Mixed
    from featflow.engine.flow_training import _train_dataset

    cfg = load_config(FlowTrainConfig, _write_config(tmp_path / "mix.yaml", {"data": {"real_share": 0.25}}),
                      kind="flow")
    data = _train_dataset(cfg)
    assert isinstance(data, Mixed) and len(data) == 11  # the 8 synthetic pairs the run reads, and 2 real among them
    assert [data.from_second(i) for i in range(8)] == [False, False, False, True] * 2  # one in four, evenly
    synthetic = SyntheticFlowPairs(SynthConfig(height=48, width=64), 8, max_gap=3, pairs_per_video=2)
    assert torch.equal(data[4]["current"], synthetic[3]["current"])  # the synthetic pairs keep their order
    assert data[3]["flow"].shape == (2, 48, 64) and data[3]["valid"].dtype == torch.bool
    assert train_flow(cfg, out=tmp_path / "run", progress=False).iterations == 4
    # data.real_max_motion bounds the real-texture pairs' translations: a wider range moves the cut-outs further
    wide = load_config(FlowTrainConfig, _write_config(tmp_path / "wide.yaml", {"data": {
        "real_share": 0.25, "real_max_motion": 48.0}}), kind="flow")
    assert data.second.max_motion == 24.0 and _train_dataset(wide).second.max_motion == 48.0
    with pytest.raises(FeatflowError, match="real_max_motion: a translation bound in pixels"):
        load_config(FlowTrainConfig, _write_config(tmp_path / "neg.yaml", {"data": {"real_max_motion": -1}}),
                    kind="flow")
    with pytest.raises(FeatflowError, match="real_share: real-texture pairs are mixed into the synthetic source"):
        load_config(FlowTrainConfig, _write_config(tmp_path / "bad.yaml", {"data": {"real_share": 0.5,
                                                                              "source": str(tmp_path)}}), kind="flow")
