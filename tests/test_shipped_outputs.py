"""The shipped weights load and give the outputs they gave when this digest was stored, whatever the code around
them became (the package's structure may change; what a user's model predicts may not).

The digest is each shipped model's results on three seeded noise frames, for every method it runs: the label
histogram of a segmenter, the box count and top scores of a detector. Regenerate it only when the weights change
on purpose: ``python tests/test_shipped_outputs.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

DIGEST = Path(__file__).parent / "data" / "shipped_outputs.json"
PIXEL_SHARE = 0.005  # label counts may move by this share of the frame (argmax ties differ between CPUs' kernels)
SCORE_TOLERANCE = 2e-3


def _frames(size: tuple[int, int]) -> list[np.ndarray]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.rand(*size, 3, generator=generator) * 255).to(torch.uint8).numpy() for _ in range(3)]


def digest() -> dict[str, list]:
    """{model name: [[method, frame, summary], ...]} for every shipped model and learned-flow method."""
    import featflow

    found: dict[str, list] = {}
    for info in featflow.shipped_models():
        model = featflow.load(info.name)
        rows = []
        for method in (m for m in model.methods if not m.startswith("sff")):
            for result in model.stream(_frames(info.size), method=method, key_interval=2, window=1):
                if result.labels is not None:
                    summary = np.bincount(result.labels.ravel(), minlength=len(model.class_names)).tolist()
                else:
                    scores = result.detections.scores
                    summary = [len(scores)] + [round(float(s), 4) for s in scores[:3]]
                rows.append([method, result.index, summary])
        found[info.name] = rows
    return found


def test_shipped_models_give_the_stored_outputs():
    stored = json.loads(DIGEST.read_text())
    now = digest()
    assert sorted(now) == sorted(stored)
    for name, rows in stored.items():
        assert [r[:2] for r in now[name]] == [r[:2] for r in rows], name
        for (method, index, expected), (_, _, got) in zip(rows, now[name]):
            where = f"{name} {method} frame {index}"
            if name.startswith("seg"):
                pixels = sum(expected)
                assert np.abs(np.array(got) - np.array(expected)).max() <= PIXEL_SHARE * pixels, where
            else:
                assert got[0] == expected[0], where
                assert got[1:] == pytest.approx(expected[1:], abs=SCORE_TOLERANCE), where


if __name__ == "__main__":
    DIGEST.parent.mkdir(exist_ok=True)
    DIGEST.write_text(json.dumps(digest(), indent=1) + "\n")
    print(f"wrote {DIGEST}", file=sys.stderr)
