"""F: the flow networks of DFF (FlowNet, FlowNet Half, FlowNet Inception), and PWC-Net Lite.

Every flow network takes the current frame and the key frame at half resolution (pooled and normalised by
``featflow.modeling.preprocess.flow_input``), concatenated along channels (current first), and returns at
stride 16 of the full image:

- ``flow``: the displacement of each current-frame feature pixel to the key frame, in feature-map
  pixels (the raw prediction times 2.5 = FlowNet's x20 ground-truth scaling / the stride 8 of the
  half-resolution input), ready for the warp W;
- ``scale``: the scale field, a 1x1 conv with zero-initialised weights plus a fixed (untrained) bias
  of 1, so that it starts at exactly 1.

The decoder is FlowNet's refinement: at each level a 3x3 conv predicts flow, a 4x4/2 deconv
upsamples features and flow, and the next level concatenates [encoder skip, deconv, upsampled flow].
The last concatenation is at stride 8; DFF pools it 2x2 to stride 16 before the two heads.

For flow pre-training the networks also return their multi-scale predictions (``pyramid=True``),
each converted to full-resolution image pixels.

PWC-Net Lite (``pwcnet_lite``, not in the papers: the talk's "better flow learning") replaces the stacked-frame
encoder by a feature pyramid shared by both frames, and learns correspondence from cost volumes: at each level,
coarse to fine, the key frame's features are warped along the flow so far and correlated with the current frame's
over a small window, and a small estimator predicts the correction. Large motions are found on the coarse levels,
where FlowNet Simple / Inception, which must learn matching from stacked pixels, stop short of them.

The layers are ``featflow.modeling.gemm_conv``'s: torch's, computed as one matrix product on the coarse levels'
small maps at inference, where oneDNN ran far from its arithmetic.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featflow.modeling import gemm_conv
from featflow.modeling.warp import warp
from featflow.registry import FLOW_NETS, check_choice

#: Raw flow predictions times this are in stride-16 feature-map pixels.
FLOW_SCALE = 2.5
#: Stride of ``FlowOutput.flow`` relative to the full image.
FLOW_STRIDE = 16


class FlowOutput(NamedTuple):
    flow: Tensor  # (N, 2, ceil(H/16), ceil(W/16)): current -> key, in feature-map pixels (x, y)
    scale: Tensor | None  # (N, scale_channels, ceil(H/16), ceil(W/16)); None when not asked for
    # Decoder predictions by stride (8, 16, 32, ...) in full-image pixels; empty unless asked for.
    pyramid: dict[int, Tensor]


def _conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(gemm_conv.Conv2d(cin, cout, kernel, stride, padding=kernel // 2), nn.LeakyReLU(0.1))


def _deconv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(gemm_conv.ConvTranspose2d(cin, cout, 4, 2, padding=1), nn.LeakyReLU(0.1))


def _crop_like(x: Tensor, ref: Tensor) -> Tensor:
    """Crop an upsampled map (size 2*ceil(s/2)) to the skip connection's size s."""
    return x[..., : ref.shape[-2], : ref.shape[-1]]


