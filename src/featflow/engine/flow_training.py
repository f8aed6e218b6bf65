"""Flow pre-training (DFF's FlyingChairs step): a flow network learns to estimate motion from
(current, key) pairs with known flow, before DFF trains it end to end with the task loss only.

Loss (``loss.kind``):
- ``epe``: multi-scale end-point error. Every decoder level (strides 8..128, in image pixels) and the pooled
  stride-16 output that DFF warps with are compared with the ground truth averaged down to their resolution. Data:
  synthetic pairs, optionally with ``data.real_share`` of FlyingChairs-style pairs on real photographs
  (``featflow.data.real_textures``), or a FlyingChairs folder.
- ``unsupervised``: fine-tuning on a user's own videos (``data.source``: a folder of videos; ``featflow train
  flow --unsupervised DIR``), which have no flow ground truth: the key frame warped along the flow must look like
  the current frame (a robust photometric error), the flow must be smooth where the image is, and pixels that fail
  the forward-backward check (occluded in the other frame, or leaving it) are left out. It starts from trained flow
  weights (``init``).
Evaluation: EPE at full resolution on held-out synthetic pairs, for the stride-8 prediction (what ``featflow flow``
writes) and for the stride-16 output DFF uses.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from featflow.data.flow_pairs import FlyingChairsPairs, SyntheticFlowPairs
from featflow.data.mixing import Mixed
from featflow.data.real_textures import RealTexturePairs
from featflow.data.synthetic import Degradations, SynthConfig
from featflow.data.video_pairs import VideoFramePairs
from featflow.engine.checkpoint import load_flow_net, save_flow_net, shipped_flow_weights
from featflow.engine.config import check_paths, to_dict
from featflow.engine.flow_inference import FlowNetEstimator
from featflow.engine.trainer import OptimConfig, TrainResult, TrainTask, train
from featflow.errors import FeatflowError
from featflow.evaluation.flow_metrics import FlowPair, evaluate_flow, held_out_pairs
from featflow.modeling.flow_net import FLOW_STRIDE, FlowNetBase, FlowOutput, build_flow_net
from featflow.modeling.preprocess import flow_input
from featflow.modeling.warp import warp
from featflow.registry import FLOW_LOSSES, FLOW_NETS, check_choice

#: Weight of each decoder level's EPE (image-pixel units at every level).
LEVEL_WEIGHTS: dict[int, float] = {8: 1.0, 16: 0.5, 32: 0.25, 64: 0.125, 128: 0.0625}
#: Weight of the pooled stride-16 output, the flow DFF uses.
DFF_OUTPUT_WEIGHT = 1.0


@dataclass(frozen=True)
class FlowDataConfig:
    # "synthetic" (generated on the fly), a FlyingChairs folder, or (loss.kind unsupervised) a folder of videos
    source: str = "synthetic"
    size: tuple[int, int] = (256, 512)  # synthetic frames (and a folder of videos' frames, resized), H x W
    degradations: str = "default"
    max_gap: int = 9  # key-frame distance 1..max_gap, either direction
    pairs_per_video: int = 4
    seed: int = 0
    real_share: float = 0.0  # synthetic source: this share of the pairs on real photographs (FlyingChairs style)
    # real-texture pairs: a cut-out's translation bound in pixels at `size` (the background's is half of it)
    real_max_motion: float = 24.0
    max_frames: int = 300  # a folder of videos: the frames of each kept in memory

    def __post_init__(self) -> None:
        if not 0.0 <= self.real_share < 1.0:
            raise FeatflowError(f"data.real_share: the share of real-texture pairs must be in [0, 1), "
                                f"got {self.real_share}")
        if self.real_max_motion < 0:
            raise FeatflowError(f"data.real_max_motion: a translation bound in pixels, must not be negative, "
                                f"got {self.real_max_motion}")
        if self.real_share and self.source != "synthetic":
            raise FeatflowError("data.real_share: real-texture pairs are mixed into the synthetic source only")


@dataclass(frozen=True)
class FlowLossConfig:
    kind: str = "epe"  # "epe" (flow ground truth) or "unsupervised" (photometric + smoothness, for real videos)
    smoothness: float = 0.5  # unsupervised: weight of the edge-aware smoothness term
    edge_weight: float = 10.0  # unsupervised: how fast smoothness relaxes across image edges
    occlusion: bool = True  # unsupervised: leave out pixels failing the forward-backward check

    def __post_init__(self) -> None:
        check_choice("flow loss", self.kind, FLOW_LOSSES, key="loss.kind")
        if self.smoothness < 0 or self.edge_weight < 0:
            raise FeatflowError("loss.smoothness and loss.edge_weight must be non-negative")


@dataclass(frozen=True)
class FlowEvalConfig:
    pairs: int = 64  # held-out validation pairs
    every: int = 1000  # iterations between evaluations (and checkpoints)


@dataclass(frozen=True)
class FlowTrainConfig:
    model: str = "flownet_inception"
    init: str | None = None  # flow weights to start from: "shipped", a file, or run:NAME (None: from scratch)
    data: FlowDataConfig = field(default_factory=FlowDataConfig)
    loss: FlowLossConfig = field(default_factory=FlowLossConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    eval: FlowEvalConfig = field(default_factory=FlowEvalConfig)
    output: str = "runs/flow"

    def __post_init__(self) -> None:
        check_choice("flow network", self.model, FLOW_NETS, key="model")
        if self.eval.every < 1 or self.eval.pairs < 1:
            raise FeatflowError("eval.every and eval.pairs must be positive")
        Degradations.parse(self.data.degradations)
        if self.loss.kind == "unsupervised" and self.data.source == "synthetic":
            raise FeatflowError("loss.kind unsupervised trains on a folder of videos: set data.source to it "
                                "(featflow train flow --unsupervised DIR)")


def multiscale_epe(output: FlowOutput, target: Tensor) -> Tensor:
    """Weighted EPE of every pyramid level and of the stride-16 output; ``target`` (N, 2, H, W) pixels."""
    loss = DFF_OUTPUT_WEIGHT * _epe(output.flow * FLOW_STRIDE, F.avg_pool2d(target, FLOW_STRIDE, ceil_mode=True))
    for stride, pred in output.pyramid.items():
        loss = loss + LEVEL_WEIGHTS[stride] * _epe(pred, F.avg_pool2d(target, stride, ceil_mode=True))
    return loss


def _epe(pred: Tensor, target: Tensor) -> Tensor:
    return torch.linalg.vector_norm(pred - target, dim=1).mean()


def _synth_config(cfg: FlowDataConfig) -> SynthConfig:
    return SynthConfig(height=cfg.size[0], width=cfg.size[1], degradations=Degradations.parse(cfg.degradations))


def _train_dataset(cfg: FlowTrainConfig, progress: bool = False) -> Dataset:
    samples = cfg.train.iterations * cfg.train.batch_size
    if cfg.loss.kind == "unsupervised":
        return VideoFramePairs(cfg.data.source, samples, cfg.data.size, cfg.data.max_gap, cfg.data.seed,
                               cfg.data.max_frames, progress=progress)
    if cfg.data.source != "synthetic":
        return FlyingChairsPairs(cfg.data.source, "train")
    synthetic = SyntheticFlowPairs(_synth_config(cfg.data), samples, seed=cfg.data.seed, split="train",
                                   max_gap=cfg.data.max_gap, pairs_per_video=cfg.data.pairs_per_video)
    if not cfg.data.real_share:
        return synthetic
    # as many real pairs as the run reads: the first `samples` of the mix hold them at the share
    real = RealTexturePairs(math.ceil(samples * cfg.data.real_share), cfg.data.size, seed=cfg.data.seed,
                            split="train", max_motion=cfg.data.real_max_motion)
    return Mixed(synthetic, real, cfg.data.real_share)


def _charbonnier(x: Tensor, eps: float = 1e-3, alpha: float = 0.45) -> Tensor:
    return (x * x + eps * eps) ** alpha


def _half(images: Tensor) -> Tensor:
    """(N, 3, H, W) RGB [0, 255] -> (N, 3, ceil(H/2), ceil(W/2)) in [0, 1]: the resolution the loss works at."""
    return F.avg_pool2d(images, 2, ceil_mode=True) / 255.0


def _to_half(flow: Tensor, stride: int, size: tuple[int, int]) -> Tensor:
    """A stride-``stride`` flow in image pixels -> (N, 2, *size) at half resolution, in half-resolution pixels."""
    up = F.interpolate(flow, scale_factor=stride // 2, mode="bilinear", align_corners=False)
    return up[..., : size[0], : size[1]] / 2


def _non_occluded(forward: Tensor, backward: Tensor) -> Tensor:
    """(N, 1, h, w) 1 where a pixel passes the forward-backward check (UnFlow's: the backward flow at the point the
    forward flow reaches brings it back, within 1% of the flows' magnitudes + 0.5 px) and stays inside the frame."""
    back = warp(backward, forward)
    mismatch = (forward + back).square().sum(1, keepdim=True)
    bound = 0.01 * (forward.square().sum(1, keepdim=True) + back.square().sum(1, keepdim=True)) + 0.5
    h, w = forward.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, device=forward.device), torch.arange(w, device=forward.device),
                            indexing="ij")
    x, y = xs + forward[:, 0:1], ys + forward[:, 1:2]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return ((mismatch < bound) & inside).float()


