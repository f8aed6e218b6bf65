import pytest
import torch

from featflow.modeling.warp import propagate, warp


@pytest.mark.parametrize("size", [(5, 7), (1, 6), (6, 1), (13, 17)])
def test_zero_flow_is_identity(size):
    features = torch.randn(2, 3, *size)
    out = warp(features, torch.zeros(2, 2, *size))
    torch.testing.assert_close(out, features, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dx,dy", [(2, -1), (-3, 0), (0, 2), (1, 1)])
def test_integer_constant_flow_is_a_shift(dx, dy):
    h, w = 9, 11
    features = torch.randn(1, 4, h, w)
    flow = torch.zeros(1, 2, h, w)
    flow[:, 0], flow[:, 1] = dx, dy
    out = warp(features, flow)
    expected = torch.zeros_like(features)
    # out[y, x] = features[y + dy, x + dx], zeros where that falls outside
    ys = slice(max(0, -dy), min(h, h - dy))
    xs = slice(max(0, -dx), min(w, w - dx))
    src_ys = slice(ys.start + dy, ys.stop + dy)
    src_xs = slice(xs.start + dx, xs.stop + dx)
    expected[..., ys, xs] = features[..., src_ys, src_xs]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_half_pixel_flow_interpolates_bilinearly():
    features = torch.arange(12.0).view(1, 1, 3, 4)
    flow = torch.zeros(1, 2, 3, 4)
    flow[:, 0] = 0.5
    out = warp(features, flow)
    torch.testing.assert_close(out[0, 0, :, :3], (features[0, 0, :, :3] + features[0, 0, :, 1:]) / 2)
    # the last column reads half a pixel past the border: half of it is zero padding
    torch.testing.assert_close(out[0, 0, :, 3], features[0, 0, :, 3] / 2)


def test_gradients_reach_features_and_flow():
    features = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    flow = (torch.rand(1, 2, 5, 6, dtype=torch.float64) * 2 - 1).mul(1.7).add(0.13).requires_grad_(True)
    assert torch.autograd.gradcheck(warp, (features, flow), eps=1e-6, atol=1e-4)
    warp(features, flow).sum().backward()
    assert features.grad.abs().sum() > 0 and flow.grad.abs().sum() > 0


def test_propagate_applies_scale():
    features = torch.randn(1, 3, 4, 5)
    scale = torch.full((1, 3, 4, 5), 2.0)
    out = propagate(features, torch.zeros(1, 2, 4, 5), scale)
    torch.testing.assert_close(out, 2 * features, atol=1e-5, rtol=0)


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="does not match"):
        warp(torch.randn(1, 3, 4, 5), torch.zeros(1, 2, 4, 6))
    with pytest.raises(ValueError, match="expected features"):
        warp(torch.randn(1, 3, 4, 5), torch.zeros(1, 3, 4, 5))


@pytest.mark.parametrize("channels_last", [False, True])
def test_matches_bilinear_grid_sampling_with_zero_padding(channels_last):
    torch.manual_seed(0)
    n, c, h, w = 2, 5, 7, 9
    features = torch.randn(n, c, h, w)
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    flow = torch.randn(n, 2, h, w) * 4  # many samples fall partly or wholly outside the map
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    gx = (2 * (xs + flow[:, 0]) + 1) / w - 1  # pixel coordinates -> grid_sample's align_corners=False grid
    gy = (2 * (ys + flow[:, 1]) + 1) / h - 1
    expected = torch.nn.functional.grid_sample(features, torch.stack([gx, gy], -1), mode="bilinear",
                                               padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(warp(features, flow), expected, atol=1e-5, rtol=0)


def test_one_frames_features_serve_a_batch_of_flows():
    """Offline DFF warps one key frame's features along several frames' flows in one call: the same as warping a
    copy of the features for each flow."""
    torch.manual_seed(0)
    features = torch.randn(1, 6, 5, 7)
    flow = torch.randn(3, 2, 5, 7) * 2
    shared = warp(features, flow)
    assert shared.shape == (3, 6, 5, 7)
    torch.testing.assert_close(shared, warp(features.expand(3, -1, -1, -1).contiguous(), flow))
    with pytest.raises(ValueError, match="does not match"):
        warp(torch.randn(2, 6, 5, 7), flow)
