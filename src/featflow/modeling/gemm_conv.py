"""F's convolutions, computed as one matrix product on small maps at inference.

F's coarsest levels hold few positions and many channels: FlowNet's conv6 / conv6_1 and its first deconv work on
maps of 1/64 - 1/128 of the frame (32 positions at 512x1024) with up to 1024 channels. oneDNN ran them at 8-10
GMAC/s on a 2-core AMD EPYC, against about 60 for the rest of the network. The same convolution as im2col and one
GEMM (``F.unfold`` / ``F.fold`` around ``torch.matmul``) ran 3-5x faster there (conv 1024 -> 1024 at 4x8: 7 ms
against 28-32; deconv 1024 -> 512 from 4x8: 11 against 34), about equal at 128 positions and slower above, so a
layer switches when it has few positions (``GEMM_MAX_POSITIONS``, batch included) and large weights
(``GEMM_MIN_WEIGHTS``).

Same math (the summation order aside), same parameters and state-dict names as ``torch.nn``'s layers. Only
inference switches (no gradient, float32 on the CPU): training and autocast keep torch's own kernels.
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


def _gemm_eligible(x: Tensor, positions: int, weight: Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype == torch.float32 and positions <= GEMM_MAX_POSITIONS
            and weight.numel() >= GEMM_MIN_WEIGHTS and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu"))


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
        matrix = _kernel_matrix(self.weight, self.out_channels) if _gemm_eligible(x, n * oh * ow, self.weight) else None
        if matrix is None:
            return super().forward(x)
        weight, position_first = matrix
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # (N, cin*kh*kw, oh*ow)
        if position_first:  # the columns as the channels-last weight orders them: (kh*kw, cin)
            cols = cols.view(n, cin, kh * kw, -1).transpose(1, 2).reshape(n, kh * kw * cin, -1)
        out = weight @ cols  # (N, cout, oh*ow)
        if self.bias is not None:
            out += self.bias[:, None]
        return out.view(n, self.out_channels, oh, ow)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` that computes small maps at inference as one GEMM + col2im (module docstring)."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        n, cin, h, w = x.shape
        if (output_size is not None or self.groups != 1 or any(self.output_padding)
                or not _gemm_eligible(x, n * h * w, self.weight)):
            return super().forward(x, output_size)
        matrix = _kernel_matrix(self.weight, cin)  # weight (cin, cout, kh, kw)
        if matrix is None:
            return super().forward(x, output_size)
        weight, position_first = matrix
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        oh, ow = (h - 1) * sh - 2 * ph + dh * (kh - 1) + 1, (w - 1) * sw - 2 * pw + dw * (kw - 1) + 1
        cols = weight.t() @ x.reshape(n, cin, h * w)  # (N, cout*kh*kw or kh*kw*cout, h*w)
        if position_first:  # to the (cout, kh*kw) order col2im reads
            cols = cols.view(n, kh * kw, self.out_channels, -1).transpose(1, 2).reshape(n, -1, h * w)
        out = F.fold(cols, (oh, ow), self.kernel_size, self.dilation, self.padding, self.stride)  # (N, cout, oh, ow)
        if self.bias is not None:
            out += self.bias.view(1, -1, 1, 1)
        return out
