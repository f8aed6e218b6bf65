"""featflow.analysis.profile (featflow bench profile): DFF's and FGFA's stages, their multiply-adds and times."""

import json
from types import SimpleNamespace

import pytest

from featflow.analysis.cost import feature_net_cost, flow_net_cost
from featflow.analysis.profile import (
    REPORT_SETTINGS,
    MethodProfile,
    StageProfile,
    _category,
    profile_markdown,
    profile_method,
    report_runs,
    speed_markdown,
)
from featflow.errors import FeatflowError
from featflow.modeling.precision import bf16_supported


def test_dff_profile_has_each_stage_at_its_share_of_a_frame():
    result = profile_method("seg", "dff", "resnet18", "flownet_inception", (48, 64), key_interval=4, repeats=1)
    stages = {s.name: s for s in result.stages}
    # F's half-resolution input is prepared once per frame, as the streams' StreamFlow keeps it for every pair
    assert list(stages) == ["N_feat", "F's input (half resolution)", "F (flow and scale field)", "W (warp x scale)",
                            "head"]
    assert [s.calls_per_frame for s in result.stages] == [0.25, 1.0, 0.75, 0.75, 1.0]
    assert stages["F's input (half resolution)"].multiply_adds == 0
    # the cost table's counts: N_feat's and F's (scale field included) multiply-adds
    assert stages["N_feat"].multiply_adds == feature_net_cost("resnet18", 48, 64)
    assert stages["F (flow and scale field)"].multiply_adds == flow_net_cost("flownet_inception", 48, 64)
    assert stages["W (warp x scale)"].multiply_adds == 0 and stages["W (warp x scale)"].gmacs_per_second is None
    r = flow_net_cost("flownet_inception", 48, 64) / feature_net_cost("resnet18", 48, 64)
    assert result.arithmetic_ratio == pytest.approx(4 / (1 + 3 * r))
    assert result.ms_per_frame == pytest.approx(sum(s.calls_per_frame * s.ms_per_call for s in result.stages))
    assert result.measured_ratio == pytest.approx(result.single_frame_ms / result.ms_per_frame)
    for stage in result.stages:  # the operator split shares out the stage's timed milliseconds
        assert stage.ms_per_call > 0 and sum(stage.operators.values()) == pytest.approx(stage.ms_per_call)
    assert "convolution" in stages["N_feat"].operators
    assert "| N_feat | 0.25 |" in profile_markdown(result)


def test_fgfa_profile_runs_f_and_the_warp_once_per_pair():
    result = profile_method("det", "fgfa", "resnet18", "flownet_inception", (48, 64), window=2, repeats=1)
    calls = {s.name: s.calls_per_frame for s in result.stages}
    assert calls == {"N_feat": 1, "embedding": 1, "F's input (half resolution)": 1, "F (flow), 4 pairs a call": 1,
                     "W (warp of features and embedding)": 4,
                     "weights and sum": 1, "head": 1}
    stages = {s.name: s for s in result.stages}
    flow = stages["F (flow), 4 pairs a call"].multiply_adds  # the 2K = 4 pairs of a frame in one call
    assert flow % 4 == 0 and flow / 4 < flow_net_cost("flownet_inception", 48, 64)  # no scale field in FGFA
    single = stages["N_feat"].multiply_adds + stages["head"].multiply_adds
    total = sum(s.calls_per_frame * s.multiply_adds for s in result.stages)
    assert result.arithmetic_ratio == pytest.approx(total / single) and result.arithmetic_ratio > 1
    assert "Furthest from its arithmetic" in speed_markdown([result])
    data = json.loads(json.dumps(result.to_json()))
    assert data["window"] == 2 and len(data["stages"]) == 7 and data["stages"][3]["ms_per_frame"] > 0


def test_operators_take_the_category_of_their_outermost_recognised_caller():
    def event(name, parent=None):
        return SimpleNamespace(name=name, cpu_parent=parent)

    transposed = event("aten::conv_transpose2d")
    assert _category(event("aten::_convolution", event("aten::convolution", transposed))) == "transposed convolution"
    assert _category(event("aten::mkldnn_convolution", event("aten::conv2d"))) == "convolution"
    assert _category(event("aten::index", event("torchvision::nms"))) == "NMS"
    assert _category(event("aten::copy_")) == "memory-layout copies"
    assert _category(event("aten::empty")) == "other"


def test_bench_profile_cli(tmp_path, capsys):
    from featflow.cli import main

    assert main(["bench", "profile"]) == 2
    assert "--task" in capsys.readouterr().err
    assert main(["bench", "profile", "--task", "seg", "--method", "fgfa"]) == 2
    assert main(["bench", "profile", "--task", "det", "--method", "dff", "--feature-net", "resnet18",
                 "--flow-net", "flownet_inception", "--size", "48x64", "--key-interval", "2", "--repeats", "1",
                 "--report", str(tmp_path)]) == 0
    assert "| F (flow and scale field) |" in capsys.readouterr().out
    report = json.loads((tmp_path / "speed.json").read_text())
    assert report["command"] and report["profiles"][0]["task"] == "det" and "machine" in report
    assert "# Speed" in (tmp_path / "speed.md").read_text()


def test_a_compiled_profile_counts_the_same_work_and_the_report_sets_it_beside_eager():
    eager = profile_method("seg", "dff", "resnet18", "flownet_inception", (48, 64), key_interval=4, repeats=1)
    compiled = profile_method("seg", "dff", "resnet18", "flownet_inception", (48, 64), key_interval=4, repeats=1,
                              compile=True)
    assert compiled.compiled and not eager.compiled
    assert [s.multiply_adds for s in compiled.stages] == [s.multiply_adds for s in eager.stages]
    assert all(s.ms_per_call > 0 for s in compiled.stages)
    text = speed_markdown([eager, compiled])
    assert "| seg DFF resnet18 + flownet_inception, 48x64, l=4 | fp32 eager |" in text
    assert "| seg DFF resnet18 + flownet_inception, 48x64, l=4 | fp32 compiled |" in text
    assert json.loads(json.dumps(compiled.to_json()))["compiled"] is True


