"""featflow infer as a new user meets it: interrupts, part of a source, readable overlays, --min-score in the JSON,
rotated phone videos, and outputs checked before any work starts."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import featflow
from featflow.apps.demo import segmentation_view
from featflow.apps.infer import annotate, run_infer
from featflow.cli import main
from featflow.data.synthetic import CLASS_NAMES
from featflow.data.video import VIDEO_FORMATS, open_source, upright
from featflow.engine.predictor import FrameResult
from featflow.structures import decode_labels
from featflow.utils.visualize import segmentation_palette
from test_infer import _clip, _encode

ROOT = Path(__file__).resolve().parents[1]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _count(path: Path) -> int:
    return len(list(open_source(path).frames()))


# 1. interrupts


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_keeps_the_frames_processed(tmp_path, tiny_models, signum, code):
    seg, _ = tiny_models
    video = _encode(tmp_path / "long.mp4", _clip(600, 32, 48), "mp4", "libx264")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, lines = out_dir / "o.mp4", out_dir / "o.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "featflow.cli", "infer", str(video), "--weights", str(seg),
                             "--method", "frame", "--out", str(out), "--json", str(lines), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # the JSON (a temporary file until done) has lines
        if any(p.suffix == ".jsonl" and p.stat().st_size > 0 for p in out_dir.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    records = _records(lines)
    n = len(records)
    assert 0 < n < 600 and [r["frame"] for r in records] == list(range(n))
    assert _count(out) == n  # closed and playable, one frame per JSON line
    assert sorted(p.name for p in out_dir.iterdir()) == ["o.jsonl", "o.mp4"]  # no temporary file left
    message = err.strip().splitlines()
    assert len(message) == 1 and f"{n} frames written" in message[0] and signal.Signals(signum).name in message[0]


def test_stop_before_any_frame_writes_nothing(tmp_path, tiny_models):
    seg, _ = tiny_models
    video = _encode(tmp_path / "in.mp4", _clip(5, 32, 48), "mp4", "libx264")
    summary = run_infer(open_source(video), featflow.load(seg), "frame", out_video=tmp_path / "o.mp4",
                        out_json=tmp_path / "o.jsonl", progress=False, stop=lambda: True)
    assert summary.interrupted and summary.frames == 0 and summary.video is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


# 2. part of a source


def test_start_and_max_frames(tmp_path, tiny_models, capsys):
    seg, _ = tiny_models
    video = _encode(tmp_path / "in.mp4", _clip(12, 32, 48), "mp4", "libx264")
    out, lines = tmp_path / "o.mp4", tmp_path / "o.jsonl"
    base = ["infer", str(video), "--weights", str(seg), "--method", "dff", "--key-interval", "3", "--quiet",
            "--out", str(out), "--json", str(lines)]
    assert main([*base, "--start", "5", "--max-frames", "4"]) == 0
    records = _records(lines)
    assert [r["frame"] for r in records] == [5, 6, 7, 8] and [r["key"] for r in records] == [True, False, False, True]
    assert _count(out) == 4
    assert main([*base, "--start", "10"]) == 0
    assert [r["frame"] for r in _records(lines)] == [10, 11] and _count(out) == 2
    assert main([*base, "--max-frames", "3"]) == 0
    assert [r["frame"] for r in _records(lines)] == [0, 1, 2]
    capsys.readouterr()
    assert main([*base, "--start", "12"]) == 2
    assert "--start 12" in capsys.readouterr().err
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(6):
        cv2.imwrite(str(folder / f"{k}.png"), np.full((20, 30), 40 * k, np.uint8))
    assert main(["infer", str(folder), "--weights", str(seg), "--method", "frame", "--json", str(lines), "--quiet",
                 "--start", "4"]) == 0
    assert [r["frame"] for r in _records(lines)] == [4, 5]


@pytest.mark.parametrize("args", [["--start", "-1"], ["--start", "x"], ["--max-frames", "0"]])
def test_start_and_max_frames_are_checked(tmp_path, args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["infer", str(tmp_path), *args])
    assert exit_info.value.code == 2 and f"argument {args[0]}" in capsys.readouterr().err


# 3. readable outputs


def _labels(h: int, w: int) -> np.ndarray:
    labels = np.zeros((h, w), np.uint8)
    labels[h // 2:, : w // 3] = 1
    labels[h // 2:, w // 3: 2 * w // 3] = 2
    labels[h // 2:, 2 * w // 3:] = 3
    return labels


def _legend_box(out: np.ndarray, image: np.ndarray) -> tuple[int, int]:
    """(bottom row, left column) of the legend: the top-right region that differs from the overlay below it."""
    differ = np.any(out[: out.shape[0] // 2] != image[: out.shape[0] // 2], axis=-1)
    rows, cols = np.nonzero(differ)
    return rows.max() + 1, cols.min()


def test_segmentation_overlay_background_and_legend():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    labels = _labels(120, 160)
    names = ["bg", "road", "car", "person"]
    palette = segmentation_palette(len(names))
    assert palette[0].tolist() == [0, 0, 0] and len({tuple(c) for c in palette[1:]}) == 3
    assert np.array_equal(segmentation_palette(4), palette)  # fixed colours
    out = annotate(image, FrameResult(0, 1.0, True, labels=labels), names, palette)
    bottom, left = _legend_box(out, image)
    assert 0 < bottom < 60 and left > 80  # a small legend, in the top-right corner
    background = labels == 0
    background[:bottom, left:] = False
    assert np.array_equal(out[background], image[background])  # class 0 is not painted
    assert not np.array_equal(out[labels == 1], image[labels == 1])
    box = out[:bottom, left:].reshape(-1, 3)
    for k in (1, 2, 3):  # a swatch of each class's colour
        assert (np.all(box == palette[k], axis=-1)).sum() >= 25, k
    # the class painted with class 1's colour, blended at the overlay's alpha
    expected = np.clip(image[labels == 1] * 0.45 + palette[1].astype(np.float32) * 0.55, 0, 255).astype(np.uint8)
    assert np.abs(out[labels == 1].astype(int) - expected).max() <= 1


def test_demo_segmentation_panel():
    image = np.full((256, 512, 3), 90, np.uint8)
    labels = _labels(256, 512)
    out = segmentation_view(image, labels)
    bottom, left = _legend_box(out, image)
    background = labels == 0
    background[:bottom, left:] = False
    assert np.array_equal(out[background], image[background])
    from featflow.apps.demo import segmentation_palette as demo_palette
    palette = demo_palette()
    assert len(palette) == len(CLASS_NAMES)
    box = out[:bottom, left:].reshape(-1, 3)
    for k in range(1, len(CLASS_NAMES)):
        assert np.all(box == palette[k], axis=-1).any(), CLASS_NAMES[k]


# 4. --min-score in the detection JSON


def test_detection_json_honours_min_score(tmp_path, tiny_models):
    _, det = tiny_models
    video = _encode(tmp_path / "in.mp4", _clip(3, 48, 64), "mp4", "libx264")
    lines = tmp_path / "o.jsonl"
    base = ["infer", str(video), "--task", "det", "--weights", str(det), "--window", "1", "--json", str(lines),
            "--quiet"]
    assert main([*base, "--min-score", "0"]) == 0
    every = _records(lines)
    scores = np.concatenate([r["scores"] for r in every])
    threshold = float(np.median(scores))
    assert main([*base, "--min-score", f"{threshold}"]) == 0
    kept = _records(lines)
    assert all(s >= threshold - 1e-4 for r in kept for s in r["scores"])
    assert all(len(r["boxes"]) == len(r["scores"]) == len(r["labels"]) == len(r["classes"]) for r in kept)
    assert 0 < sum(len(r["scores"]) for r in kept) < len(scores)


# 5. rotation metadata


def _rotated(path: Path, degrees: int, n: int = 4) -> Path:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.set_display_rotation(degrees)
        for _ in range(n):
            frame = np.zeros((32, 48, 3), np.uint8)
            frame[:, :8] = 255  # a white band on the left of the stored picture
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_rotated_video_comes_out_upright(tmp_path, tiny_models):
    video = _rotated(tmp_path / "phone.mp4", 90)
    with av.open(str(video)) as container:
        assert next(container.decode(video=0)).rotation == 90  # PyAV writes and reads the display matrix
    frames = list(open_source(video).frames())
    assert len(frames) == 4 and frames[0].shape == (48, 32, 3)  # 90 degrees counter-clockwise: the band at the bottom
    assert frames[0][-8:].mean() > 200 and frames[0][:-10].mean() < 50
    upside = list(open_source(_rotated(tmp_path / "upside.mp4", 180)).frames())[0]
    assert upside.shape == (32, 48, 3) and upside[:, -8:].mean() > 200 and upside[:, :-10].mean() < 50
    clockwise = list(open_source(_rotated(tmp_path / "cw.mp4", -90)).frames())[0]
    assert clockwise.shape == (48, 32, 3) and clockwise[:8].mean() > 200
    seg, _ = tiny_models
    lines = tmp_path / "o.jsonl"
    assert main(["infer", str(video), "--weights", str(seg), "--method", "frame", "--json", str(lines),
                 "--out", str(tmp_path / "o.mp4"), "--quiet"]) == 0
    assert decode_labels(_records(lines)[0]["mask"]).shape == (48, 32)
    assert list(open_source(tmp_path / "o.mp4").frames())[0].shape == (48, 32, 3)
    frame = np.arange(6, dtype=np.uint8).reshape(2, 3, 1).repeat(3, 2)
    assert np.array_equal(upright(frame, 0), frame) and np.array_equal(upright(frame, 270), upright(frame, -90))
    assert np.array_equal(upright(frame, 90), np.rot90(frame))


# 6. checks before work starts


def test_outputs_checked_before_work(tmp_path, tiny_models, capsys, monkeypatch):
    seg, _ = tiny_models
    video = _encode(tmp_path / "in.mp4", _clip(3, 32, 48), "mp4", "libx264")
    (tmp_path / "adir").mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    cases = [(["--out", str(tmp_path / "missing" / "o.mp4")], "does not exist"),
             (["--json", str(tmp_path / "missing" / "o.jsonl")], "does not exist"),
             (["--out", str(tmp_path / "adir")], "is a directory"),
             (["--json", str(tmp_path / "adir")], "is a directory"),
             (["--out", str(tmp_path / "o.mov")], "choose one of .mp4, .mkv, .webm, .avi, .gif"),
             (["--out", str(tmp_path / "o")], "choose one of"),
             (["--out", str(video)], "is the source"),
             (["--json", str(video)], "is the source"),
             (["--out", str(tmp_path / "same.mp4"), "--json", str(tmp_path / "same.mp4")], "the same file"),
             (["--out", str(locked / "o.mp4")], "not writable"),
             (["--json", str(locked / "o.jsonl")], "not writable")]
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))  # root writes anyway
    for args, message in cases:
        # a weights name that does not exist: the outputs are refused before the model is looked for
        assert main(["infer", str(video), "--weights", "no-such-model", *args, "--quiet"]) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "in.mp4", "locked"]  # nothing written


def test_folder_of_different_sizes_exits_2(tmp_path, tiny_models, capsys):
    seg, _ = tiny_models
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(3):
        cv2.imwrite(str(folder / f"{k}.png"), np.zeros((20, 30, 3), np.uint8))
    cv2.imwrite(str(folder / "3.png"), np.zeros((21, 30, 3), np.uint8))
    assert main(["infer", str(folder), "--weights", str(seg), "--out", str(tmp_path / "o.mp4"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "3.png" in err and "30x21" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("suffix", sorted(VIDEO_FORMATS))
def test_every_output_container(tmp_path, tiny_models, suffix):
    seg, _ = tiny_models
    video = _encode(tmp_path / "in.mp4", _clip(5, 46, 62), "mp4", "libx264")
    out = tmp_path / f"o{suffix}"
    assert main(["infer", str(video), "--weights", str(seg), "--method", "frame", "--out", str(out), "--quiet"]) == 0
    with av.open(str(out)) as container:
        fmt = {".mp4": "mov", ".mkv": "matroska", ".webm": "matroska", ".avi": "avi", ".gif": "gif"}[suffix]
        assert container.format.name.split(",")[0] == fmt
        codec = container.streams.video[0].codec_context.name
    assert codec == {".mp4": "h264", ".mkv": "h264", ".webm": "vp9", ".avi": "mpeg4", ".gif": "gif"}[suffix]
    frames = list(open_source(out).frames())
    assert len(frames) == 5 and frames[0].shape[:2] in ((45, 61), (46, 62))


def test_threads_option_sets_this_processes_cpu_threads(monkeypatch, capsys):
    import torch

    from featflow.cli import main

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        assert main(["--threads", "1", "models"]) == 0
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit) as exit_info:
        main(["--threads", "0", "models"])
    assert exit_info.value.code == 2 and "--threads" in capsys.readouterr().err
