"""Held-out flow pairs from real photographs: FlyingChairs-style scenes built only from the photos that training
never sees (``featflow.data.real_textures``, split "test"), in the ``FlowPair`` form ``evaluate_flow`` scores."""

from __future__ import annotations

from featflow.data.real_textures import RealTexturePairs
from featflow.evaluation.flow_metrics import FlowPair


def held_out_texture_pairs(count: int, size: tuple[int, int], seed: int = 0) -> list[FlowPair]:
    """``count`` pairs of (height, width) ``size`` from the held-out photos: uint8 (H, W, 3) images, (H, W, 2) flow."""
    dataset = RealTexturePairs(count, size=size, seed=seed, split="test")
    pairs = []
    for i in range(count):
        current, key, flow, valid = dataset.pair(i)
        pairs.append(FlowPair(current=current, key=key, flow=flow, valid=valid))
    return pairs
