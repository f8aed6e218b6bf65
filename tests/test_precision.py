"""featflow.modeling.precision and inference in bfloat16: the streams autocast only their own work, detections
keep float32 box arithmetic, and a device without the precision falls back to float32 with a warning."""

import logging

import numpy as np
import pytest
import torch

import featflow
from featflow.cli import main
from featflow.data.synthetic import SynthConfig, SyntheticVideo
from featflow.engine.det_inference import DetStreamConfig
from featflow.errors import FeatflowError
from featflow.modeling import precision

NATIVE = precision.bf16_supported(torch.device("cpu"))


def test_autocast_types_and_fallbacks(monkeypatch, caplog):
    cpu = torch.device("cpu")
    assert precision.autocast_dtype("fp32", cpu) is None
    assert precision.autocast_dtype("bf16", cpu) == (torch.bfloat16 if NATIVE else None)
    with caplog.at_level(logging.WARNING, logger="featflow.modeling.precision"):
        assert precision.autocast_dtype("fp16", cpu, purpose="inference") is None
        monkeypatch.setattr(precision, "bf16_supported", lambda device: False)
        assert precision.autocast_dtype("bf16", cpu, purpose="inference") is None
    assert "only GPUs run float16" in caplog.text and "inference in fp32" in caplog.text
    with pytest.raises(FeatflowError, match="unknown precision"):
        DetStreamConfig("frame", precision="fp8")


def test_auto_is_bf16_where_native_and_fp32_elsewhere_without_a_warning(monkeypatch, caplog):
    cpu = torch.device("cpu")
    with caplog.at_level(logging.WARNING, logger="featflow.modeling.precision"):
        monkeypatch.setattr(precision, "bf16_supported", lambda device: True)
        assert precision.autocast_dtype("auto", cpu) == torch.bfloat16
        monkeypatch.setattr(precision, "bf16_supported", lambda device: False)
        assert precision.autocast_dtype("auto", cpu) is None
    assert caplog.text == ""


def test_infer_defaults_to_auto_and_eval_to_fp32():
    from featflow.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["infer", "clip.mp4"]).precision == "auto"
    assert parser.parse_args(["eval", "seg", "--data", "d", "--weights", "w"]).precision == "fp32"


def _clip(n: int = 6) -> list[np.ndarray]:
    video = SyntheticVideo(SynthConfig(96, 160, n), seed=3, index=0, split="val")
    return [video.frame(t) for t in range(n)]


@pytest.mark.skipif(not NATIVE, reason="this CPU has no native bfloat16")
def test_bf16_streams_match_fp32_and_leave_autocast_off_between_frames():
    frames = _clip()
    seg = featflow.load("seg-dff-r18-synth")
    fp32 = [r.labels for r in seg.stream(frames, "dff", key_interval=3)]
    bf16 = []
    for result in seg.stream(frames, "dff", key_interval=3, precision="bf16"):
        assert not torch.is_autocast_enabled("cpu")  # the caller's code between frames runs in float32
        bf16.append(result.labels)
    agreement = np.mean([np.mean(a == b) for a, b in zip(fp32, bf16)])
    assert agreement > 0.95, agreement
    det = featflow.load("det-fgfa-r18-synth")
    for method in ("frame", "fgfa"):
        ref = [r.detections for r in det.stream(frames, method, window=2)]
        low = [r.detections for r in det.stream(frames, method, window=2, precision="bf16")]
        for a, b in zip(ref, low):
            assert b.boxes.dtype == np.float32
            confident_a, confident_b = a.scores > 0.5, b.scores > 0.5
            assert abs(int(confident_a.sum()) - int(confident_b.sum())) <= 1
            if confident_a.any() and confident_b.any():  # the best box moves by at most a few pixels
                assert np.abs(a.boxes[0] - b.boxes[0]).max() < 8


def test_infer_and_eval_take_a_precision(tmp_path, tiny_models, capsys):
    seg, _ = tiny_models
    folder = tmp_path / "frames"
    folder.mkdir()
    import cv2

    for t, frame in enumerate(_clip(3)):
        cv2.imwrite(str(folder / f"{t:03d}.png"), frame[..., ::-1])
    lines = tmp_path / "out.jsonl"
    assert main(["infer", str(folder), "--task", "seg", "--weights", str(seg), "--precision", "bf16",
                 "--json", str(lines), "--quiet"]) == 0, capsys.readouterr().err
    assert len(lines.read_text().splitlines()) == 3
    with pytest.raises(SystemExit):
        main(["infer", str(folder), "--precision", "fp64"])


@pytest.mark.skipif(not NATIVE, reason="this CPU has no native bfloat16")
def test_rfcn_maps_run_in_bf16_at_inference_and_float32_in_training():
    """Under autocast, R-FCN's 1x1 convs (most of the head's multiply-adds) run in bfloat16 at inference, their
    maps pooled in float32 with float32 boxes; training keeps them in float32 (as the models were trained)."""
    from featflow.modeling.heads import DetectionHead

    torch.manual_seed(0)
    head = DetectionHead(32, num_classes=3).eval()
    seen: list[torch.dtype] = []
    head.rfcn.cls_maps.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    features = torch.randn(2, 32, 12, 20) * 3
    with torch.no_grad():
        ref = head.predict(features, (192, 320))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = head.predict(features, (192, 320))
    assert seen == [torch.float32, torch.bfloat16]
    for a, b in zip(ref, low):
        assert b.boxes.dtype == np.float32 and len(b.scores) > 0
        top_a, top_b = np.argsort(-a.scores)[:5], np.argsort(-b.scores)[:5]
        np.testing.assert_allclose(np.sort(a.scores[top_a]), np.sort(b.scores[top_b]), rtol=0.05)
    head.train()
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 80.0, 90.0]]), "labels": torch.tensor([1])}] * 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        head(features, (192, 320), targets)
    assert seen[-1] == torch.float32
