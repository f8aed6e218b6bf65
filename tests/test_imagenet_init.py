"""N_feat from torchvision's ImageNet ResNets (featflow.modeling.feature_net.load_torchvision_resnet and
``model.features_init`` in featflow.engine.models), tested offline on state dicts saved here."""

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from featflow.engine.checkpoint import load_segmenter, save_segmenter
from featflow.engine.models import DetModelConfig, SegModelConfig, build_video_model
from featflow.errors import FeatflowError, MissingInput
from featflow.modeling.feature_net import FeatureNet, load_torchvision_resnet
from featflow.modeling.rpn import RPNConfig


def _torchvision(arch: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)(weights=None, **kwargs).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so that a misplaced one shows
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net


def test_the_conversion_of_a_bottleneck_resnet_is_exact_stage_by_stage():
    reference = _torchvision("resnet50")
    net = FeatureNet("resnet50", 32, norm="batch", layout="torchvision").eval()  # the same ops: bit-exact
    load_torchvision_resnet(net, reference.state_dict())
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        ours = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        theirs = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        assert torch.equal(ours, theirs)
        for own, other in ((net.res2, reference.layer1), (net.res3, reference.layer2), (net.res4, reference.layer3)):
            ours, theirs = own(ours), other(theirs)
            assert torch.equal(ours, theirs), own
        # res5: the same weights at stride 1, every 3x3 dilated by 2 (torchvision's dilated variant leaves the
        # first block's 3x3 undilated; set it as the original code has it)
        dilated = _torchvision("resnet50", replace_stride_with_dilation=[False, False, True])
        dilated.load_state_dict(reference.state_dict())
        dilated.layer4[0].conv2.dilation, dilated.layer4[0].conv2.padding = (2, 2), (2, 2)
        assert torch.equal(net.res5(ours), dilated.layer4(theirs))
    assert net(x).shape == (1, 32, 6, 8)  # stride 16
    # the papers' frozen statistics: the same network up to the rounding of FrozenBatchNorm2d's own arithmetic
    frozen = FeatureNet("resnet50", 32, norm="frozen", layout="torchvision").eval()
    load_torchvision_resnet(frozen, reference.state_dict())
    with torch.no_grad():
        assert torch.allclose(frozen(x), net(x), rtol=1e-3, atol=1e-3)


def test_the_msra_layout_refuses_bottleneck_weights_and_basic_blocks_load_in_either():
    with pytest.raises(FeatflowError, match="torchvision layout"):
        load_torchvision_resnet(FeatureNet("resnet50", 8), _torchvision("resnet50").state_dict())
    reference = _torchvision("resnet18")
    net = FeatureNet("resnet18", 8, norm="batch").eval()  # BatchNorm counters load too
    load_torchvision_resnet(net, reference.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net.res4(net.res3(net.res2(net.maxpool(net.relu(net.bn1(net.conv1(x))))))),
                              reference.layer3(reference.layer2(reference.layer1(reference.maxpool(
                                  reference.relu(reference.bn1(reference.conv1(x))))))), atol=1e-5)


def test_a_file_that_is_not_a_torchvision_resnet_names_the_key():
    state = _torchvision("resnet18").state_dict()
    del state["layer2.0.conv1.weight"]
    with pytest.raises(FeatflowError, match=r"missing key 'res3.0.conv1.weight'"):
        load_torchvision_resnet(FeatureNet("resnet18", 8), state, "r18.pth")
    wrong = _torchvision("resnet34").state_dict()
    with pytest.raises(FeatflowError, match="unexpected key"):
        load_torchvision_resnet(FeatureNet("resnet18", 8), wrong)


def test_features_init_from_a_state_dict_file_and_from_torchvisions_cache(tmp_path, monkeypatch):
    reference = _torchvision("resnet50")
    path = tmp_path / "resnet50_imagenet.pth"
    torch.save(reference.state_dict(), path)
    model = build_video_model(SegModelConfig(arch="resnet50", channels=16, norm="frozen",
                                             features_init=str(path)), 5)
    assert model.feature_net.layout == "torchvision"
    assert torch.equal(model.feature_net.res4[2].conv2.weight, reference.layer3[2].conv2.weight)
    # the layout is kept in the checkpoint, so the model reloads as it was built
    save_segmenter(tmp_path / "seg.safetensors", model, [str(k) for k in range(5)])
    assert load_segmenter(tmp_path / "seg.safetensors")[0].feature_net.layout == "torchvision"
    # torchvision:ARCH goes through torchvision's weights API and its cache (offline here: the file is put there)
    weights = torchvision.models.get_model_weights("resnet18").IMAGENET1K_V1
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.hub.set_dir(str(tmp_path / "torch" / "hub"))
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    cached.parent.mkdir(parents=True)
    r18 = _torchvision("resnet18")
    torch.save(r18.state_dict(), cached)
    det = build_video_model(DetModelConfig(arch="resnet18", channels=16, features_init="torchvision:resnet18",
                                           anchor_sizes=(16, 32, 64)), 3)
    assert torch.equal(det.feature_net.res2[0].conv1.weight, r18.layer1[0].conv1.weight)
    assert det.head.rpn is not None and tuple(det.anchor_sizes) == RPNConfig(anchor_sizes=(16, 32, 64)).anchor_sizes


def test_missing_imagenet_weights_and_a_wrong_arch_are_one_line_errors(tmp_path, monkeypatch):
    torch.hub.set_dir(str(tmp_path / "empty_hub"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(MissingInput, match=r"ImageNet weights of resnet101 are not in its cache .*resnet101-") as err:
        build_video_model(SegModelConfig(arch="resnet101", channels=8, features_init="torchvision:resnet101"), 3)
    assert "\n" not in str(err.value)
    with pytest.raises(FeatflowError, match="is a resnet50, model.arch is resnet18"):
        build_video_model(SegModelConfig(arch="resnet18", channels=8, features_init="torchvision:resnet50"), 3)
