"""featflow: flow-based video recognition (Deep Feature Flow, Flow-Guided Feature Aggregation) in PyTorch.

    import featflow
    model = featflow.load("seg-dff-r18-synth")   # a shipped model (featflow.shipped_models()) or a weights file
    for result in model.stream(featflow.open_source("clip.mp4").frames()):  # or any (H, W, 3) uint8 frames
        ...
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["FrameResult", "Model", "ModelInfo", "load", "open_source", "shipped_models"]


def __getattr__(name: str) -> Any:
    """The API is imported on first use, so that ``featflow --help`` does not wait for torch."""
    if name in __all__:
        from featflow import api

        return getattr(api, name)
    raise AttributeError(f"module 'featflow' has no attribute {name!r}")