def _smoothness(flow: Tensor, image: Tensor, edge_weight: float) -> Tensor:
    """Edge-aware first-order smoothness: |flow gradient| weighted by exp(-edge_weight |image gradient|)."""
    dx = (flow[..., :, 1:] - flow[..., :, :-1]).abs().sum(1, keepdim=True)
    dy = (flow[..., 1:, :] - flow[..., :-1, :]).abs().sum(1, keepdim=True)
    ix = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    iy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    return (dx * torch.exp(-edge_weight * ix)).mean() + (dy * torch.exp(-edge_weight * iy)).mean()


def unsupervised_loss(net: FlowNetBase, current: Tensor, key: Tensor, cfg: FlowLossConfig) -> Tensor:
    """The photometric loss of frame pairs without flow ground truth: (N, 3, H, W) RGB [0, 255] each -> a scalar.

    Both directions are estimated; each direction's finest flow (stride 8), at half resolution, warps the other
    frame onto its own, and the robust (Charbonnier) colour difference over the pixels that pass the
    forward-backward check is the data term; edge-aware smoothness regularises it. The stride-16 output DFF warps
    with comes from the same prediction head on the pooled stride-8 features, so it trains with it."""
    images = (_half(current), _half(key))
    size = tuple(images[0].shape[-2:])
    out_fw = net(flow_input(current), flow_input(key), pyramid=True)
    out_bw = net(flow_input(key), flow_input(current), pyramid=True)
    flows = (_to_half(out_fw.pyramid[8], 8, size), _to_half(out_bw.pyramid[8], 8, size))
    if cfg.occlusion:
        masks = (_non_occluded(flows[0], flows[1]).detach(), _non_occluded(flows[1], flows[0]).detach())
    else:
        masks = (torch.ones_like(flows[0][:, :1]),) * 2
    loss = current.new_zeros(())
    for (target, source), flow, mask in zip((images, images[::-1]), flows, masks):
        difference = _charbonnier(target - warp(source, flow)).mean(1, keepdim=True)
        loss = loss + (difference * mask).sum() / mask.sum().clamp_min(1.0)
        loss = loss + cfg.smoothness * _smoothness(flow, target, cfg.edge_weight)
    return loss


