"""N_feat: the feature network of DFF, a dilated ResNet with an extra ``feat_conv``.

The network follows the MSRA ResNet-v1 used by the original DFF / FGFA code:
- the stride-2 of a bottleneck's downsampling block sits in its first 1x1 conv (v1), not in the 3x3
  (torchvision's "v1.5");
- res5 keeps stride 1 and every 3x3 conv in it has dilation 2, so features come out at stride 16;
- ``feat_conv`` (3x3, dilation 6, with bias and ReLU) maps the res5 output to ``out_channels``
  (1024 in the papers; smaller for the small models this project trains on the CPU). It is
  ``featflow.modeling.gemm_conv``'s layer: in bfloat16 inference it runs as one GEMM, 4-8x faster than oneDNN's
  dilated kernel on the CPU.

The layers themselves are torchvision's, built with random weights. ``layout="torchvision"`` keeps torchvision's
own stride placement in the bottlenecks (the 3x3, "v1.5") so that its ImageNet weights load exactly
(``load_torchvision_resnet``): the stem and res2-res4 then compute what torchvision's model computes, and res5 the
same weights dilated. For ResNet-18 / 34 (basic blocks) both layouts are the same network.
"""

from __future__ import annotations

from typing import Literal

import torch
import torchvision
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.ops.misc import FrozenBatchNorm2d

from featflow.errors import FeatflowError
from featflow.modeling import gemm_conv
from featflow.registry import FEATURE_LAYOUTS, FEATURE_NETS, NORMS, check_choice

NormKind = Literal["batch", "frozen"]  # one of NORMS
Layout = Literal["msra", "torchvision"]  # one of FEATURE_LAYOUTS

#: Stride of the feature map relative to the input image.
FEATURE_STRIDE = 16


def _move_stride_to_1x1(resnet: ResNet) -> None:
    """Turn torchvision's ResNet-v1.5 bottlenecks into v1 ones (stride on the first 1x1 conv)."""
    for layer in (resnet.layer2, resnet.layer3, resnet.layer4):
        block = layer[0]
        if isinstance(block, Bottleneck) and block.conv2.stride == (2, 2):
            block.conv1.stride = (2, 2)
            block.conv2.stride = (1, 1)


def _dilate_res5(resnet: ResNet) -> None:
    """res5 at stride 1 with dilation 2 in all its 3x3 convs (the first block's included)."""
    first = resnet.layer4[0]
    for conv in (first.conv1, first.conv2):
        conv.stride = (1, 1)
    if first.downsample is not None:
        first.downsample[0].stride = (1, 1)
    for block in resnet.layer4:
        for conv in block.modules():
            if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3):
                conv.dilation = (2, 2)
                conv.padding = (2, 2)


