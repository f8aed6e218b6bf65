"""A small random detector (ResNet-18 N_feat with 16 channels, 3 classes) for tests of methods and streams."""

import torch

from featflow.methods.detection import VideoDetector
from featflow.modeling.rpn import RPNConfig

SMALL_RPN = RPNConfig(anchor_sizes=(16, 32, 64))


def small_detector(**kwargs) -> VideoDetector:
    """Seeded, so two calls give the same weights; ``kwargs`` go to ``VideoDetector`` (flow_net, aggregation, ...)."""
    torch.manual_seed(0)
    return VideoDetector(3, "resnet18", 16, rpn=SMALL_RPN, **kwargs)