def _evaluate(net: nn.Module, pairs: list[FlowPair]) -> dict[str, float]:
    net.eval()
    return {"val_epe": evaluate_flow(FlowNetEstimator(net, stride=8), pairs).epe,
            "val_epe_dff": evaluate_flow(FlowNetEstimator(net, stride=16), pairs).epe}


def _epe_loss(net: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    return multiscale_epe(net(flow_input(batch["current"]), flow_input(batch["key"]), pyramid=True), batch["flow"])


def _initial_net(cfg: FlowTrainConfig) -> FlowNetBase:
    """F as training starts: fresh, or the ``init`` weights (which must be the same network)."""
    if cfg.init is None:
        return build_flow_net(cfg.model)
    net, meta = load_flow_net(shipped_flow_weights(cfg.model) if cfg.init == "shipped" else cfg.init)
    if meta["featflow.model"] != cfg.model:
        raise FeatflowError(f"init: {cfg.init} holds {meta['featflow.model']}, the config trains {cfg.model}")
    net.name = cfg.model
    return net


def train_flow(cfg: FlowTrainConfig, out: Path | None = None, resume: bool = False,
               progress: bool = True) -> TrainResult:
    """Train ``cfg.model`` on flow pairs; checkpoints and metrics go to ``out`` (default ``cfg.output``)."""
    check_paths(cfg, ("data.source", "init"))
    torch.manual_seed(cfg.data.seed)
    net = _initial_net(cfg)
    dataset = _train_dataset(cfg, progress)
    if cfg.loss.kind == "unsupervised":
        loss = lambda model, batch: unsupervised_loss(model, batch["current"], batch["key"], cfg.loss)  # noqa: E731
    else:
        loss = _epe_loss
    val_pairs = held_out_pairs(_synth_config(cfg.data), cfg.eval.pairs, seed=cfg.data.seed, split="val",
                               max_gap=cfg.data.max_gap)
    config = to_dict(cfg)

    def save(path: Path, model: nn.Module, iteration: int) -> None:
        save_flow_net(path, model, cfg.model,
                      {"iterations": str(iteration), "config": json.dumps(config, sort_keys=True)})

    def load(path: Path, model: nn.Module) -> None:
        model.load_state_dict(load_flow_net(path)[0].state_dict())

    task = TrainTask(name=cfg.model, model=net, dataset=dataset, loss=loss,
                     evaluate=lambda model: _evaluate(model, val_pairs), save_weights=save, load_weights=load,
                     shuffle=cfg.data.source != "synthetic", seed=cfg.data.seed, config=config,
                     find_unused_parameters=True)  # the EPE loss leaves F's scale head (DFF's, trained later) unused
    return train(task, cfg.train, Path(out or cfg.output), cfg.eval.every, resume=resume, progress=progress)
