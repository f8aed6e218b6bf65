"""F's convolutions as one GEMM on small maps: the same outputs as torch's layers, in every layout and shape."""

import pytest
import torch
from torch import nn

from featflow.modeling import gemm_conv
from featflow.modeling.flow_net import build_flow_net


@pytest.fixture
def always_gemm(monkeypatch):
    """Every layer takes the GEMM path at inference (the thresholds are about speed, not math)."""
    monkeypatch.setattr(gemm_conv, "GEMM_MAX_POSITIONS", 1 << 30)
    monkeypatch.setattr(gemm_conv, "GEMM_MIN_WEIGHTS", 0)


def _pair(ours: nn.Module, theirs: nn.Module, channels_last: bool) -> tuple[nn.Module, nn.Module]:
    theirs.load_state_dict(ours.state_dict())  # the same names: checkpoints load either way
    if channels_last:
        ours, theirs = (m.to(memory_format=torch.channels_last) for m in (ours, theirs))
    return ours.eval(), theirs.eval()


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kernel,stride,padding,dilation,bias", [(3, 1, 1, 1, True), (3, 2, 1, 1, False),
                                                                  (5, 2, 2, 1, True), (3, 1, 2, 2, True),
                                                                  (1, 1, 0, 1, False)])
def test_conv_gemm_equals_torch(always_gemm, channels_last, kernel, stride, padding, dilation, bias):
    torch.manual_seed(0)
    ours, theirs = _pair(gemm_conv.Conv2d(12, 20, kernel, stride, padding, dilation, bias=bias),
                         nn.Conv2d(12, 20, kernel, stride, padding, dilation, bias=bias), channels_last)
    x = torch.randn(3, 12, 9, 14)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kernel,stride,padding,bias", [(4, 2, 1, True), (4, 2, 1, False), (3, 1, 1, True),
                                                        (3, 2, 0, True)])
