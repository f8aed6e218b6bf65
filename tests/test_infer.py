"""featflow infer, the Python API and bad input: any container and size, image folders, damaged files, weights
that do not fit, unknown option values."""

import json
import re
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import featflow
from featflow.apps.infer import run_infer
from featflow.cli import main
from featflow.data.video import DecodeError, natural_key, open_source, to_rgb
from featflow.engine.checkpoint import read_weights
from featflow.structures import decode_labels, encode_labels

ROOT = Path(__file__).resolve().parents[1]


def _encode(path: Path, frames: list[np.ndarray], fmt: str, codec: str, pix_fmt: str = "yuv420p",
            fps: int = 10) -> Path:
    """A video through PyAV in any container / codec / pixel format (the source side, not featflow's writer)."""
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2] if frames else (48, 64)
        stream.pix_fmt = pix_fmt
        container.start_encoding()  # the header is written even when there is no frame
        for frame in frames:
            image = av.VideoFrame.from_ndarray(frame, format="gray" if frame.ndim == 2 else "rgb24")
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _clip(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("fmt,codec,suffix,pix_fmt,size", [("mp4", "libx264", "mp4", "yuv420p", (46, 62)),
                                                           ("avi", "mpeg4", "avi", "yuv420p", (46, 62)),
                                                           ("matroska", "ffv1", "mkv", "gray", (45, 61)),
                                                           ("webm", "libvpx-vp9", "webm", "yuv420p", (46, 62))])
def test_infer_any_container_odd_size(tmp_path, tiny_models, fmt, codec, suffix, pix_fmt, size):
    frames = _clip(7, *size)  # sizes that are not multiples of 16 or 32 (4:2:0 chroma needs even ones)
    if pix_fmt == "gray":
        frames = [f[..., 0] for f in frames]
    video = _encode(tmp_path / f"in.{suffix}", frames, fmt, codec, pix_fmt)
    seg, det = tiny_models
    out, lines = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    assert main(["infer", str(video), "--task", "seg", "--method", "dff", "--key-interval", "3", "--weights", str(seg),
                 "--out", str(out), "--json", str(lines), "--quiet"]) == 0
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert ([r["frame"] for r in records] == list(range(7))
            and [r["key"] for r in records] == [True, False, False] * 2 + [True])
    assert decode_labels(records[4]["mask"]).shape == size
    written = open_source(out)
    assert written.fps == pytest.approx(10) and len(list(written.frames())) == 7
    assert main(["infer", str(video), "--task", "det", "--weights", str(det), "--window", "2", "--json", str(lines),
                 "--quiet"]) == 0
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(7))
    assert all(len(r["boxes"]) == len(r["scores"]) == len(r["classes"]) for r in records)


def test_image_folder_natural_order_grey_and_sizes(tmp_path, tiny_models):
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in (10, 2, 1):  # natural order is 1, 2, 10 (plain sorting would give 1, 10, 2)
        cv2.imwrite(str(folder / f"frame{k}.png"), np.full((20, 30), 20 * k, np.uint8))  # greyscale files
    source = open_source(folder)
    frames = list(source.frames())
    assert source.num_frames == 3 and source.fps == 25
    assert [f[0, 0, 0] for f in frames] == [20, 40, 200] and frames[0].shape == (20, 30, 3)
    assert sorted(["f10", "f9", "F1"], key=natural_key) == ["F1", "f9", "f10"]
    cv2.imwrite(str(folder / "frame11.png"), np.zeros((21, 30, 3), np.uint8))  # a different size
    seg, _ = tiny_models
    summary = run_infer(open_source(folder), featflow.load(seg), "frame", out_video=tmp_path / "o.mp4", progress=False)
    assert summary.frames == 3 and "frame11.png" in summary.error and "30x21" in summary.error
    assert len(list(open_source(tmp_path / "o.mp4").frames())) == 3  # the frames before it were written


