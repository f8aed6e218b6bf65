import pytest
import torch

from featflow.modeling.feature_net import FEATURE_NETS, FeatureNet, feature_map_size
from featflow.modeling.flow_net import FLOW_NETS, build_flow_net, correlation, cosine_correlation
from featflow.modeling.preprocess import PIXEL_MEANS, feature_input, flow_input


@pytest.mark.parametrize("arch", FEATURE_NETS)
def test_feature_net_stride_16_on_odd_sizes(arch):
    with torch.device("meta"):  # shapes only: fast even for ResNet-101
        net = FeatureNet(arch, out_channels=48)
        out = net(torch.empty(1, 3, 97, 131))
    assert tuple(out.shape) == (1, 48, *feature_map_size(97, 131)) == (1, 48, 7, 9)


def test_feature_net_res5_is_dilated_v1():
    net = FeatureNet("resnet50")
    first = net.res5[0]
    assert first.conv1.stride == (1, 1) and first.conv2.stride == (1, 1)
    assert all(b.conv2.dilation == (2, 2) for b in net.res5)
    assert net.res3[0].conv1.stride == (2, 2) and net.res3[0].conv2.stride == (1, 1)  # v1: stride on the 1x1
    assert net.feat_conv.dilation == (6, 6) and net.feat_conv.out_channels == 1024


def test_feature_net_runs_and_is_trainable():
    net = FeatureNet("resnet18", out_channels=16)
    out = net(torch.randn(2, 3, 40, 56))
    assert out.shape == (2, 16, 3, 4) and (out >= 0).all()
    out.mean().backward()
    assert net.conv1.weight.grad is not None


@pytest.mark.parametrize("arch,norm", [("resnet18", "batch"), ("resnet50", "frozen")])
def test_folding_batchnorm_keeps_the_outputs_and_forbids_training(arch, norm):
    torch.manual_seed(0)
    net = FeatureNet(arch, out_channels=16, norm=norm)
    for module in net.modules():  # statistics and affine terms far from the identity, so that folding shows
        if hasattr(module, "running_var"):
            module.running_mean.uniform_(-1, 1), module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5), module.bias.data.uniform_(-0.5, 0.5)
    net.eval()
    image = torch.randn(1, 3, 48, 64)
    before = net(image)
    with pytest.raises(RuntimeError, match="eval"):
        FeatureNet(arch, out_channels=16, norm=norm).fold_batchnorm()  # a training-mode net keeps its BatchNorm
    net.fold_batchnorm()
    assert not any(hasattr(m, "running_var") for m in net.modules())  # every BatchNorm is gone
    torch.testing.assert_close(net(image), before, rtol=1e-3, atol=1e-4 * before.abs().max().item())
    net.eval()  # inference mode is still fine; training is not
    with pytest.raises(RuntimeError, match="folded"):
        net.train()


def test_unknown_networks_are_named_in_errors():
    with pytest.raises(ValueError, match="resnet18"):
        FeatureNet("resnet152")
    with pytest.raises(ValueError, match="flownet_inception"):
        build_flow_net("pwcnet")


