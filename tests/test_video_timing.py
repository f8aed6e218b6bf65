"""Real video timing (featflow.data.video and featflow infer): timestamps are the truth. Variable frame rates,
an AVI whose header counts dropped-frame slots, and a stream that starts late are read whole with their times,
the JSON lines carry them, and the annotated output keeps them; a really truncated file is still caught."""

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from featflow.cli import main
from featflow.data.video import DecodeError, TimedFrame, open_source, write_video

# presentation times in 1/25 s ticks, with gaps (dropped frames, a pause)
TICKS = [0, 1, 2, 5, 6, 10, 11, 12, 20, 21, 22, 23]


def _write(path: Path, fmt: str, codec: str, ticks: list[int], offset_s: float = 0.0) -> Path:
    """A video with frames at ticks / 25 s (+ offset), through PyAV (the source side, not featflow's writer)."""
    time_base = Fraction(1, 25) if fmt == "avi" else Fraction(1, 1000)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = time_base
        for k, tick in enumerate(ticks):
            image = np.zeros((48, 64, 3), np.uint8)
            image[:, (5 * k) % 60:(5 * k) % 60 + 4] = 255  # a bar that moves: every frame differs
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = round((tick / 25 + offset_s) / time_base), time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.time) for f in container.decode(video=0)]


@pytest.mark.parametrize("fmt,codec,suffix", [("mp4", "libx264", ".mp4"), ("matroska", "libx264", ".mkv"),
                                              ("avi", "mpeg4", ".avi")])
def test_variable_frame_rate_sources_are_read_whole_with_their_times(tmp_path, fmt, codec, suffix):
    path = _write(tmp_path / f"vfr{suffix}", fmt, codec, TICKS)
    source = open_source(path)
    frames = list(source.timed_frames())
    assert len(frames) == len(TICKS)  # no refusal, whatever the header's count says
    assert [f.time for f in frames] == pytest.approx([t / 25 for t in TICKS], abs=1e-3)
    assert len(list(source.frames(start=3))) == len(TICKS) - 3


def test_an_avi_whose_header_counts_dropped_frame_slots(tmp_path):
    path = _write(tmp_path / "slots.avi", "avi", "mpeg4", TICKS)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames > len(TICKS)  # the header announces every slot
    assert open_source(path).num_frames > len(TICKS)
    assert len(list(open_source(path).frames())) == len(TICKS)


def test_a_stream_that_starts_late_keeps_its_start(tmp_path):
    path = _write(tmp_path / "late.mp4", "mp4", "libx264", list(range(10)), offset_s=2.0)
    source = open_source(path)
    assert source.start_time == pytest.approx(2.0, abs=1e-3)
    assert [f.time for f in source.timed_frames()] == pytest.approx([2 + k / 25 for k in range(10)], abs=1e-3)


def test_a_really_truncated_file_is_still_caught(tmp_path):
    whole = _write(tmp_path / "whole.mkv", "matroska", "libx264", list(range(60)))
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DecodeError, match="truncated or damaged") as caught:
        for _ in open_source(cut).frames():
            pass
    assert 0 <= caught.value.frame < 60


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi"])
def test_write_video_keeps_the_given_times(tmp_path, suffix):
    times = [t / 25 for t in TICKS]
    frames = [TimedFrame(t, np.full((48, 64, 3), 10 * k, np.uint8)) for k, t in enumerate(times)]
    out = tmp_path / f"out{suffix}"
    assert write_video(out, frames, fps=25) == len(TICKS)
    assert _times(out) == pytest.approx(times, abs=1e-3)


def test_infer_on_a_variable_rate_source_processes_every_frame_in_sync(tmp_path, tiny_models, capsys):
    seg, det = tiny_models
    source = _write(tmp_path / "vfr.mkv", "matroska", "libx264", TICKS, offset_s=0.5)
    expected = _times(source)  # as a player reads them (a muxer may shift the start a little)
    assert expected[0] >= 0.5 and len(set(np.round(np.diff(expected), 3))) > 1  # a late start, a variable rate
    for task, weights, method in (("seg", seg, "dff"), ("det", det, "fgfa")):
        out, lines = tmp_path / f"{method}.mp4", tmp_path / f"{method}.jsonl"
        code = main(["infer", str(source), "--task", task, "--weights", str(weights), "--method", method,
                     "--window", "2", "--out", str(out), "--json", str(lines), "--quiet"])
        assert code == 0, capsys.readouterr().err
        records = [json.loads(line) for line in lines.read_text().splitlines()]
        assert [r["frame"] for r in records] == list(range(len(TICKS)))  # one line per frame, all of them
        assert [r["time"] for r in records] == pytest.approx(expected, abs=1e-3)
        assert _times(out) == pytest.approx(expected, abs=1e-3)  # the annotated video plays in sync
