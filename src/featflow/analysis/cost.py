"""The talk's cost analysis: multiply-adds of N_feat and F, and the per-frame cost ratio r.

r = (O(F) + O(W) + O(N_task)) / (O(N_feat) + O(N_task)) ~= O(F) / O(N_feat); the talk tabulates 1/r.
Counting rule (as the 2017 papers): multiply-accumulates of conv and deconv layers only; a conv
costs output pixels x k^2 x Cin/groups x Cout, a deconv input pixels x k^2 x Cin/groups x Cout.
Networks are run on the ``meta`` device, so counting a ResNet-101 at 600x1000 takes milliseconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from featflow.modeling.feature_net import FeatureNet
from featflow.modeling.flow_net import build_flow_net

#: The seed talk's 1/r table (N_feat x F at 600x1000).
PAPER_INVERSE_R: dict[tuple[str, str], float] = {
    ("resnet50", "flownet"): 9.20,
    ("resnet50", "flownet_half"): 33.56,
    ("resnet50", "flownet_inception"): 68.97,
    ("resnet101", "flownet"): 12.71,
    ("resnet101", "flownet_half"): 46.30,
    ("resnet101", "flownet_inception"): 95.24,
}


class MultiplyAddCounter:
    """Within ``with MultiplyAddCounter(model) as counter:``, ``counter.total`` adds up the multiply-adds of every
    conv and deconv layer of ``model`` that runs, whatever calls it (a whole forward pass, or one stage of one)."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.total = model, 0
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        assert isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))
        kh, kw = module.kernel_size
        per_pixel = kh * kw * module.in_channels // module.groups * module.out_channels
        pixels_of = args[0] if isinstance(module, nn.ConvTranspose2d) else output
        self.total += pixels_of.shape[-2] * pixels_of.shape[-1] * pixels_of.shape[0] * per_pixel

    def __enter__(self) -> "MultiplyAddCounter":
        self._handles = [m.register_forward_hook(self._hook) for m in self.model.modules()
                         if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def count_multiply_adds(model: nn.Module, *inputs: Tensor) -> int:
    """Multiply-adds of the conv and deconv layers that ``model(*inputs)`` runs."""
    with MultiplyAddCounter(model) as counter, torch.no_grad():
        model(*inputs)
    return counter.total


def feature_net_cost(arch: str, height: int = 600, width: int = 1000, out_channels: int = 1024) -> int:
    """Multiply-adds of N_feat (dilated ResNet + feat_conv) on one height x width image."""
    with torch.device("meta"):
        net = FeatureNet(arch, out_channels=out_channels).eval()
        image = torch.empty(1, 3, height, width)
    return count_multiply_adds(net, image)


def flow_net_cost(name: str, height: int = 600, width: int = 1000, scale_channels: int = 1024) -> int:
    """Multiply-adds of F (half-resolution flow, stride-16 heads, scale conv included) for one pair."""
    with torch.device("meta"):
        net = build_flow_net(name, scale_channels).eval()
        frame = torch.empty(1, 3, -(-height // 2), -(-width // 2))  # F's half-resolution input
    return count_multiply_adds(net, frame, frame)


@dataclass(frozen=True)
class CostCell:
    feature_net: str
    flow_net: str
    inverse_r: float  # ours: O(N_feat) / O(F)
    paper: float

    @property
    def relative_error(self) -> float:
        return self.inverse_r / self.paper - 1.0


@dataclass(frozen=True)
class CostTable:
    height: int
    width: int
    multiply_adds: dict[str, int]  # network name -> multiply-adds
    cells: list[CostCell]

    def to_json(self) -> dict:
        return {
            "input": [self.height, self.width],
            "counting": "multiply-adds of conv and deconv layers (a 2017 'FLOP')",
            "multiply_adds": self.multiply_adds,
            "cells": [asdict(c) | {"relative_error": c.relative_error} for c in self.cells],
        }


def cost_table(height: int = 600, width: int = 1000) -> CostTable:
    """The talk's 1/r table, counted on this project's networks."""
    feature_nets = list(dict.fromkeys(f for f, _ in PAPER_INVERSE_R))
    flow_nets = list(dict.fromkeys(f for _, f in PAPER_INVERSE_R))
    macs = {name: feature_net_cost(name, height, width) for name in feature_nets}
    macs |= {name: flow_net_cost(name, height, width) for name in flow_nets}
    cells = [
        CostCell(feat, flow, macs[feat] / macs[flow], PAPER_INVERSE_R[(feat, flow)])
        for (feat, flow) in PAPER_INVERSE_R
    ]
    return CostTable(height, width, macs, cells)


def format_cost_table(table: CostTable) -> str:
    """A plain-text rendering: 1/r (ours vs paper) and each network's multiply-adds."""
    flow_nets = list(dict.fromkeys(c.flow_net for c in table.cells))
    feature_nets = list(dict.fromkeys(c.feature_net for c in table.cells))
    by_key = {(c.feature_net, c.flow_net): c for c in table.cells}
    lines = [f"1/r = O(N_feat) / O(F) at {table.height}x{table.width}, ours (paper)", ""]
    header = "N_feat \\ F".ljust(12) + "".join(f"{name:>22}" for name in flow_nets)
    lines += [header, "-" * len(header)]
    for feat in feature_nets:
        row = "".join(
            f"{by_key[(feat, flow)].inverse_r:>13.2f} ({by_key[(feat, flow)].paper:>6.2f})" for flow in flow_nets
        )
        lines.append(f"{feat:<12}{row}")
    lines += ["", "multiply-adds (conv + deconv):"]
    lines += [f"  {name:<20}{macs / 1e9:>9.2f} G" for name, macs in table.multiply_adds.items()]
    return "\n".join(lines)


def cost_markdown(table: CostTable) -> str:
    """The cost table as a Markdown report section."""
    flow_nets = list(dict.fromkeys(c.flow_net for c in table.cells))
    feature_nets = list(dict.fromkeys(c.feature_net for c in table.cells))
    by_key = {(c.feature_net, c.flow_net): c for c in table.cells}
    lines = [
        "# Cost table: 1/r of DFF",
        "",
        f"Per-frame cost ratio r ~= O(F) / O(N_feat); the talk tabulates 1/r at {table.height}x{table.width}. "
        "Counted on this project's networks (random weights; counting needs no training): multiply-adds of "
        "conv and deconv layers only, N_feat = dilated ResNet-v1 + feat_conv (1024 channels), F = flow net at "
        "half resolution with stride-16 flow and scale heads.",
        "",
        "| N_feat \\ F | " + " | ".join(flow_nets) + " |",
        "|---|" + "---|" * len(flow_nets),
    ]
    for feat in feature_nets:
        cells = [by_key[(feat, flow)] for flow in flow_nets]
        lines.append(f"| {feat} | " + " | ".join(
            f"{c.inverse_r:.2f} (paper {c.paper:.2f}, {100 * c.relative_error:+.2f}%)" for c in cells) + " |")
    lines += ["", "| network | multiply-adds (G) |", "|---|---|"]
    lines += [f"| {name} | {macs / 1e9:.2f} |" for name, macs in table.multiply_adds.items()]
    return "\n".join(lines)
