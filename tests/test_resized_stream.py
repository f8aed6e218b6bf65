"""A folder-trained detector sees frames resized as its training did, in the API and featflow infer, and its boxes
come back in the frames' own pixels."""

import json

import numpy as np
import pytest

import featflow
from featflow.cli import main
from featflow.data.resize import Resize, ResizedStream
from featflow.data.synthetic import SynthConfig, SyntheticVideo
from featflow.data.video import write_video
from featflow.engine.checkpoint import save_detector
from featflow.structures import Detections
from small_detector import small_detector


def test_a_resized_stream_brings_late_results_back_to_their_own_frames():
    stream = ResizedStream(Resize(20, 40))
    frames = [np.zeros((40, 60, 3), np.uint8), np.zeros((80, 100, 3), np.uint8)]
    resized = list(stream.frames(frames))
    assert [f.shape[:2] for f in resized] == [(20, 30), (20, 25)]  # factors 0.5 and 0.25
    box = Detections(np.array([[10.0, 4.0, 39.0, 30.0]], np.float32), np.array([0.9], np.float32), np.array([1]))
    second = stream.to_original(1, box)  # results may come back out of order: FGFA offline answers late
    np.testing.assert_allclose(second.boxes, [[40.0, 16.0, 99.0, 79.0]])  # x4, clipped to 100x80
    np.testing.assert_allclose(stream.to_original(0, box).boxes, [[20.0, 8.0, 59.0, 39.0]])  # clipped to 60 wide
    assert stream.pending == {}
    plain = ResizedStream(None)
    assert next(plain.frames(frames)) is frames[0] and plain.to_original(0, box) is box


@pytest.fixture()
def folder_trained(tmp_path):
    path = tmp_path / "det.safetensors"
    config = {"data": {"source": "/data/ILSVRC2015", "size": [32, 48]}}
    save_detector(path, small_detector(), ["a", "b", "c"], {"iterations": "1", "config": json.dumps(config)})
    return path


def test_the_api_resizes_as_the_weights_were_trained(folder_trained):
    model = featflow.load(folder_trained)
    assert model.resize == Resize(32, 48)
    video = SyntheticVideo(SynthConfig(height=96, width=144, num_frames=3), seed=0)
    frames = [video.frame(t) for t in range(3)]
    results = list(model.stream(frames, method="frame"))
    # the same frames resized by hand (factor 1/3) through the model without its resize: boxes 3x smaller
    model.resize = None
    direct = list(model.stream([next(ResizedStream(Resize(32, 48)).frames([f])) for f in frames], method="frame"))
    assert sum(len(r.detections) for r in results) > 0
    for got, own in zip(results, direct):
        np.testing.assert_allclose(got.detections.boxes, np.clip(own.detections.boxes * 3, 0, 143), rtol=1e-5,
                                   atol=1e-3)


def test_infer_takes_a_resize_or_none(folder_trained, tmp_path, capsys):
    video = SyntheticVideo(SynthConfig(height=96, width=144, num_frames=3), seed=0)
    source = tmp_path / "v.mp4"
    write_video(source, [video.frame(t) for t in range(3)], fps=5)
    for extra in ([], ["--resize", "48x64"], ["--no-resize"]):
        out = tmp_path / f"r{len(extra)}.jsonl"
        assert main(["infer", str(source), "--task", "det", "--weights", str(folder_trained), "--method", "frame",
                     "--json", str(out), "--quiet", *extra]) == 0
        assert len(out.read_text().splitlines()) == 3
    assert main(["infer", str(source), "--task", "seg", "--resize", "48x64", "--json", str(tmp_path / "s.jsonl"),
                 "--quiet"]) == 2
    assert "segmenters see the frames at their own size" in capsys.readouterr().err