def test_transposed_conv_gemm_equals_torch(always_gemm, channels_last, kernel, stride, padding, bias):
    torch.manual_seed(0)
    ours, theirs = _pair(gemm_conv.ConvTranspose2d(12, 20, kernel, stride, padding, bias=bias),
                         nn.ConvTranspose2d(12, 20, kernel, stride, padding, bias=bias), channels_last)
    x = torch.randn(2, 12, 5, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_the_gemm_path_is_taken_only_at_float32_inference_on_small_maps(monkeypatch):
    calls = []
    unfold = torch.nn.functional.unfold
    monkeypatch.setattr(torch.nn.functional, "unfold", lambda *a, **k: calls.append(1) or unfold(*a, **k))
    big = gemm_conv.Conv2d(512, 2048, 1).eval()  # 1M weights: weight-bound
    small_map = torch.randn(1, 512, 4, 8)  # 32 positions
    with torch.no_grad():
        big(small_map)
        assert len(calls) == 1
        big(torch.randn(1, 512, 16, 16))  # 256 positions: torch's kernel
        gemm_conv.Conv2d(64, 2, 3, padding=1).eval()(torch.randn(1, 64, 4, 8))  # small weights: torch's kernel
        with torch.autocast("cpu", dtype=torch.bfloat16):
            big(small_map)
    big(small_map)  # gradients on (training): torch's kernel
    assert len(calls) == 1


@pytest.mark.parametrize("name", ["flownet", "flownet_half"])  # FlowNet Inception has no layer that large
def test_a_flow_net_gives_the_same_flow_with_and_without_the_gemm_path(monkeypatch, name):
    torch.manual_seed(0)
    net = build_flow_net(name).eval()
    net.scale_conv.weight.data.normal_(std=0.01)  # a scale field that is not exactly 1
    current, key = torch.rand(2, 3, 160, 224), torch.rand(2, 3, 160, 224)
    calls = []
    unfold = torch.nn.functional.unfold
    monkeypatch.setattr(torch.nn.functional, "unfold", lambda *a, **k: calls.append(1) or unfold(*a, **k))
    with torch.no_grad():
        gemm = net(current, key)
        assert calls  # the coarsest level (3x4 positions, batch 2) ran as a GEMM
        monkeypatch.setattr(gemm_conv, "GEMM_MAX_POSITIONS", 0)
        plain = net(current, key)
    torch.testing.assert_close(gemm.flow, plain.flow, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gemm.scale, plain.scale, rtol=1e-4, atol=1e-4)


def _in_bf16(ours: nn.Module, theirs: nn.Module, x: torch.Tensor, autocast: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Both layers' outputs in bfloat16: under CPU autocast, or with their inputs (and torch's weights) cast."""
    if autocast:
        with torch.autocast("cpu", torch.bfloat16):
            return ours(x), theirs(x)
    return ours(x.bfloat16()), theirs.bfloat16()(x.bfloat16())


@pytest.mark.parametrize("autocast", [True, False])
def test_dilated_bf16_gemm_equals_torch_and_keeps_the_dtype(monkeypatch, autocast):
    """A large-dilation layer takes the GEMM in bfloat16 (under CPU autocast or on bf16 inputs) on any map: the same
    outputs as torch's bf16 convolution to bf16's precision, in bf16; float32 inference keeps torch's kernel."""
    monkeypatch.setattr(gemm_conv, "GEMM_MIN_WEIGHTS", 0)
    torch.manual_seed(0)
    ours, theirs = _pair(gemm_conv.Conv2d(32, 16, 3, 1, 6, 6), nn.Conv2d(32, 16, 3, 1, 6, 6), channels_last=False)
    x = torch.randn(2, 32, 19, 23)
    unfold, columns = gemm_conv.F.unfold, []

    def counted_unfold(x, *args, **kwargs):
        columns.append(x.dtype)
        return unfold(x, *args, **kwargs)

    monkeypatch.setattr(gemm_conv.F, "unfold", counted_unfold)
    with torch.no_grad():
        got, want = _in_bf16(ours, theirs, x, autocast)
        assert columns == [torch.bfloat16]  # our layer took the GEMM, its columns written in bf16
        assert got.dtype == want.dtype == torch.bfloat16
        torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-2)
        assert gemm_conv._gemm_dtype(x, 1 << 30, ours.weight, ours.dilation) is None  # float32: oneDNN's kernel
        with torch.autocast("cpu", torch.bfloat16):
            assert gemm_conv._gemm_dtype(x, 1 << 30, ours.weight, ours.dilation) == torch.bfloat16
            assert gemm_conv._gemm_dtype(x, 1 << 30, ours.weight, (2, 2)) is None  # dilation 2: oneDNN's


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("autocast", [True, False])
def test_dilated_bf16_transposed_gemm_equals_torch(monkeypatch, autocast, channels_last):
    """The transposed layer's bfloat16 path (dilation >= GEMM_MIN_DILATION, any map): torch's bf16 result to bf16's
    precision, in bf16, in either weight layout; and its float32 GEMM with a dilation is exact."""
    monkeypatch.setattr(gemm_conv, "GEMM_MIN_WEIGHTS", 0)
    torch.manual_seed(0)
    ours, theirs = _pair(gemm_conv.ConvTranspose2d(24, 8, 3, 2, 5, dilation=4),
                         nn.ConvTranspose2d(24, 8, 3, 2, 5, dilation=4), channels_last)
    x = torch.randn(2, 24, 9, 11)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    fold, calls = gemm_conv.F.fold, []
    monkeypatch.setattr(gemm_conv.F, "fold", lambda cols, *a, **k: calls.append(cols.dtype) or fold(cols, *a, **k))
    with torch.no_grad():
        got, want = _in_bf16(ours, theirs, x, autocast)
        assert calls == [torch.bfloat16]  # our layer took the GEMM, col2im on bf16 columns
        assert got.dtype == want.dtype == torch.bfloat16 and got.shape == want.shape
        torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=3e-2)
        monkeypatch.setattr(gemm_conv, "GEMM_MAX_POSITIONS", 1 << 30)
        ours32, theirs32 = _pair(gemm_conv.ConvTranspose2d(24, 8, 3, 2, 5, dilation=4),
                                 nn.ConvTranspose2d(24, 8, 3, 2, 5, dilation=4), channels_last)
        torch.testing.assert_close(ours32(x), theirs32(x), rtol=1e-5, atol=1e-5)
        assert calls[-1] == torch.float32
