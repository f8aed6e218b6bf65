import json

from featflow.analysis.difficulty import run_difficulty_probe
from featflow.analysis.flow_report import run_flow_benchmark
from featflow.analysis.synth_report import run_synth_benchmark
from featflow.engine.checkpoint import save_flow_net
from featflow.modeling.flow_net import build_flow_net


def test_synth_report(tmp_path):
    paths = run_synth_benchmark(tmp_path, videos=2, size=(32, 64), command="featflow bench synth --test",
                                progress=False)
    assert {p.name for p in paths} == {"synth.md", "synth.json", "synth.png"}
    data = json.loads((tmp_path / "synth.json").read_text())
    assert data["command"] == "featflow bench synth --test"
    speed = data["speed"]["default degradations"]
    assert speed["render_fps"] > 0 and speed["fps_with_setup"] <= speed["render_fps"]
    assert abs(sum(data["content"]["motion_share"].values()) - 1) < 1e-9
    assert "Reproduce with" in (tmp_path / "synth.md").read_text()


def test_flow_report_with_a_given_net(tmp_path):
    save_flow_net(tmp_path / "w.safetensors", build_flow_net("flownet_inception"), "flownet_inception",
                  {"iterations": "0", "config": "{}"})
    paths = run_flow_benchmark({"untrained": tmp_path / "w.safetensors"}, pairs=2, size=(48, 64), report=tmp_path,
                               progress=False)
    assert {p.name for p in paths} == {"flow.md", "flow.json", "flow.png"}
    data = json.loads((tmp_path / "flow.json").read_text())
    assert set(data["scores"]) == {"degraded", "clean"}
    assert {"zero flow", "DIS medium", "DIS ultrafast", "untrained"} <= set(data["scores"]["clean"])
    assert data["trained"]["untrained"]["model"] == "flownet_inception"


def test_difficulty_probe_runs_on_a_tiny_budget(tmp_path):
    run_difficulty_probe(tmp_path, minutes=0.05, size=(32, 64), videos=1, progress=False)
    data = json.loads((tmp_path / "difficulty.json").read_text())
    assert data["iterations"] >= 1
    for cond in ("degraded", "clean"):
        assert 0.0 <= data["scores"][cond]["all"]["miou"] <= 1.0
