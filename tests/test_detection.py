"""featflow.methods.detection and modeling.rfcn: R-FCN with its RPN and OHEM, training and inference outputs."""

from __future__ import annotations

import pytest
import torch

from featflow.methods.dff import propagate_features
from featflow.methods.streams import AggregatedFeatures
from featflow.modeling.heads import total_loss
from featflow.modeling.rfcn import RFCNConfig, RFCNHead
from small_detector import small_detector


def _targets(boxes: list[list[float]], labels: list[int]) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64)}


class _NoProposals(torch.nn.Module):
    """An RPN stand-in that proposes nothing."""

    def forward(self, images, features, targets=None):
        n = images.tensors.shape[0]
        zero = torch.zeros((), requires_grad=True)
        return [torch.zeros(0, 4)] * n, ({"loss_objectness": zero, "loss_rpn_box_reg": zero} if targets else {})


def test_training_with_and_without_objects_and_proposals():
    model = small_detector().train()
    images = torch.rand(2, 3, 64, 96) * 255
    # the second frame has no objects; the first also a one-pixel sliver (x1 == x2), which must not train
    targets = [_targets([[10, 8, 40, 50], [0, 5, 0, 30]], [2, 1]), _targets([], [])]
    losses = model(images, targets=targets)
    assert set(losses) == {"rpn_objectness", "rpn_box", "rfcn_cls", "rfcn_box"}
    assert all(torch.isfinite(v) for v in losses.values())
    total_loss(losses).backward()
    assert model.head.rfcn.cls_maps.weight.grad.abs().sum() > 0 and model.feature_net.conv1.weight.grad is not None
    model.head.rpn = _NoProposals()  # no proposals: training still has the ground-truth RoIs, inference returns nothing
    losses = model(images, targets=targets)
    assert torch.isfinite(total_loss(losses))
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert [len(d) for d in out] == [0, 0]


def test_inference_output_is_clipped_sorted_per_class_and_bounded():
    model = small_detector().eval()
    with torch.no_grad():
        dets = model(torch.rand(1, 3, 64, 96) * 255)[0]
    assert 0 < len(dets) <= 300
    assert dets.labels.min() >= 1 and dets.labels.max() <= 3
    assert dets.boxes[:, [0, 2]].max() <= 95 and dets.boxes[:, [1, 3]].max() <= 63 and dets.boxes.min() >= 0


def test_rfcn_targets_and_ohem_keep_the_hardest_rois():
    head = RFCNHead(8, 3, RFCNConfig(group=3, ohem_rois=1))
    rois, labels, targets = head.targets([torch.tensor([[0., 0, 10, 10], [50, 50, 60, 60]])],
                                         [torch.tensor([[0., 0, 10, 11]])], [torch.tensor([2])])
    assert labels.tolist() == [2, 0, 2]  # IoU >= 0.5 -> class 2, far -> background, the ground truth itself -> 2
    assert torch.allclose(targets[2], torch.zeros(4))
    scores = torch.tensor([[0., 0, 5, 0], [0., 0, 0, 0], [9., 0, 0, 0]])  # RoI 2 is the worst classified
    deltas = torch.zeros(3, 4)
    loss = head.loss(scores, deltas, labels, targets, [3])
    worst = torch.nn.functional.cross_entropy(scores[2:], labels[2:])
    assert loss["rfcn_cls"] == pytest.approx(worst.item())


def test_for_inference_runs_channels_last_on_the_cpu_with_the_same_outputs():
    model = small_detector(flow_net="flownet_inception", aggregation="adaptive").eval()
    frames = [torch.rand(1, 3, 32, 48) * 255 for _ in range(3)]
    stream = AggregatedFeatures(model, window=1)
    before = [out for frame in frames for out in stream.push(frame)] + stream.finish()
    key = model.key_features(frames[0])
    propagated = propagate_features(model, key, frames[1], frames[0])
    assert model.for_inference("cpu") is model and not model.training
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.dim() == 4)
    stream = AggregatedFeatures(model, window=1)
    after = [out for frame in frames for out in stream.push(frame)] + stream.finish()
    assert [o.index for o in after] == [o.index for o in before]
    for (_, a, _), (_, b, _) in zip(before, after):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    again = propagate_features(model, model.key_features(frames[0]), frames[1], frames[0])
    torch.testing.assert_close(again, propagated, atol=1e-4, rtol=1e-4)
    # FGFA has no scale field: its flow skips the scale head
    flow, scale = model.learned_flow(frames[1], frames[0], with_scale=False)
    assert scale is None and flow.shape == (1, 2, 2, 3)
