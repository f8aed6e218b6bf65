"""The Python API: a model by shipped name or checkpoint path, and a stream of per-frame results.

    import featflow
    model = featflow.load("det-fgfa-r18-synth")          # or a path to a trained checkpoint
    for result in model.stream(frames, method="fgfa"):   # frames: (H, W, 3) uint8 arrays or tensors
        print(result.index, result.detections, result.ms)

Shipped models are listed in ``featflow/weights/models.json`` (``featflow models`` prints them with their
benchmark figures, which come from the reports in ``reports/``). This module only gathers the public names; each
lives in its layer (``featflow.engine.predictor``, ``featflow.data.video``, ``featflow.registry``).
"""

from __future__ import annotations

from featflow.data.video import open_source
from featflow.engine.predictor import FrameResult, Model, load
from featflow.registry import ModelInfo, shipped_models

__all__ = ["FrameResult", "Model", "ModelInfo", "load", "open_source", "shipped_models"]
