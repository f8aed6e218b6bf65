"""``featflow flow`` with the shipped weights: the flow net must really estimate motion."""

import numpy as np

from featflow.cli import main
from featflow.data.formats.flo import read_flo
from featflow.data.io import read_image, write_image
from featflow.data.synthetic import SynthConfig
from featflow.engine.checkpoint import load_flow_net, shipped_flow_weights
from featflow.evaluation.flow_metrics import end_point_error, held_out_pairs


def test_shipped_weights_are_small_and_load():
    """Each shipped F loads as its own network; the default F (no path) is PWC-Net Lite, reports/flow_pwcnet.md's
    winner; a network featflow ships no weights for gets a one-line error that names what it ships."""
    import pytest

    from featflow.engine.checkpoint import SHIPPED_FLOW_WEIGHTS
    from featflow.errors import FeatflowError

    for name in SHIPPED_FLOW_WEIGHTS:
        path = shipped_flow_weights(name)
        assert path.is_file() and path.stat().st_size < 10 * 2**20
        net, meta = load_flow_net(path)
        assert meta["featflow.model"] == name and int(meta["iterations"]) > 1000
    assert shipped_flow_weights() == shipped_flow_weights("pwcnet_lite")
    assert load_flow_net()[1]["featflow.model"] == "pwcnet_lite"
    with pytest.raises(FeatflowError, match="no pre-trained weights for flownet .*pwcnet_lite, flownet_inception"):
        shipped_flow_weights("flownet")


def test_flow_init_shipped_takes_the_weights_of_the_models_own_flow_net():
    """A DFF model with FlowNet Inception keeps getting the shipped FlowNet Inception now that the default F is
    PWC-Net Lite, and one with PWC-Net Lite gets PWC-Net Lite's."""
    import torch

    from featflow.engine.checkpoint import load_flow_into
    from featflow.methods.segmentation import VideoSegmenter

    for name in ("flownet_inception", "pwcnet_lite"):
        model = VideoSegmenter(3, "resnet18", 16, name)
        load_flow_into(model, None)
        shipped, _ = load_flow_net(shipped_flow_weights(name), scale_channels=16)
        state = shipped.state_dict()
        assert all(torch.equal(v, state[k]) for k, v in model.flow_net.state_dict().items()), name


def test_flow_command_estimates_motion(tmp_path, capsys):
    pairs = held_out_pairs(SynthConfig(height=256, width=512), 6, seed=5, split="test")  # the training size
    errors, zero_errors = [], []
    for i, pair in enumerate(pairs):
        write_image(tmp_path / f"c{i}.png", pair.current)
        write_image(tmp_path / f"k{i}.png", pair.key)
        args = ["flow", str(tmp_path / f"c{i}.png"), str(tmp_path / f"k{i}.png"), "--out", str(tmp_path / f"{i}.flo")]
        if i == 0:
            args += ["--visualize", str(tmp_path / "flow.png")]
        assert main(args) == 0
        flow = read_flo(tmp_path / f"{i}.flo")
        assert flow.shape == (256, 512, 2)
        errors.append(end_point_error(flow, pair.flow))
        zero_errors.append(end_point_error(np.zeros_like(pair.flow), pair.flow))
    assert np.mean(errors) < 0.5 * np.mean(zero_errors)
    assert read_image(tmp_path / "flow.png").shape == (256, 512, 3)
    assert "pwcnet_lite" in capsys.readouterr().out  # the default F


def test_flow_command_errors(tmp_path, capsys):
    write_image(tmp_path / "a.png", np.zeros((32, 48, 3), np.uint8))
    write_image(tmp_path / "b.png", np.zeros((32, 64, 3), np.uint8))
    assert main(["flow", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--out", str(tmp_path / "f.flo")]) == 2
    assert "same size" in capsys.readouterr().err
    assert main(["flow", str(tmp_path / "a.png"), str(tmp_path / "missing.png"), "--out", str(tmp_path / "f.flo")]) == 2
    assert "no such image" in capsys.readouterr().err
    (tmp_path / "w.safetensors").write_bytes(b"junk")
    assert main(["flow", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "--out", str(tmp_path / "f.flo"),
                 "--weights", str(tmp_path / "w.safetensors")]) == 2
    assert "not a safetensors" in capsys.readouterr().err
