"""Raw detections of a benchmark row kept on disk, so that re-running a report after adding a row evaluates only
the new row. An entry is named by what produced it: the weights file's bytes (not its path: a retrained model
at the same path is a new entry), the stream config, and the held-out videos (folder, split, video names and
frame counts). The entry also keeps the model's ms per frame of the run that made it, and the run's named
statistics (FGFA's weights).

Entries are ``.npz`` files of plain arrays (read with ``allow_pickle=False``), written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from featflow.data.vid import VideoBoxesBase
from featflow.engine.det_inference import DetStreamConfig
from featflow.structures import Detections, VideoDetections
from featflow.utils.io import atomic_path

FORMAT = 1  # bumped when the layout of an entry changes (older entries are then ignored)


def entry_key(weights: str | os.PathLike, config: DetStreamConfig, data: VideoBoxesBase) -> str:
    """A hex digest naming the raw detections of ``weights`` run with ``config`` on ``data``."""
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    root = getattr(data, "root", None)
    stream = {k: v for k, v in asdict(config).items() if not (k == "precision" and v == "fp32")}  # as before it
    described = {"format": FORMAT, "config": stream, "root": str(Path(root).resolve()) if root else None,
                 "split": getattr(data, "split", None),
                 "videos": [(v.name, len(v.frames)) for v in data.videos]}
    digest.update(json.dumps(described, sort_keys=True).encode())
    return digest.hexdigest()[:32]


class DetectionCache:
    """A folder of entries; ``get`` answers None for a missing or unreadable entry."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def get(self, key: str) -> tuple[list[VideoDetections], float, dict[str, float]] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                frames, counts = z["frames_per_video"], z["boxes_per_frame"]
                boxes, scores, labels, ms = z["boxes"], z["scores"], z["labels"], float(z["ms_per_frame"])
                stats = {k[len("stat_"):]: float(z[k]) for k in z.files if k.startswith("stat_")}
        except (OSError, KeyError, ValueError):  # damaged or from another layout: run the row again
            return None
        ends = np.cumsum(counts)
        frame_dets = [Detections(boxes[e - n:e], scores[e - n:e], labels[e - n:e]) for e, n in zip(ends, counts)]
        starts = np.concatenate([[0], np.cumsum(frames)])
        return [frame_dets[a:b] for a, b in zip(starts[:-1], starts[1:])], ms, stats

    def put(self, key: str, detections: list[VideoDetections], ms_per_frame: float,
            stats: dict[str, float] | None = None) -> None:
        """Store a run: its detections per video, ms per frame, and named scalars (e.g. FGFA's weights)."""
        flat = [d for video in detections for d in video]
        arrays = {
            "frames_per_video": np.array([len(v) for v in detections], np.int64),
            "boxes_per_frame": np.array([len(d) for d in flat], np.int64),
            "boxes": np.concatenate([d.boxes for d in flat]) if flat else np.zeros((0, 4), np.float32),
            "scores": np.concatenate([d.scores for d in flat]) if flat else np.zeros(0, np.float32),
            "labels": np.concatenate([d.labels for d in flat]) if flat else np.zeros(0, np.int64),
            "ms_per_frame": np.array(ms_per_frame, np.float64),
            **{f"stat_{k}": np.array(v, np.float64) for k, v in (stats or {}).items()},
        }
        with atomic_path(self.path(key)) as tmp:
            np.savez(tmp, **arrays)