@pytest.mark.parametrize("name", FLOW_NETS)
@pytest.mark.parametrize("size", [(97, 131), (64, 64), (33, 47)])
def test_flow_net_output_lines_up_with_features(name, size):
    net = build_flow_net(name, scale_channels=24)
    frames = flow_input(torch.rand(1, 3, *size) * 255)  # (1, 3, ceil(H/2), ceil(W/2))
    out = net(frames, frames, pyramid=True)
    h16, w16 = feature_map_size(*size)
    assert out.flow.shape == (1, 2, h16, w16)
    assert out.scale.shape == (1, 24, h16, w16)
    expected = {8, 16, 32, 64} if name == "pwcnet_lite" else {8, 16, 32, 64, 128}  # PWC-Net Lite ends at 64
    assert set(out.pyramid) == expected
    for stride, level in out.pyramid.items():
        assert level.shape == (1, 2, -(-size[0] // stride), -(-size[1] // stride))


@pytest.mark.parametrize("name", FLOW_NETS)
def test_scale_field_starts_at_exactly_one(name):
    net = build_flow_net(name, scale_channels=8)
    out = net(torch.randn(2, 3, 24, 32), torch.randn(2, 3, 24, 32))
    assert torch.equal(out.scale, torch.ones_like(out.scale))
    # the bias of 1 is a constant, not a parameter: training cannot move it
    assert all(p.shape != (8,) for p in net.scale_conv.parameters())


def test_the_cost_volume_peaks_at_the_displacement_to_the_key_frame():
    torch.manual_seed(0)
    key = torch.nn.functional.normalize(torch.randn(2, 8, 12, 14), dim=1)  # unit vectors: each is its own best match
    dx, dy = 2, -1  # the key's content sits (dx, dy) from the current frame's: key(p + (dx, dy)) = current(p)
    current = torch.zeros_like(key)
    current[..., 1:, : 14 - dx] = key[..., : 11, dx:]
    cost = correlation(current, key, max_displacement=3)  # (2, 49, 12, 14), offsets row-major, dy outer
    assert cost.shape == (2, 49, 12, 14)
    best = cost[..., 2:-2, 2:-4].argmax(1)  # away from the borders the shifted copy covers
    assert (best == (dy + 3) * 7 + (dx + 3)).all()
    torch.testing.assert_close(cost[:, 24], (current * key).mean(1))  # offset (0, 0)
    assert (cost[:, 0, 0] == 0).all()  # offset (-3, -3) from the top-left corner reads the zero padding



def test_the_cosine_cost_volume_ignores_the_features_scale():
    """PWC-Net Lite's cost: cosines of unit feature vectors, the same for features a thousand times smaller (a first
    training let its pyramid's features shrink to 1e-3, and a plain product's cost fell to 1e-7: no signal)."""
    torch.manual_seed(0)
    current, key = torch.randn(2, 8, 10, 12), torch.randn(2, 8, 10, 12)
    cost = cosine_correlation(current, key, 2)
    torch.testing.assert_close(cosine_correlation(current * 1e-3, key * 1e-3, 2), cost)
    assert cost.abs().max() <= 1.0 + 1e-6
    torch.testing.assert_close(cosine_correlation(current, current, 2)[:, 12], torch.ones(2, 10, 12))  # (0, 0)
    torch.testing.assert_close(cost[:, 12], torch.nn.functional.cosine_similarity(current, key, dim=1))

def test_every_layer_of_pwcnet_lite_learns_from_the_flow_loss():
    """The pyramid, each level's estimator and correction, and both heads all reach the output: none is left
    untrained by a level that never feeds the next."""
    net = build_flow_net("pwcnet_lite", scale_channels=4)
    out = net(torch.randn(1, 3, 40, 56), torch.randn(1, 3, 40, 56), pyramid=True)
    (out.flow.square().sum() + sum(level.square().sum() for level in out.pyramid.values())
     + out.scale.sum()).backward()
    silent = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert silent == []


def test_pwcnet_lite_starts_near_zero_flow():
    """Its corrections start near 0 (with MSRA's init they were tens of pixels at random and training collapsed
    to a constant flow)."""
    torch.manual_seed(0)
    out = build_flow_net("pwcnet_lite", scale_channels=4)(torch.randn(2, 3, 64, 96), torch.randn(2, 3, 64, 96),
                                                         pyramid=True)
    assert out.flow.abs().max() < 0.5  # stride-16 feature pixels (MSRA: several)
    assert all(level.abs().max() < 8.0 for level in out.pyramid.values())  # full-image pixels


def test_flow_net_rejects_mismatched_frames():
    net = build_flow_net("flownet_inception", scale_channels=4)
    with pytest.raises(ValueError, match="differ in shape"):
        net(torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 48))


def test_input_conventions():
    images = torch.tensor(PIXEL_MEANS).view(1, 3, 1, 1).expand(1, 3, 2, 2) + 255.0
    torch.testing.assert_close(feature_input(images), torch.full((1, 3, 2, 2), 255.0))
    torch.testing.assert_close(flow_input(images), torch.ones(1, 3, 1, 1))  # and at half resolution
    odd = torch.arange(3 * 3 * 5, dtype=torch.float32).view(1, 3, 3, 5)
    assert flow_input(odd).shape == (1, 3, 2, 3)  # sizes round up