def test_offline_dff_profiles_f_once_per_batch_and_keeps_the_arithmetic():
    """flow_batch b: one F call serves b propagated frames, so it runs (l-1)/l / b times a frame and counts b
    frames' multiply-adds; the multiply-add bound is the frame-by-frame one."""
    eager = profile_method("seg", "dff", "resnet18", "flownet_inception", (48, 64), key_interval=4, repeats=1)
    batched = profile_method("seg", "dff", "resnet18", "flownet_inception", (48, 64), key_interval=4, repeats=1,
                             flow_batch=3)
    f_eager, f_batched = eager.stages[2], batched.stages[2]
    assert f_batched.name == "F (flow and scale field), 3 frames a call"
    assert f_batched.calls_per_frame == pytest.approx(0.25) and f_batched.multiply_adds == 3 * f_eager.multiply_adds
    assert batched.arithmetic_ratio == pytest.approx(eager.arithmetic_ratio)
    assert "fp32 eager, F on 3 frames a call" in speed_markdown([eager, batched])
    with pytest.raises(FeatflowError, match="flow_batch 4"):
        profile_method("seg", "dff", "resnet18", "flownet_inception", (48, 64), key_interval=4, flow_batch=4)


def test_a_bf16_profile_says_its_precision_and_the_report_runs_every_variant():
    result = profile_method("det", "dff", "resnet18", "flownet_inception", (48, 64), key_interval=2, repeats=1,
                            precision="bf16")
    import torch

    assert result.precision == ("bf16" if bf16_supported(torch.device("cpu")) else "fp32")
    assert json.loads(json.dumps(result.to_json()))["precision"] == result.precision
    runs = report_runs()
    dff = [s for s in REPORT_SETTINGS if s["method"] == "dff"]
    assert len(runs) == 3 * len(REPORT_SETTINGS) + 2 * len(dff)
    batched = [r for r in runs if r.get("flow_batch")]
    assert {(r["task"], r["flow_batch"]) for r in batched} == {(s["task"], s["key_interval"] - 1) for s in dff}
    assert {r.get("precision", "fp32") for r in batched} == {"fp32", "bf16"}
    emulated = report_runs(native_bf16=False)  # bfloat16 emulated: its runs are left out, the others kept
    assert emulated == [r for r in runs if r.get("precision") != "bf16"]
    assert len(emulated) == len(runs) - len(REPORT_SETTINGS) - len(dff)
    machine = {"cpu_model": "AMD EPYC", "torch_threads": 2, "torch": "2", "cpu_bf16": False}
    assert "Measured on: AMD EPYC, 2 threads" in speed_markdown([result], machine)
    assert "native bfloat16: no (the bf16 runs are left out" in speed_markdown([result], machine)


def test_the_every_stage_bound_counts_the_head_and_a_saved_report_re_renders_unchanged(tmp_path, capsys):
    """DFF's talk's-rule bound takes the head as free; the every-stage ratio does not. With R-FCN's 2.4 GMAC head
    beside a 164 GMAC N_feat and a 1.72 GMAC F at l=10, the talk's 9.14x is really 8.18x."""
    def stage(name, calls, macs):
        return StageProfile(name, calls, 10.0, int(macs * 1e9))

    stages = (stage("N_feat", 0.1, 164.0), stage("F (flow and scale field)", 0.9, 1.72), stage("W", 0.9, 0),
              stage("head", 1, 2.4))
    dff = MethodProfile("det", "dff", "resnet101", "flownet_inception", (600, 1000), 10, 0, stages, 3, 2, "cpu")
    assert dff.arithmetic_ratio == pytest.approx(10 / (1 + 9 * 1.72 / 164.0))  # 9.14
    assert dff.stage_ratio == pytest.approx(166.4 / (16.4 + 0.9 * 1.72 + 2.4))  # 8.18
    assert round(dff.arithmetic_ratio, 2) == 9.14 and round(dff.stage_ratio, 2) == 8.18
    assert "9.14x by the talk's rule (N_feat and F only) and at 8.18x with every stage" in profile_markdown(dff)
    # FGFA: one floor either way
    fgfa = MethodProfile("det", "fgfa", "resnet101", "flownet", (600, 1000), 1, 10, stages, 3, 2, "cpu")
    assert fgfa.arithmetic_ratio == fgfa.stage_ratio
    # a saved report comes back as the profiles it was written from
    assert MethodProfile.from_json(json.loads(json.dumps(dff.to_json()))) == dff
    from featflow.cli import main

    assert main(["bench", "profile", "--report", str(tmp_path), "--from-json"]) == 2
    assert "no " in capsys.readouterr().err
    (tmp_path / "speed.json").write_text(json.dumps({"command": "featflow bench profile --report r", "machine": {},
                                                     "profiles": [dff.to_json(), fgfa.to_json()]}))
    assert main(["bench", "profile", "--report", str(tmp_path), "--from-json"]) == 0
    text = (tmp_path / "speed.md").read_text()
    assert "| 9.14x | 8.18x |" in text and "featflow bench profile --report r" in text
    assert json.loads((tmp_path / "speed.json").read_text())["profiles"][0]["stage_ratio"] == pytest.approx(
        dff.stage_ratio)
