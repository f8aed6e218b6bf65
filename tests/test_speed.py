"""featflow.analysis.speed: the speed rows of DFF and FGFA (random weights)."""


import pytest


def test_speed_rows_for_detection_and_fgfa(capsys):
    from featflow.analysis.speed import measure_fgfa_speed, measure_speed
    from featflow.cli import main

    row = measure_speed("det", "resnet18", "flownet_inception", (48, 64), key_interval=2, frames=2)
    assert row.task == "det" and row.per_frame_fps > 0 and row.dff_fps > 0 and row.key_frame_ms > 0
    fgfa = measure_fgfa_speed("resnet18", "flownet_inception", (48, 64), window=1, frames=1)
    assert fgfa.ms_per_frame > 0 and fgfa.cost_ratio == pytest.approx(fgfa.ms_per_frame / fgfa.per_frame_ms)
    assert main(["bench", "speed", "--task", "seg", "--window", "1", "--feature-net", "resnet18",
                 "--size", "48x64"]) == 2
    assert "--task det" in capsys.readouterr().err
