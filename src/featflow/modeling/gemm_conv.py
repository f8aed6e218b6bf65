"""Convolutions computed as one matrix product where oneDNN runs them far from their arithmetic, at inference.

F's coarsest levels hold few positions and many channels: FlowNet's conv6 / conv6_1 and its first deconv work on
maps of 1/64 - 1/128 of the frame (32 positions at 512x1024) with up to 1024 channels. oneDNN ran them at 8-10
GMAC/s on a 2-core AMD EPYC, against about 60 for the rest of the network. The same convolution as im2col and one
GEMM (``F.unfold`` / ``F.fold`` around ``torch.matmul``) ran 3-5x faster there (conv 1024 -> 1024 at 4x8: 7 ms
against 28-32; deconv 1024 -> 512 from 4x8: 11 against 34), about equal at 128 positions and slower above, so a
layer switches when it has few positions (``GEMM_MAX_POSITIONS``, batch included) and large weights
(``GEMM_MIN_WEIGHTS``).

In bfloat16 (autocast or bf16 inputs), oneDNN's convolutions with a large dilation run slowly on any map: N_feat's
``feat_conv`` (3x3, dilation 6, 2048 -> 1024 channels) took 355 ms at 32x64 and 763 at 38x63 (600x1000 frames) on 2
cores of an AMX Xeon, half of N_feat's bf16 time, against 80-91 ms as im2col + one bf16 GEMM (in float32 oneDNN's
198-243 ms beat the GEMM's 286-332, so float32 keeps it). Dilation 2 (res5's 3x3 convs) stayed faster in oneDNN. So a
layer with ``GEMM_MIN_DILATION`` and large weights takes the GEMM in bfloat16 whatever its map size.

Same math (the summation order aside), same parameters and state-dict names as ``torch.nn``'s layers. Only
inference switches (no gradient, on the CPU): training keeps torch's own kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Positions (N x output pixels of a convolution, N x input pixels of a transposed one) up to which the GEMM runs.
GEMM_MAX_POSITIONS = 64
#: Weights at least this large (elements; 4 MB in float32): below it the layer is not bound by reading its weights,
#: and im2col costs more than it saves (FlowNet's 2-channel flow predictors).
GEMM_MIN_WEIGHTS = 1 << 20


#: Dilation (both axes) from which a bfloat16 convolution takes the GEMM on any map.
GEMM_MIN_DILATION = 4


def _gemm_dtype(x: Tensor, positions: int, weight: Tensor, dilation: tuple[int, ...]) -> torch.dtype | None:
    """The dtype a layer's GEMM runs in at this call, or None where torch's kernel runs (module docstring)."""
    if x.device.type != "cpu" or torch.is_grad_enabled() or weight.numel() < GEMM_MIN_WEIGHTS:
        return None
    autocast = torch.is_autocast_enabled("cpu")
    bf16 = x.dtype == torch.bfloat16 or (autocast and torch.get_autocast_dtype("cpu") == torch.bfloat16)
    if bf16 and min(dilation) >= GEMM_MIN_DILATION:
        return torch.bfloat16
    if x.dtype == torch.float32 and not autocast and positions <= GEMM_MAX_POSITIONS:
        return torch.float32
    return None


def _kernel_matrix(weight: Tensor, rows: int) -> tuple[Tensor, bool] | None:
    """``weight`` (A, B, kh, kw) as a matrix without a copy: (A, B*kh*kw) for a contiguous weight (False), or
    (A, kh*kw*B) for a channels-last one (True, the columns ordered kernel position first); None otherwise."""
    if weight.is_contiguous():
        return weight.view(rows, -1), False
    if weight.is_contiguous(memory_format=torch.channels_last):
        return weight.permute(0, 2, 3, 1).reshape(rows, -1), True  # a view: the permuted tensor is contiguous
    return None


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` that computes small maps at inference as im2col + one GEMM (module docstring)."""

    def forward(self, x: Tensor) -> Tensor:
        n, cin, h, w = x.shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        if self.groups != 1 or self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super().forward(x)
        ph, pw = self.padding
        oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        dtype = _gemm_dtype(x, n * oh * ow, self.weight, self.dilation)
        matrix = _kernel_matrix(self.weight, self.out_channels) if dtype is not None else None
        if matrix is None:
            return super().forward(x)
        weight, position_first = matrix[0].to(dtype), matrix[1]
        x = x.to(dtype)  # autocast's cast, done before im2col so the columns are written in bf16 at once
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # (N, cin*kh*kw, oh*ow)
        if position_first:  # the columns as the channels-last weight orders them: (kh*kw, cin)
            cols = cols.view(n, cin, kh * kw, -1).transpose(1, 2).reshape(n, kh * kw * cin, -1)
        out = weight @ cols  # (N, cout, oh*ow)
        if self.bias is not None:
            out += self.bias[:, None]  # in place: a bf16 output stays bf16, as autocast's convolution gives
        return out.view(n, self.out_channels, oh, ow)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` that computes small maps at inference as one GEMM + col2im (module docstring)."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        n, cin, h, w = x.shape
        if (output_size is not None or self.groups != 1 or any(self.output_padding)
                or (dtype := _gemm_dtype(x, n * h * w, self.weight, self.dilation)) is None):
            return super().forward(x, output_size)
        matrix = _kernel_matrix(self.weight, cin)  # weight (cin, cout, kh, kw)
        if matrix is None:
            return super().forward(x, output_size)
        weight, position_first = matrix[0].to(dtype), matrix[1]
        x = x.to(dtype)
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        oh, ow = (h - 1) * sh - 2 * ph + dh * (kh - 1) + 1, (w - 1) * sw - 2 * pw + dw * (kw - 1) + 1
        cols = weight.t() @ x.reshape(n, cin, h * w)  # (N, cout*kh*kw or kh*kw*cout, h*w)
        if position_first:  # to the (cout, kh*kw) order col2im reads
            cols = cols.view(n, kh * kw, self.out_channels, -1).transpose(1, 2).reshape(n, -1, h * w)
        out = F.fold(cols, (oh, ow), self.kernel_size, self.dilation, self.padding, self.stride)  # (N, cout, oh, ow)
        if self.bias is not None:
            out += self.bias.view(1, -1, 1, 1)
        return out
