"""featflow.engine.det_training and det_inference: a detector trained, run as every method and evaluated."""

import json

import pytest


@pytest.mark.slow
def test_train_detect_and_evaluate_end_to_end(tmp_path):
    from featflow.data.synthetic import SynthConfig
    from featflow.data.synthetic.export import export
    from featflow.data.vid import VidDataset
    from featflow.engine.checkpoint import load_detector
    from featflow.engine.config import load_config
    from featflow.engine.det_inference import DetStreamConfig, evaluate_detection
    from featflow.engine.det_training import DetTrainConfig, train_detection

    cfg_text = """
model: {arch: resnet18, channels: 16, anchor_sizes: [16, 32, 64]}
data: {size: [64, 96], frames_per_video: 2}
train: {batch_size: 2, iterations: 2, lr: 0.001, warmup: 1, workers: 0}
eval: {samples: 2, every: 2}
"""
    (tmp_path / "frame.yaml").write_text(cfg_text)
    frame = load_config(DetTrainConfig, tmp_path / "frame.yaml", kind="det")
    result = train_detection(frame, out=tmp_path / "frame", progress=False)
    assert result.iterations == 2 and 0.0 <= result.last["val_map"] <= 1.0
    (tmp_path / "fgfa.yaml").write_text(cfg_text.replace(
        "anchor_sizes: [16, 32, 64]}",
        f"anchor_sizes: [16, 32, 64], flow_net: flownet_inception, aggregation: adaptive, "
        f"init: {tmp_path / 'frame' / 'model.safetensors'}}}"))
    fgfa = load_config(DetTrainConfig, tmp_path / "fgfa.yaml", kind="det")
    train_detection(fgfa, out=tmp_path / "fgfa", progress=False)
    model, meta = load_detector(tmp_path / "fgfa" / "model.safetensors")
    assert model.aggregator is not None and meta["flow_net"] == "flownet_inception"

    export("vid", tmp_path / "vid", SynthConfig(height=64, width=96, num_frames=6), videos=0, val_videos=2,
           progress=False)
    data = VidDataset(tmp_path / "vid", "val")
    assert len(data) == 2 and data.num_frames(0) == 6
    for config in (DetStreamConfig("frame"), DetStreamConfig("dff", key_interval=3), DetStreamConfig("fgfa", window=2)):
        ev = evaluate_detection(model, data, config, save_detections=tmp_path / f"{config.method}.txt", progress=False)
        assert 0.0 <= ev.result.map <= 1.0 and ev.ms_per_frame > 0
        assert sum(r.result.num_gt["all"] for r in [ev]) == sum(len(data.targets(v, t).labels)
                                                                for v in range(2) for t in range(6))
    ev = evaluate_detection(model, data, DetStreamConfig("frame"), postprocess="seq-nms", progress=False)
    assert 0.0 <= ev.result.map <= 1.0
    from featflow.cli import main
    from featflow.evaluation.vid_map import read_vid_results

    assert main(["eval", "det", "--data", str(tmp_path / "vid"),
                 "--weights", str(tmp_path / "fgfa" / "model.safetensors"),
                 "--method", "dff", "--key-interval", "2", "--json", str(tmp_path / "dff.json"),
                 "--save-detections", str(tmp_path / "dff_cli.txt"), "--quiet"]) == 0
    report = json.loads((tmp_path / "dff.json").read_text())
    assert report["method"] == "dff" and report["key_interval"] == 2 and report["frames"] == 12
    ids = [list(v.frame_ids) for v in data.videos]
    assert [len(v) for v in read_vid_results(tmp_path / "dff_cli.txt", ids)] == [6, 6]
    assert ids == [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]]  # as VID_val_frames.txt numbers them
    with pytest.raises(SystemExit) as bad_option:  # checked by argparse, as every command's key interval
        main(["eval", "det", "--data", str(tmp_path / "vid"), "--weights", "w", "--key-interval", "0"])
    assert bad_option.value.code == 2
    assert main(["eval", "det", "--data", str(tmp_path / "vid"), "--weights", "w", "--seq-nms",
                 "--postprocess", "mgp"]) == 2
    with pytest.raises(ValueError, match="unknown detection method"):
        DetStreamConfig("rfcn")