def test_bad_sources(tmp_path, tiny_models, capsys):
    seg, _ = tiny_models
    with pytest.raises(FileNotFoundError, match="no such video or image folder"):
        open_source(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        open_source(tmp_path / "empty")
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="cannot open .*junk.mp4"):
        open_source(tmp_path / "junk.mp4")
    with av.open(str(tmp_path / "sound.wav"), "w") as container:  # a file with no video stream
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            container.mux(packet)
    with pytest.raises(ValueError, match="has no video stream"):
        open_source(tmp_path / "sound.wav")
    empty = _encode(tmp_path / "empty.avi", [], "avi", "mpeg4")  # a video stream with no frames
    with pytest.raises(DecodeError, match="no frames"):
        list(open_source(empty).frames())
    unreadable = tmp_path / "bad_folder"
    unreadable.mkdir()
    (unreadable / "0001.png").write_bytes(b"\x89PNG but not really")
    for args, message in (([str(tmp_path / "missing.mp4")], "no such video"),
                          ([str(tmp_path / "sound.wav")], "no video"),
                          ([str(empty)], "no frames"), ([str(unreadable)], "0001.png: cannot decode image 0")):
        assert main(["infer", *args, "--weights", str(seg), "--out", str(tmp_path / "x.mp4"), "--quiet"]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()  # nothing half-written


def test_damaged_video_keeps_the_frames_before(tmp_path, tiny_models, capsys):
    seg, _ = tiny_models
    good = _encode(tmp_path / "good.mp4", _clip(30, 48, 64), "mp4", "libx264")
    data = bytearray(good.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 2000] = bytes(0xFF if i % 3 else 0 for i in range(2000))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(bytes(data))
    truncated = _encode(tmp_path / "whole.mkv", _clip(30, 48, 64), "matroska", "libx264")
    (tmp_path / "truncated.mkv").write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    for name in ("corrupt.mp4", "truncated.mkv"):
        out, lines = tmp_path / f"{name}.out.mp4", tmp_path / f"{name}.jsonl"
        code = main(["infer", str(tmp_path / name), "--weights", str(seg), "--method", "frame", "--out", str(out),
                     "--json", str(lines), "--quiet"])
        err = capsys.readouterr().err
        assert code == 1, err
        done = int(re.search(r"at frame (\d+)", err).group(1))
        assert name in err and 0 < done < 30
        assert len(lines.read_text().splitlines()) == done  # every frame before the damage, processed and kept
        assert len(list(open_source(out).frames())) == done


def test_stream_is_bounded_and_api_inputs(tiny_models):
    _, det = tiny_models
    model = featflow.load(det)
    consumed = []

    def frames():
        for k in range(200):
            consumed.append(k)
            yield torch.from_numpy(_clip(1, 32, 32, k)[0])  # tensors are accepted too
    results = model.stream(frames(), "fgfa", window=2)
    first = next(results)
    assert first.index == 0 and len(consumed) <= 4  # offline FGFA holds K=2 frames ahead, not the video
    online = next(model.stream(iter(_clip(3, 32, 32)), "fgfa", window=2, online=True))
    assert online.index == 0 and online.detections is not None and online.ms > 0
    with pytest.raises(ValueError, match="runs frame, dff, sff-slow, sff-fast, fgfa; not 'raft'"):
        next(model.stream(iter(_clip(1, 32, 32)), "raft"))
    seg = featflow.load(tiny_models[0])  # a DFF segmenter: no aggregation network, so no FGFA
    with pytest.raises(ValueError, match="runs frame, dff, sff-slow, sff-fast; not 'fgfa'"):
        next(seg.stream(iter(_clip(1, 32, 32)), "fgfa"))
    with pytest.raises(ValueError, match="key interval must be at least 1"):
        next(model.stream(iter(_clip(1, 32, 32)), "dff", key_interval=0))
    assert to_rgb(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match="uint8"):
        to_rgb(np.zeros((4, 5, 3), np.float32))


def test_weights_that_do_not_fit(tmp_path, tiny_models):
    seg, det = tiny_models
    tensors, metadata = read_weights(det)
    save_file(tensors, str(tmp_path / "classes.safetensors"), metadata={**metadata, "num_classes": "5"})
    with pytest.raises(ValueError, match=r"differ in shape.*rfcn.*\(3, 3\) in the model|differ in shape"):
        featflow.load(tmp_path / "classes.safetensors")
    save_file(tensors, str(tmp_path / "arch.safetensors"), metadata={**metadata, "arch": "resnet34"})
    with pytest.raises(ValueError, match="do not fit .*missing"):
        featflow.load(tmp_path / "arch.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(Path(det).read_bytes()[:5000])
    with pytest.raises(ValueError, match="not a safetensors weights file"):
        featflow.load(tmp_path / "cut.safetensors")
    with pytest.raises(FileNotFoundError, match="neither a shipped model"):
        featflow.load("no-such-model")
    assert main(["infer", str(tmp_path), "--task", "det", "--weights", str(seg), "--quiet"]) == 2  # task mismatch


@pytest.mark.parametrize("args", [["--task", "pose"], ["--method", "magic"], ["--key-interval", "0"],
                                  ["--window", "-1"]])
def test_unknown_option_values(tmp_path, args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["infer", str(tmp_path), *args])
    assert exit_info.value.code == 2 and f"argument {args[0]}" in capsys.readouterr().err


def test_rle_round_trip(rng):
    labels = rng.integers(0, 3, (17, 23)).astype(np.uint8)
    rle = encode_labels(labels)
    assert np.array_equal(decode_labels(rle), labels) and sum(rle["counts"]) == 17 * 23
    with pytest.raises(ValueError, match="add up"):
        decode_labels({**rle, "counts": rle["counts"][:-1]})


def test_shipped_catalog_matches_the_reports():
    for info in featflow.shipped_models():
        assert info.path.is_file(), info.name
        report, _, row = info.benchmark["source"].partition(", ")
        rows = json.loads((ROOT / report).read_text())
        section, _, name = row.partition(" row ")
        found = next(r for r in rows[section] if r["name"] == name)
        for key, value in info.benchmark.items():
            if key.startswith("mIoU"):
                assert value == pytest.approx(100 * found["miou"], abs=0.05)
            elif key.startswith("mAP"):
                assert value == pytest.approx(100 * found["map"], abs=0.05)
            elif key.startswith("speedup"):
                assert value == pytest.approx(found["speedup"], abs=0.005)


def test_models_command(capsys):
    assert main(["models"]) == 0
    printed = capsys.readouterr().out
    assert all(info.name in printed for info in featflow.shipped_models())


def test_offline_dff_writes_the_frame_by_frame_results(tmp_path, tiny_models, capsys):
    """featflow infer --flow-batch: F on a key interval's frames at once; every frame's labels as without it,
    in frame order, the key frames marked the same."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(_clip(7, 32, 48, seed=4)):
        cv2.imwrite(str(folder / f"{t:03d}.png"), frame)
    seg, _ = tiny_models
    out = {}
    for batch in ("1", "3"):
        out[batch] = tmp_path / f"b{batch}.jsonl"
        assert main(["infer", str(folder), "--task", "seg", "--weights", str(seg), "--method", "dff",
                     "--key-interval", "4", "--flow-batch", batch, "--precision", "fp32",
                     "--json", str(out[batch]), "--quiet"]) == 0, capsys.readouterr().err
    lines = {b: [json.loads(line) for line in p.read_text().splitlines()] for b, p in out.items()}
    assert [r["frame"] for r in lines["3"]] == list(range(7))
    assert [r["key"] for r in lines["3"]] == [r["key"] for r in lines["1"]] == [True, False, False, False,
                                                                                True, False, False]
    agree = [np.mean(decode_labels(a["mask"]) == decode_labels(b["mask"])) for a, b in zip(lines["1"], lines["3"])]
    assert min(agree) > 0.999, agree
    with pytest.raises(SystemExit):  # argparse: a batch is at least one frame
        main(["infer", str(folder), "--flow-batch", "0"])
