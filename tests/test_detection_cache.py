"""benchmarks.detection_cache: raw detections kept by what produced them, and reused by the report."""

import numpy as np
import pytest

from benchmarks.detection_cache import DetectionCache, entry_key
from featflow.data.synthetic import SynthConfig
from featflow.data.synthetic.export import export
from featflow.data.vid import VidDataset
from featflow.engine.det_inference import DetStreamConfig
from featflow.structures import Detections


@pytest.fixture(scope="module")
def vid(tmp_path_factory):
    root = tmp_path_factory.mktemp("vid")
    export("vid", root, SynthConfig(height=48, width=64, num_frames=3), videos=0, val_videos=2, progress=False)
    return VidDataset(root, "val")


def _detections() -> list[list[Detections]]:
    one = Detections(np.array([[1, 2, 10, 12], [3, 3, 8, 9]], np.float32), np.array([0.9, 0.2], np.float32),
                     np.array([1, 3]))
    return [[one, Detections.empty(), one], [Detections.empty()]]


def test_entries_round_trip_and_bad_files_are_misses(tmp_path):
    cache = DetectionCache(tmp_path / "cache")
    assert cache.get("abc") is None
    cache.put("abc", _detections(), 12.5, {"w": 0.25})
    videos, ms, stats = cache.get("abc")
    assert ms == 12.5 and stats == {"w": 0.25} and [len(v) for v in videos] == [3, 1]
    for got, want in zip(sum(videos, []), sum(_detections(), [])):
        assert np.array_equal(got.boxes, want.boxes) and np.array_equal(got.scores, want.scores)
        assert np.array_equal(got.labels, want.labels)
    cache.path("abc").write_bytes(b"not an npz file")
    assert cache.get("abc") is None  # a damaged entry is run again, not an error
    assert not list((tmp_path / "cache").glob(".*tmp*"))  # atomic writes leave no temporary files


def test_the_key_follows_the_weights_bytes_the_stream_and_the_videos(tmp_path, vid):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"model one")
    key = entry_key(weights, DetStreamConfig("fgfa", window=2), vid)
    assert key == entry_key(weights, DetStreamConfig("fgfa", window=2), vid)
    assert key != entry_key(weights, DetStreamConfig("fgfa", window=1), vid)
    assert key != entry_key(weights, DetStreamConfig("fgfa", window=2, precision="bf16"), vid)
    assert key != entry_key(weights, DetStreamConfig("fgfa", window=2), vid.first(1))
    weights.write_bytes(b"model two")  # retrained at the same path: a new entry
    assert key != entry_key(weights, DetStreamConfig("fgfa", window=2), vid)


def test_a_report_rerun_reads_the_cache_instead_of_running_the_model(tmp_path, vid, monkeypatch):
    import torch

    import benchmarks.det_report as det_report
    from featflow.engine.checkpoint import save_detector
    from featflow.methods.detection import VideoDetector
    from featflow.modeling.rpn import RPNConfig

    torch.manual_seed(0)
    weights = str(tmp_path / "frame.safetensors")
    save_detector(weights, VideoDetector(8, "resnet18", 16, rpn=RPNConfig(anchor_sizes=(16, 32, 64))),
                  [f"c{k}" for k in range(8)])
    plan = det_report.DetReportPlan(data=str(vid.root), ablation=(det_report.DetRowPlan("single frame", weights),),
                                    speed=det_report.DetSpeedPlan(flow_nets=(), fgfa_flow_nets=()),
                                    bootstrap_samples=0)
    det_report.run_detection_report(plan, tmp_path / "r1", progress=False, cache=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cached row was run again")

    monkeypatch.setattr(det_report, "detect_dataset", must_not_run)
    det_report.run_detection_report(plan, tmp_path / "r2", progress=False, cache=tmp_path / "cache")
    first = (tmp_path / "r1" / "detection.json").read_text()
    second = (tmp_path / "r2" / "detection.json").read_text()
    import json
    assert json.loads(first)["ablation"] == json.loads(second)["ablation"]
