"""featflow train: both tasks from the command line."""


import pytest


@pytest.mark.slow
def test_train_cli_runs_both_tasks_and_reports_their_metric(tmp_path, capsys):
    from featflow.cli import main

    (tmp_path / "det.yaml").write_text("""
model: {arch: resnet18, channels: 16, anchor_sizes: [16, 32]}
data: {size: [48, 64], frames_per_video: 2}
train: {batch_size: 2, iterations: 1, warmup: 1, workers: 0}
eval: {samples: 2, every: 1}
""")
    (tmp_path / "seg.yaml").write_text("""
model: {arch: resnet18, channels: 16}
data: {size: [48, 64], frames_per_video: 2}
train: {batch_size: 2, iterations: 1, warmup: 1, workers: 0}
eval: {samples: 2, every: 1}
""")
    assert main(["train", "det", "--config", str(tmp_path / "det.yaml"), "--out", str(tmp_path / "d"), "--quiet"]) == 0
    assert "validation mAP" in capsys.readouterr().out
    assert main(["train", "seg", "--config", str(tmp_path / "seg.yaml"), "--out", str(tmp_path / "s"), "--quiet"]) == 0
    assert "validation mIoU" in capsys.readouterr().out
    assert (tmp_path / "d" / "model.safetensors").is_file() and (tmp_path / "s" / "model.safetensors").is_file()
    assert main(["train", "det", "--config", str(tmp_path / "nope.yaml")]) == 2


def test_train_init_takes_what_a_config_init_takes(tmp_path, capsys):
    """--init is the setting model.init: a run: reference or a shipped model's name resolves as in a config file."""
    from featflow.cli import main

    (tmp_path / "det.yaml").write_text("model: {arch: resnet18, channels: 16, anchor_sizes: [16, 32]}\n")
    out = ["--out", str(tmp_path / "d"), "--quiet"]
    assert main(["train", "det", "--config", str(tmp_path / "det.yaml"), "--init", "run:det/nonesuch", *out]) == 2
    assert "no packaged det config 'nonesuch'" in capsys.readouterr().err
    # the shipped detector is found (and then refused: it was trained with 128 channels, not 16)
    assert main(["train", "det", "--config", str(tmp_path / "det.yaml"), "--init", "det-frame-r18-vid", *out]) == 2
    assert "det_frame_r18_vid_synth.safetensors does not fit the config: it has channels 128" in capsys.readouterr().err
