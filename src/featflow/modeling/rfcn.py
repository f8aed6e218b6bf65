"""R-FCN, the detection N_task of DFF and FGFA: position-sensitive score maps and RoI pooling.

On the R-FCN half of the features, two 1x1 convs give k*k*(C+1) class score maps and k*k*8 box maps
(class-agnostic regression: background and foreground deltas, the foreground ones are used). Each RoI is
pooled position-sensitively into k x k bins (torchvision's ``ps_roi_pool``, bin (i, j) reads its own group
of maps) and the bins vote by averaging. Training scores every RoI and back-propagates the 128 with the
largest loss per image (OHEM). Test: class-agnostic boxes decoded once, per-class NMS 0.3, at most 300
detections per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import batched_nms, box_iou, ps_roi_pool

from featflow.modeling.feature_net import FEATURE_STRIDE
from featflow.structures import Detections


@dataclass(frozen=True)
class RFCNConfig:
    group: int = 7  # k: position-sensitive bins per side
    fg_iou: float = 0.5  # RoIs at IoU >= 0.5 with a ground-truth box are foreground, the rest background
    ohem_rois: int = 128  # RoIs per image kept by OHEM
    box_stds: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
    nms_iou: float = 0.3
    max_detections: int = 300
    score_threshold: float = 1e-3  # drop (box, class) pairs below this before NMS (saves time, no AP change)

    def __post_init__(self) -> None:
        if self.group < 1 or self.ohem_rois < 1 or self.max_detections < 1:
            raise ValueError("group, ohem_rois and max_detections must be positive")


class RFCNHead(nn.Module):
    """features (N, C, h, w) at stride 16 + RoIs [(R_i, 4)] in image pixels -> class logits (R, C+1), deltas (R, 4)."""

    def __init__(self, in_channels: int, num_classes: int, config: RFCNConfig = RFCNConfig()) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"a detector needs at least one class, got {num_classes}")
        self.num_classes, self.config = num_classes, config
        k2 = config.group ** 2
        self.cls_maps = nn.Conv2d(in_channels, k2 * (num_classes + 1), kernel_size=1)
        self.box_maps = nn.Conv2d(in_channels, k2 * 8, kernel_size=1)
        for conv in (self.cls_maps, self.box_maps):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        self.coder = BoxCoder(tuple(1.0 / s for s in config.box_stds))

    def forward(self, features: Tensor, rois: list[Tensor], cast: torch.dtype | None = None
                ) -> tuple[Tensor, Tensor]:
        """``cast``: the dtype the two 1x1 convs run in (inference under autocast; their maps are pooled in float32,
        as are the RoIs). At 600x1000 with 31 classes they are 2.4 GMAC, most of a propagated frame's head."""
        k, scale = self.config.group, 1.0 / FEATURE_STRIDE
        cls_maps, box_maps = self._maps(self.cls_maps, features, cast), self._maps(self.box_maps, features, cast)
        scores = ps_roi_pool(cls_maps, rois, k, scale).mean((2, 3))  # (R, C+1): average voting
        deltas = ps_roi_pool(box_maps, rois, k, scale).mean((2, 3))  # (R, 8)
        return scores, deltas[:, 4:]  # the foreground deltas

    @staticmethod
    def _maps(conv: nn.Conv2d, features: Tensor, cast: torch.dtype | None) -> Tensor:
        """conv(features) (N, C, h, w) -> (N, M, h, w) float32, computed in ``cast`` when given."""
        if cast is None:
            return conv(features)
        with torch.autocast(features.device.type, dtype=cast):
            return conv(features).float()

    def targets(self, rois: list[Tensor], gt_boxes: list[Tensor], gt_labels: list[Tensor]
                ) -> tuple[list[Tensor], Tensor, Tensor]:
        """Training RoIs (proposals + ground truth), their labels (R,) (0 = background) and box targets (R, 4)."""
        all_rois, labels, box_targets = [], [], []
        for proposals, boxes, classes in zip(rois, gt_boxes, gt_labels):
            proposals = torch.cat([proposals, boxes.to(proposals)])
            if len(boxes):
                iou, match = box_iou(boxes.to(proposals), proposals).max(0)  # best ground truth per RoI
                label = torch.where(iou >= self.config.fg_iou, classes[match], torch.zeros_like(match))
                target = self.coder.encode_single(boxes.to(proposals)[match], proposals)
            else:  # a frame without objects: every RoI is background
                label = torch.zeros(len(proposals), dtype=torch.int64, device=proposals.device)
                target = torch.zeros_like(proposals)
            all_rois.append(proposals)
            labels.append(label)
            box_targets.append(target)
        return all_rois, torch.cat(labels), torch.cat(box_targets)

    def loss(self, scores: Tensor, deltas: Tensor, labels: Tensor, box_targets: Tensor,
             rois_per_image: list[int]) -> dict[str, Tensor]:
        """OHEM: per image, the ``ohem_rois`` RoIs with the largest classification + box loss are kept."""
        cls = F.cross_entropy(scores, labels, reduction="none")  # (R,)
        box = F.smooth_l1_loss(deltas, box_targets, reduction="none", beta=1.0).sum(1) * (labels > 0)  # (R,)
        keep = []
        for start, count in zip(torch.tensor([0] + rois_per_image[:-1]).cumsum(0).tolist(), rois_per_image):
            hardest = (cls + box)[start:start + count].detach().topk(min(self.config.ohem_rois, count)).indices
            keep.append(hardest + start)
        keep = torch.cat(keep)
        return {"rfcn_cls": cls[keep].mean(), "rfcn_box": box[keep].sum() / max(len(keep), 1)}

    @torch.no_grad()
    def detections(self, scores: Tensor, deltas: Tensor, rois: list[Tensor],
                   image_size: tuple[int, int]) -> list[Detections]:
        """Per frame: softmax scores, class-agnostic boxes, per-class NMS, the top ``max_detections``."""
        probs = scores.softmax(1)[:, 1:]  # (R, C)
        out, start = [], 0
        for proposals in rois:
            count = len(proposals)
            p = probs[start:start + count]
            boxes = self.coder.decode_single(deltas[start:start + count], proposals)
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, image_size[1] - 1)  # inside the frame, last pixel inclusive
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, image_size[0] - 1)  # (R, 4)
            start += count
            roi, cls = torch.nonzero(p > self.config.score_threshold, as_tuple=True)
            if len(roi) == 0:
                out.append(Detections.empty())
                continue
            b, s, c = boxes[roi], p[roi, cls], cls + 1
            keep = batched_nms(b, s, c, self.config.nms_iou)[: self.config.max_detections]
            out.append(Detections(b[keep].cpu().numpy(), s[keep].cpu().numpy(), c[keep].cpu().numpy()))
        return out