class FlowDecoder(nn.Module):
    """FlowNet's coarse-to-fine refinement.

    ``skip_channels`` and ``deconv_channels`` are listed fine to coarse (stride 8 first); the decoder
    starts from the coarsest encoder output (``coarsest_channels``) and ends with the stride-8
    concatenation of ``skip_channels[0] + deconv_channels[0] + 2`` channels.
    """

    def __init__(self, coarsest_channels: int, skip_channels: Sequence[int], deconv_channels: Sequence[int]) -> None:
        super().__init__()
        if len(skip_channels) != len(deconv_channels):
            raise ValueError("one deconv per skip connection")
        predict, deconv, upflow = [], [], []
        channels = coarsest_channels
        for skip, dec in zip(reversed(skip_channels), reversed(deconv_channels)):
            predict.append(gemm_conv.Conv2d(channels, 2, 3, padding=1))
            deconv.append(_deconv(channels, dec))
            upflow.append(gemm_conv.ConvTranspose2d(2, 2, 4, 2, padding=1, bias=False))
            channels = skip + dec + 2
        self.predict = nn.ModuleList(predict)  # coarse to fine
        self.deconv = nn.ModuleList(deconv)
        self.upflow = nn.ModuleList(upflow)
        self.out_channels = channels

    def forward(self, coarsest: Tensor, skips: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """-> (stride-8 concatenation, raw flow predictions coarse to fine, strides 16 * 2**k)."""
        x = coarsest
        flows = []
        for predict, deconv, upflow, skip in zip(self.predict, self.deconv, self.upflow, reversed(skips)):
            flow = predict(x)
            flows.append(flow)
            x = torch.cat([skip, _crop_like(deconv(x), skip), _crop_like(upflow(flow), skip)], dim=1)
        return x, flows


class FlowNetBase(nn.Module):
    """Shared front (half-resolution input) and heads (flow x2.5 and scale field) of every F.

    Subclasses build ``self.encoder_layers`` via ``encode`` and a ``FlowDecoder`` whose skips sit at
    strides 8, 16, 32, ... of the full image.
    """

    decoder: FlowDecoder
    name: str = ""  # the registry's name (``build_flow_net`` sets it): what checkpoints record

    def __init__(self, scale_channels: int = 1024) -> None:
        super().__init__()
        self.scale_channels = scale_channels
        self.stride = FLOW_STRIDE

    def _build_heads(self, channels: int | None = None) -> None:
        """Create the flow and scale heads on ``channels`` (default: the decoder's output), then initialise every
        layer (call last in ``__init__``)."""
        channels = self.decoder.out_channels if channels is None else channels
        self.predict_flow = gemm_conv.Conv2d(channels, 2, 3, padding=1)
        self.scale_conv = gemm_conv.Conv2d(channels, self.scale_channels, 1, bias=False)
        for module in self.modules():  # MSRA init for LeakyReLU(0.1), as FlowNet was trained from scratch
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, a=0.1, nonlinearity="leaky_relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.zeros_(self.scale_conv.weight)  # the scale field starts at exactly 1

    def encode(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(N, 6, H/2, W/2) -> (coarsest map, skips at strides 8, 16, ... of the full image)."""
        raise NotImplementedError

    def forward(self, current: Tensor, key: Tensor, pyramid: bool = False, with_scale: bool = True) -> FlowOutput:
        """Half-resolution frames ``flow_input(images)`` (N, 3, ceil(H/2), ceil(W/2)) -> flow and scale at stride 16
        of the full image. ``with_scale=False`` skips the scale head (a 1x1 conv to ``scale_channels``) where no
        one reads it."""
        if current.shape != key.shape:
            raise ValueError(f"current {tuple(current.shape)} and key {tuple(key.shape)} differ in shape")
        x = torch.cat([current, key], dim=1)  # (N, 6, H/2, W/2)
        coarsest, skips = self.encode(x)
        concat8, flows = self.decoder(coarsest, skips)  # (N, C, H/8, W/8)
        pooled = F.avg_pool2d(concat8, 2, ceil_mode=True)  # (N, C, H/16, W/16)
        flow = self.predict_flow(pooled) * FLOW_SCALE
        scale = self.scale_conv(pooled) + 1.0 if with_scale else None
        levels: dict[int, Tensor] = {}
        if pyramid:
            px = FLOW_SCALE * FLOW_STRIDE  # raw prediction -> full-image pixels
            levels[8] = self.predict_flow(concat8) * px  # the same head, before the pooling
            for k, raw in enumerate(reversed(flows)):  # strides 16, 32, 64, ...
                levels[16 * 2**k] = raw * px
        return FlowOutput(flow, scale, levels)


class FlowNetSimple(FlowNetBase):
    """FlowNet-S as DFF uses it; ``width=0.5`` gives FlowNet Half (every layer's channels halved)."""

    def __init__(self, width: float = 1.0, scale_channels: int = 1024) -> None:
        super().__init__(scale_channels)
        c = [max(1, round(n * width)) for n in (64, 128, 256, 512, 1024)]
        self.conv1 = _conv(6, c[0], 7, 2)  # stride 4 of the full image
        self.conv2 = _conv(c[0], c[1], 5, 2)  # 8
        self.conv3 = _conv(c[1], c[2], 5, 2)  # 16
        self.conv3_1 = _conv(c[2], c[2])
        self.conv4 = _conv(c[2], c[3], 3, 2)  # 32
        self.conv4_1 = _conv(c[3], c[3])
        self.conv5 = _conv(c[3], c[3], 3, 2)  # 64
        self.conv5_1 = _conv(c[3], c[3])
        self.conv6 = _conv(c[3], c[4], 3, 2)  # 128
        self.conv6_1 = _conv(c[4], c[4])
        self.decoder = FlowDecoder(c[4], skip_channels=[c[1], c[2], c[3], c[3]], deconv_channels=c[:4])
        self._build_heads()

    def encode(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        c2 = self.conv2(self.conv1(x))
        c3 = self.conv3_1(self.conv3(c2))
        c4 = self.conv4_1(self.conv4(c3))
        c5 = self.conv5_1(self.conv5(c4))
        c6 = self.conv6_1(self.conv6(c5))
        return c6, [c2, c3, c4, c5]


class InceptionBlock(nn.Module):
    """Parallel 1x1, 3x3 and double-3x3 (5x5 field) branches, concatenated; optional stride 2."""

    def __init__(self, cin: int, b1: int, b3: int, b5: int, stride: int = 1) -> None:
        super().__init__()
        self.branch1 = _conv(cin, b1, 1, stride) if stride == 1 else _conv(cin, b1, 3, stride)
        self.branch3 = nn.Sequential(_conv(cin, b3 // 2, 1), _conv(b3 // 2, b3, 3, stride))
        self.branch5 = nn.Sequential(_conv(cin, b5 // 2, 1), _conv(b5 // 2, b5, 3), _conv(b5, b5, 3, stride))
        self.out_channels = b1 + b3 + b5

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x)], dim=1)


class FlowNetInception(FlowNetBase):
    """FlowNet Inception: this project's Inception-style F at about 1/8 of FlowNet's cost.

    The original layer table was never published; this design keeps FlowNet's strides, skips and
    refinement decoder, replaces the plain convs of the encoder by Inception blocks (cheap 1x1
    reductions before 3x3 branches) and narrows every level, so that it counts about 1.73 G
    multiply-adds at 600x1000 (the cost the paper's 1/r figures imply).
    """

    def __init__(self, scale_channels: int = 1024) -> None:
        super().__init__(scale_channels)
        self.stem = nn.Sequential(_conv(6, 32, 5, 2), _conv(32, 64, 3, 2))  # strides 4, 8 of the full image
        self.block3 = nn.Sequential(InceptionBlock(64, 48, 64, 32, stride=2), InceptionBlock(144, 48, 64, 32))  # 16
        self.block4 = nn.Sequential(InceptionBlock(144, 64, 96, 32, stride=2), InceptionBlock(192, 64, 96, 32))  # 32
        self.block5 = nn.Sequential(InceptionBlock(192, 96, 128, 32, stride=2), InceptionBlock(256, 96, 128, 32))  # 64
        self.block6 = InceptionBlock(256, 128, 192, 64, stride=2)  # 128
        self.decoder = FlowDecoder(384, skip_channels=[64, 144, 192, 256], deconv_channels=[32, 56, 96, 128])
        self._build_heads()

    def encode(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        c2 = self.stem(x)
        c3 = self.block3(c2)
        c4 = self.block4(c3)
        c5 = self.block5(c4)
        c6 = self.block6(c5)
        return c6, [c2, c3, c4, c5]


def correlation(current: Tensor, key: Tensor, max_displacement: int) -> Tensor:
    """The cost volume: (N, C, h, w) features of both frames -> (N, (2d+1)**2, h, w), at each current pixel the
    mean over channels of its product with the key's at every offset (dx, dy) in [-d, d]**2 (row-major, dy outer);
    offsets outside the map read zeros."""
    d = max_displacement
    h, w = current.shape[-2:]
    padded = F.pad(key, (d, d, d, d))
    costs = [(current * padded[..., dy:dy + h, dx:dx + w]).mean(1)
             for dy in range(2 * d + 1) for dx in range(2 * d + 1)]
    return torch.stack(costs, dim=1)


def cosine_correlation(current: Tensor, key: Tensor, max_displacement: int) -> Tensor:
    """``correlation`` of the per-pixel unit feature vectors: (N, (2d+1)**2, h, w) cosines in [-1, 1], whatever the
    features' scale (zero where the key is off the map)."""
    channels = current.shape[1]
    return correlation(F.normalize(current, dim=1), F.normalize(key, dim=1), max_displacement) * channels


def _upsample_flow(flow: Tensor, like: Tensor) -> Tensor:
    """A level's flow (in its pixels) at the next finer level's size, in that level's pixels (x2)."""
    return 2.0 * F.interpolate(flow, size=like.shape[-2:], mode="bilinear", align_corners=False)


class PWCNetLite(FlowNetBase):
    """A small PWC-Net: a 5-level feature pyramid (strides 4 ... 64 of the full image, shared by both frames); at
    strides 64, 32, 16 and 8, coarse to fine, the key features warped along the upsampled flow, a cost volume of
    displacement +-4 level pixels (+-256 full-image pixels reached at stride 64) over the unit feature vectors
    (``cosine_correlation``), and an estimator that predicts the flow's correction from [cost, current features,
    flow]. It ends at stride 8, as the FlowNets' decoders do: most motions of a pair are under a stride-16 pixel,
    which a cost volume at stride 16 cannot resolve (a first version that stopped there learned a constant flow).
    The heads (a flow correction x2.5 and the scale field) read the stride-8 estimator's features and flow pooled
    to stride 16, as the FlowNets' read their decoder's."""

    #: Channels of the pyramid's levels, strides 4, 8, 16, 32, 64 of the full image.
    PYRAMID = (16, 32, 64, 96, 128)
    #: The strides of the pyramid's levels that estimate flow, finest first.
    ESTIMATED = (8, 16, 32, 64)
    #: Each estimating level's estimator widths, finest first (the stride-8 one narrower: it has 4x the positions).
    WIDTHS = ((64, 48, 32), (96, 64, 32), (96, 64, 32), (96, 64, 32))
    #: The cost volume's reach in pixels of each level.
    MAX_DISPLACEMENT = 4

    def __init__(self, scale_channels: int = 1024) -> None:
        super().__init__(scale_channels)
        levels, cin = [], 3
        for c in self.PYRAMID:
            levels.append(nn.Sequential(_conv(cin, c, 3, 2), _conv(c, c)))
            cin = c
        self.pyramid = nn.ModuleList(levels)
        cost = (2 * self.MAX_DISPLACEMENT + 1) ** 2
        estimated = self.PYRAMID[-len(self.ESTIMATED):]
        self.estimators = nn.ModuleList(  # finest first
            nn.Sequential(_conv(cost + c + 2, a), _conv(a, b), _conv(b, out))
            for c, (a, b, out) in zip(estimated, self.WIDTHS))
        self.residual = nn.ModuleList(gemm_conv.Conv2d(widths[-1], 2, 3, padding=1) for widths in self.WIDTHS)
        self._build_heads(self.WIDTHS[0][-1] + 2)  # the stride-8 estimator's features and flow, pooled to 16
        # Every correction starts near 0, so that the flow does: with MSRA's init the first corrections were tens of
        # pixels at random, the warps read outside the maps, and training collapsed to a constant flow.
        for predictor in (*self.residual, self.predict_flow):
            nn.init.normal_(predictor.weight, std=1e-3)
            nn.init.zeros_(predictor.bias)

    def _features(self, x: Tensor) -> list[Tensor]:
        """(N, 3, H/2, W/2) -> the pyramid's maps at the ESTIMATED strides of the full image, finest first."""
        maps = []
        for level in self.pyramid:
            x = level(x)
            maps.append(x)
        return maps[-len(self.ESTIMATED):]

    def forward(self, current: Tensor, key: Tensor, pyramid: bool = False, with_scale: bool = True) -> FlowOutput:
        """As ``FlowNetBase.forward``: half-resolution frames -> flow and scale at stride 16 of the full image."""
        if current.shape != key.shape:
            raise ValueError(f"current {tuple(current.shape)} and key {tuple(key.shape)} differ in shape")
        n = current.shape[0]
        both = self._features(torch.cat([current, key], dim=0))  # one pass for both frames
        flow: Tensor | None = None  # in pixels of the level being refined
        hidden: Tensor | None = None
        levels: dict[int, Tensor] = {}
        for k in reversed(range(len(both))):  # coarse to fine
            mine, theirs = both[k][:n], both[k][n:]  # (N, C_k, h_k, w_k)
            if flow is None:
                flow = mine.new_zeros(n, 2, *mine.shape[-2:])
                warped = theirs
            else:
                flow = _upsample_flow(flow, mine)
                warped = warp(theirs, flow)
            cost = F.leaky_relu(cosine_correlation(mine, warped, self.MAX_DISPLACEMENT), 0.1)
            hidden = self.estimators[k](torch.cat([cost, mine, flow], dim=1))  # (N, 32, h_k, w_k)
            flow = flow + self.residual[k](hidden)
            if pyramid:
                levels[self.ESTIMATED[k]] = flow * self.ESTIMATED[k]  # full-image pixels
        assert flow is not None and hidden is not None
        flow16 = F.avg_pool2d(flow, 2, ceil_mode=True) / 2.0  # stride-8 pixels -> stride-16 feature pixels
        pooled = F.avg_pool2d(hidden, 2, ceil_mode=True)  # (N, 32, H/16, W/16)
        heads_in = torch.cat([pooled, flow16 / FLOW_SCALE], dim=1)  # (N, 34, H/16, W/16)
        out = flow16 + self.predict_flow(heads_in) * FLOW_SCALE  # stride-16 feature pixels
        scale = self.scale_conv(heads_in) + 1.0 if with_scale else None
        return FlowOutput(out, scale, levels)


def build_flow_net(name: str, scale_channels: int = 1024) -> FlowNetBase:
    """F by its name: ``flownet``, ``flownet_half``, ``flownet_inception`` or ``pwcnet_lite``."""
    check_choice("flow network", name, FLOW_NETS)
    net: FlowNetBase
    if name == "flownet":
        net = FlowNetSimple(1.0, scale_channels)
    elif name == "flownet_half":
        net = FlowNetSimple(0.5, scale_channels)
    elif name == "flownet_inception":
        net = FlowNetInception(scale_channels)
    elif name == "pwcnet_lite":
        net = PWCNetLite(scale_channels)
    else:
        raise AssertionError(f"FLOW_NETS names {name!r} but nothing builds it")
    net.name = name
    return net
