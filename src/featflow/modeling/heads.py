"""N_task: the task networks that run on (real, propagated or aggregated) features.

Every head takes the features of frames of one size and answers for each frame: ``forward(features, size)`` is
what training differentiates (a segmenter's logits; a detector's losses when given targets), ``predict(features,
size)`` the answer as streams give it out (a label map; detections). A video model holds one head
(``featflow.methods.video_model.VideoModel``), so every way of getting features serves every task.
"""

from __future__ import annotations

from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from featflow.modeling.feature_net import FEATURE_STRIDE
from featflow.modeling.rfcn import RFCNConfig, RFCNHead
from featflow.modeling.rpn import RPNConfig, build_rpn
from featflow.structures import Detections

#: Training targets of one frame: {"boxes": (n, 4) float32 in image pixels, "labels": (n,) int64 1..C}.
Target = dict[str, Tensor]


#: The share of (source row, column) pairs whose winner changes to the next row above which ``upsampled_argmax``
#: upsamples every class instead: mixing that many pixels one by one costs more (on a 2-core AMD EPYC at 512x1024
#: and 19 classes: 22 ms at a share of 0.15, 149 at 0.95, against 53-58 for upsampling every class).
MAX_SPLIT_SHARE = 0.25


def _source_rows(out: int, inp: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """torch's bilinear source rows (``align_corners=False``) of each of ``out`` rows upsampled from ``inp``: the
    upper row, the lower one (the same at the bottom edge) and the lower one's weight, computed as torch does."""
    scale = torch.tensor(inp / out, dtype=torch.float32, device=device)
    src = ((torch.arange(out, dtype=torch.float32, device=device) + 0.5) * scale - 0.5).clamp_(min=0)
    upper = src.long()
    lower = torch.where(upper < inp - 1, upper + 1, upper)
    return upper, lower, (src - upper).clamp_(0, 1)


def _upsample_then_argmax(scores: Tensor, size: tuple[int, int]) -> Tensor:
    """Every class upsampled, then the argmax. Channels-last, so that the argmax reads each pixel's scores from
    contiguous memory instead of striding across K planes (an informal one-thread check at 512x1024: 0.3 s against
    1.7 s); torch.compile fuses the two into one pass (``SegmentationHead.compile_predict``)."""
    up = F.interpolate(scores.contiguous(memory_format=torch.channels_last), size=size, mode="bilinear",
                       align_corners=False)
    return up.argmax(1).byte()


def upsampled_argmax(scores: Tensor, size: tuple[int, int]) -> Tensor:
    """The class of each pixel of ``scores`` (N, K, h, w) upsampled bilinearly to ``size`` (H, W) >= (h, w):
    ``F.interpolate(scores, size, mode="bilinear").argmax(1)`` as uint8, without upsampling every class.

    Bilinear upsampling is separable: a width pass gives (N, K, h, W), and each output row is a convex combination
    of two of its rows. Where those two rows' score vectors have the same winner, the combination has it too (it
    beats every other class in both, so in any mix of them): the label is read off the width pass. Only the
    pixels whose two source rows disagree are interpolated, all classes, with torch's weights. At 512x1024 from
    32x64 with 19 classes that skips the (N, 19, 512, 1024) scores that the plain path writes and reads back: 22 ms
    against 53 where a sixth of the rows disagree. Scores like noise (``MAX_SPLIT_SHARE``) take the plain path."""
    n, _, h, w = scores.shape
    height, width = size
    if height < h or width < w:  # downsampling: no bands of rows to share a winner
        return _upsample_then_argmax(scores, size)
    wide = F.interpolate(scores, size=(h, width), mode="bilinear", align_corners=False)  # (N, K, h, W)
    wide = wide.permute(0, 2, 3, 1).contiguous()  # (N, h, W, K): each pixel's scores together
    winner = wide.argmax(-1)  # (N, h, W)
    below = torch.clamp(torch.arange(1, h + 1, device=scores.device), max=h - 1)
    split = winner != winner[:, below]  # (N, h, W): a source row and the next disagree
    if split.float().mean() > MAX_SPLIT_SHARE:  # noise-like scores (random weights): most pixels would be mixed
        return _upsample_then_argmax(scores, size)
    upper, _, weight = _source_rows(height, h, scores.device)  # (H,) each
    labels = winner[:, upper].byte()  # (N, H, W): right wherever the two source rows agree
    n_idx, row, col = split.nonzero(as_tuple=True)  # (Q,)
    if len(n_idx):
        # the output rows whose upper source row is r (a band), padded with the band's last row (written twice)
        counts = torch.bincount(upper, minlength=h)
        starts = torch.cumsum(counts, 0) - counts
        offsets = torch.minimum(torch.arange(int(counts.max()), device=scores.device)[None], counts[:, None] - 1)
        rows = (starts[:, None] + offsets.clamp(min=0))[row]  # (Q, R)
        top, bottom = wide[n_idx, row, col], wide[n_idx, below[row], col]  # (Q, K) each
        lower_weight = weight[rows][:, :, None]  # (Q, R, 1)
        mixed = (1 - lower_weight) * top[:, None] + lower_weight * bottom[:, None]  # (Q, R, K)
        labels[n_idx[:, None], rows, col[:, None]] = mixed.argmax(-1).byte()
    return labels


class SegmentationHead(nn.Module):
    """DeepLab-style head: a 1x1 conv from the features to per-class scores, upsampled bilinearly to
    the input size. (N, C_feat, h, w) -> (N, num_classes, H, W) logits (softmax is left to the loss)."""

    task: ClassVar[str] = "segmentation"

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"segmentation needs at least 2 classes, got {num_classes}")
        self.num_classes = num_classes
        self.classifier = nn.Conv2d(in_channels, num_classes, kernel_size=1)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)
        self._compiled_labels: Callable[[Tensor, tuple[int, int]], Tensor] | None = None  # compile_predict

    def forward(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        scores = self.classifier(features)  # (N, classes, h, w)
        return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)

    def predict(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        """Features (N, C, h, w) -> (N, H, W) uint8 class ids: the argmax of the upsampled scores, computed where the
        classes compete (``upsampled_argmax``), or fused by torch.compile after ``compile_predict``."""
        if self._compiled_labels is not None:
            return self._compiled_labels(features, size)
        return upsampled_argmax(self.classifier(features), size)

    def _all_classes_labels(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        return _upsample_then_argmax(self.classifier(features), size)

    def compile_predict(self) -> None:
        """Run ``predict`` through torch.compile (frozen weights) on the plain path, which inductor fuses into one
        pass that writes the labels, never the (N, classes, H, W) scores (19 classes at 512x1024 on a 2-core AMD
        EPYC: 23 ms a frame whatever the scores, against 53-58 upsampling every class eagerly and 22-149 for
        ``upsampled_argmax``, whose data-dependent shapes do not compile). The first call at each size compiles;
        the weights must not change after."""
        self._compiled_labels = torch.compile(self._all_classes_labels, options={"freezing": True})


class DetectionHead(nn.Module):
    """R-FCN with its RPN. The features are split into two halves along channels: the first feeds the RPN, the
    second R-FCN. (N, C, h, w) features of frames of ``size`` -> each frame's ``Detections``, or the training
    losses given targets."""

    task: ClassVar[str] = "detection"

    def __init__(self, channels: int, num_classes: int, rpn: RPNConfig = RPNConfig(),
                 rfcn: RFCNConfig = RFCNConfig()) -> None:
        super().__init__()
        if channels < 2 or channels % 2:
            raise ValueError(f"detection splits the features in two halves: channels must be even, got {channels}")
        self.channels = channels
        self.anchor_sizes = rpn.anchor_sizes
        self.rpn = build_rpn(channels // 2, rpn)
        self.rfcn = RFCNHead(channels // 2, num_classes, rfcn)

    @property
    def num_classes(self) -> int:
        return self.rfcn.num_classes

    def forward(self, features: Tensor, size: tuple[int, int],
                targets: list[Target] | None = None) -> list[Detections] | dict[str, Tensor]:
        """Detections, or losses given targets. The heads run in float32 even under (bfloat16) autocast: anchors,
        proposals and RoI targets are pixel coordinates that bfloat16 would round to 2 px at 256, and
        torchvision's PS RoI pooling has no bfloat16. At inference R-FCN's two 1x1 convs, the bulk of the head's
        multiply-adds, still run in the autocast dtype (their maps pooled in float32); training keeps them in
        float32, as the shipped models were trained."""
        device = features.device.type
        cast = (torch.get_autocast_dtype(device)
                if torch.is_autocast_enabled(device) and not self.training else None)
        with torch.autocast(device, enabled=False):
            return self._detect(features.float(), tuple(size), targets, cast)

    def predict(self, features: Tensor, size: tuple[int, int]) -> list[Detections]:
        """Features (N, C, h, w) -> each frame's detections."""
        return self(features, size)

    def compile_predict(self) -> None:
        """Nothing: the proposals' and boxes' decoding and NMS work on per-frame lists of varying length, which
        torch.compile would split into many graphs; the head's convolutions are a small share of a frame."""

    def _detect(self, features: Tensor, image_size: tuple[int, int], targets: list[Target] | None,
                cast: torch.dtype | None = None) -> list[Detections] | dict[str, Tensor]:
        n, _, h, w = features.shape
        rpn_features, rfcn_features = features.split(self.channels // 2, dim=1)
        # Anchors are laid out on the padded frame (h * 16, w * 16), so their stride is exactly 16.
        padded = features.new_zeros(1).expand(n, 3, h * FEATURE_STRIDE, w * FEATURE_STRIDE)
        images = ImageList(padded, [image_size] * n)
        if targets is not None and not self.training:
            raise RuntimeError("targets are for training: call model.train() first")
        if targets is not None:
            targets = [trainable(t) for t in targets]
        proposals, rpn_losses = self.rpn(images, {"0": rpn_features}, targets)  # [(R_i, 4)], detached
        if targets is None:
            scores, deltas = self.rfcn(rfcn_features, proposals, cast)
            return self.rfcn.detections(scores, deltas, proposals, image_size)
        rois, labels, box_targets = self.rfcn.targets(proposals, [t["boxes"] for t in targets],
                                                      [t["labels"] for t in targets])
        scores, deltas = self.rfcn(rfcn_features, rois)
        losses = self.rfcn.loss(scores, deltas, labels, box_targets, [len(r) for r in rois])
        return {"rpn_objectness": rpn_losses["loss_objectness"], "rpn_box": rpn_losses["loss_rpn_box_reg"], **losses}


def trainable(target: Target, min_size: float = 1.0) -> Target:
    """The target without degenerate boxes (under ``min_size`` pixels between x1 and x2, or y1 and y2: a sliver
    of an object at the frame's edge), which would give RoIs of zero width and infinite box targets."""
    boxes = target["boxes"]
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    return {"boxes": boxes[keep], "labels": target["labels"][keep]}


def total_loss(losses: dict[str, Tensor]) -> Tensor:
    """The sum the detector is trained on."""
    return torch.stack(list(losses.values())).sum()