class FeatureNet(nn.Module):
    """N_feat: image (N, 3, H, W) -> features (N, out_channels, ceil(H/16), ceil(W/16)).

    Input: RGB in [0, 255] with the per-channel mean subtracted (see ``featflow.modeling.preprocess``).
    ``norm="frozen"`` uses fixed BatchNorm statistics as the papers do with ImageNet weights;
    ``norm="batch"`` trains them, which models trained from scratch here need.
    """

    def __init__(self, arch: str = "resnet101", out_channels: int = 1024, norm: NormKind = "batch",
                 layout: Layout = "msra") -> None:
        super().__init__()
        check_choice("feature network", arch, FEATURE_NETS)
        if out_channels < 1:
            raise ValueError(f"out_channels must be positive, got {out_channels}")
        check_choice("normalisation", norm, NORMS, key="norm")
        check_choice("ResNet layout", layout, FEATURE_LAYOUTS, key="layout")
        norm_layer = nn.BatchNorm2d if norm == "batch" else FrozenBatchNorm2d
        resnet: ResNet = getattr(torchvision.models, arch)(weights=None, norm_layer=norm_layer)
        if layout == "msra":
            _move_stride_to_1x1(resnet)
        _dilate_res5(resnet)
        self.arch = arch
        self.norm = norm
        self.layout = layout
        self.stem_frozen = False  # freeze_stem
        self.folded = False  # fold_batchnorm
        self.out_channels = out_channels
        self.stride = FEATURE_STRIDE
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.res2 = resnet.layer1
        self.res3 = resnet.layer2
        self.res4 = resnet.layer3
        self.res5 = resnet.layer4
        self.feat_conv = gemm_conv.Conv2d(resnet.fc.in_features, out_channels, kernel_size=3, padding=6, dilation=6)
        nn.init.normal_(self.feat_conv.weight, std=0.01)
        nn.init.zeros_(self.feat_conv.bias)

    def stem(self) -> tuple[nn.Module, ...]:
        """conv1 (with its BatchNorm) and res2: what the papers keep fixed at its ImageNet weights in training."""
        return self.conv1, self.bn1, self.res2

    def freeze_stem(self) -> None:
        """Fix the stem (``stem``): no gradients, and its BatchNorm statistics stay as loaded (``train`` keeps it in
        inference mode)."""
        for module in self.stem():
            module.requires_grad_(False)
        self.stem_frozen = True

    def _conv_norm_pairs(self) -> list[tuple[nn.Module, str, str]]:
        """(parent, conv name, BatchNorm name) for every convolution followed by a BatchNorm."""
        pairs = [(self, "conv1", "bn1")]
        for stage in (self.res2, self.res3, self.res4, self.res5):
            for block in stage:
                pairs += [(block, f"conv{k}", f"bn{k}") for k in (1, 2, 3) if hasattr(block, f"conv{k}")]
                if block.downsample is not None:  # Sequential(conv 1x1, BatchNorm)
                    pairs.append((block.downsample, "0", "1"))
        return pairs

    def fold_batchnorm(self) -> None:
        """For inference: fold each BatchNorm (its running or frozen statistics) into the convolution before it and
        drop it. The same outputs up to float rounding, without one pass over every activation (ResNet-101 at
        512x1024 spent 8% of its time in normalisation, ``reports/speed.md``). Training afterwards raises: the
        statistics are gone."""
        if self.training:
            raise RuntimeError("fold_batchnorm is for inference: call eval() first")
        if self.folded:
            return
        for parent, conv_name, norm_name in self._conv_norm_pairs():
            conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
            setattr(parent, conv_name, fuse_conv_bn_eval(conv, norm))
            setattr(parent, norm_name, nn.Identity())
        self.folded = True

    def train(self, mode: bool = True) -> "FeatureNet":
        if mode and self.folded:
            raise RuntimeError("this N_feat's BatchNorm was folded into its convolutions for inference "
                               "(fold_batchnorm): it cannot be trained; load the checkpoint again")
        super().train(mode)
        if self.stem_frozen:
            for module in self.stem():
                module.train(False)
        return self

    def forward(self, image: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(image))))  # (N, 64, H/4, W/4)
        x = self.res2(x)  # stride 4
        x = self.res3(x)  # stride 8
        x = self.res4(x)  # stride 16
        x = self.res5(x)  # stride 16, dilated
        return torch.relu(self.feat_conv(x))  # (N, out_channels, ceil(H/16), ceil(W/16))


def feature_map_size(height: int, width: int) -> tuple[int, int]:
    """Spatial size of N_feat's output for an input of ``height`` x ``width``."""
    return -(-height // FEATURE_STRIDE), -(-width // FEATURE_STRIDE)


#: torchvision ResNet module names -> N_feat's (the classifier ``fc`` has no counterpart and is dropped).
_TORCHVISION_NAMES = {"layer1.": "res2.", "layer2.": "res3.", "layer3.": "res4.", "layer4.": "res5."}


def load_torchvision_resnet(net: FeatureNet, state: dict[str, Tensor], source: str = "the state dict") -> None:
    """Load a torchvision ResNet state dict (e.g. its ImageNet weights) into N_feat's stem and res2-res5;
    ``feat_conv`` keeps its initialisation. The layout must be torchvision's (``layout="torchvision"``) where
    the two differ (bottleneck ResNets), so that every weight sits where it was trained. A key that is missing or
    does not fit raises ``FeatflowError`` naming it."""
    if net.layout != "torchvision" and net.arch not in ("resnet18", "resnet34"):
        raise FeatflowError(f"{source}: torchvision's {net.arch} weights need N_feat's torchvision layout "
                            "(stride in the 3x3 convs)")
    mapped: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked") and isinstance(net.bn1, FrozenBatchNorm2d):
            continue
        for old, new in _TORCHVISION_NAMES.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        mapped[key] = value
    own = {k: v for k, v in net.state_dict().items() if not k.startswith("feat_conv.")}
    # older torchvision files (ImageNet V1 weights) have no BatchNorm counters: those may be missing
    missing = sorted(k for k in set(own) - set(mapped) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(mapped) - set(own))
    if missing or unexpected:
        key = (missing or unexpected)[0]
        raise FeatflowError(f"{source} is not a torchvision {net.arch} state dict: "
                            f"{'missing' if missing else 'unexpected'} key {key!r}"
                            f" ({len(missing)} missing, {len(unexpected)} unexpected)")
    for key, value in mapped.items():
        if value.shape != own[key].shape:
            raise FeatflowError(f"{source}: {key!r} has shape {tuple(value.shape)}, a {net.arch} N_feat needs "
                                f"{tuple(own[key].shape)}")
    net.load_state_dict(mapped, strict=False)
