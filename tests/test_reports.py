import json

import pytest

from featflow.analysis.difficulty import run_difficulty_probe
from featflow.analysis.flow_report import run_flow_benchmark
from featflow.analysis.synth_report import run_synth_benchmark
from featflow.engine.checkpoint import save_flow_net
from featflow.modeling.flow_net import build_flow_net


@pytest.mark.slow
def test_synth_report(tmp_path):
    paths = run_synth_benchmark(tmp_path, videos=2, size=(32, 64), command="featflow bench synth --test",
                                progress=False)
    assert {p.name for p in paths} == {"synth.md", "synth.json", "synth.png", "synth_cells.png"}
    data = json.loads((tmp_path / "synth.json").read_text())
    assert data["command"] == "featflow bench synth --test"
    speed = data["speed"]["shapes, default degradations"]
    assert speed["render_fps"] > 0 and speed["fps_with_setup"] <= speed["render_fps"]
    for content in data["content"].values():
        assert abs(sum(content["motion_share"].values()) - 1) < 1e-9
        assert 0 <= content["cells"]["share_at_least_4"] <= 1
        assert sum(content["cells"]["histogram"]) == content["boxes"]  # every box in one bin of the size plot
        assert set(content["deterioration"]) == {"smear", "defocus", "foreshortening", "hidden"}
    assert "Reproduce with" in (tmp_path / "synth.md").read_text()


@pytest.mark.slow
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


@pytest.mark.slow
def test_difficulty_probe_evaluates_a_per_frame_checkpoint(tmp_path):
    from featflow.data.synthetic import CLASS_NAMES
    from featflow.engine.checkpoint import save_segmenter
    from featflow.methods.segmentation import VideoSegmenter

    weights = tmp_path / "run" / "model.safetensors"
    weights.parent.mkdir()
    save_segmenter(weights, VideoSegmenter(len(CLASS_NAMES), "resnet18", 16), list(CLASS_NAMES),
                   {"iterations": "7", "config": json.dumps({"data": {"size": [32, 64], "degradations": "blur=0.5"},
                                                             "train": {"batch_size": 8}})})
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"wall_seconds": 90.0}))
    run_difficulty_probe(weights, tmp_path, videos=1, progress=False)
    data = json.loads((tmp_path / "difficulty.json").read_text())
    assert data["training"] == {"iterations": 7, "minutes": 1.5, "size": [32, 64], "batch_size": 8,
                                "degradations": "blur=0.5"}
    assert "1.5 minutes" in (tmp_path / "difficulty.md").read_text()
    assert "degradations: blur=0.5" in (tmp_path / "difficulty.md").read_text()
    for cond in ("degraded", "clean"):
        assert 0.0 <= data["scores"][cond]["all"]["miou"] <= 1.0
    dff = tmp_path / "dff.safetensors"
    save_segmenter(dff, VideoSegmenter(len(CLASS_NAMES), "resnet18", 16, "flownet_inception"), list(CLASS_NAMES), {})
    with pytest.raises(ValueError, match="per-frame segmenter"):
        run_difficulty_probe(dff, tmp_path, videos=1, progress=False)


def test_flow_report_says_what_would_close_a_gap():
    from featflow.analysis.flow_report import REFERENCE, _markdown
    from featflow.evaluation.flow_metrics import FlowScore

    def scores(ours: float) -> dict:
        return {c: {REFERENCE: FlowScore(2.0, 1.5, 0.01, 4), "net": FlowScore(ours, ours, 0.02, 4)}
                for c in ("degraded", "clean")}

    short = _markdown(scores(2.5), {}, 4, (64, 128), "net")
    assert "falls short of DIS medium by 0.500 px" in short and "What would close the gap" in short
    assert "What would close the gap" not in _markdown(scores(1.5), {}, 4, (64, 128), "net")


@pytest.mark.slow
def test_speed_row_and_segmentation_report(tmp_path):
    from featflow.analysis.seg_report import CurvePlan, RowPlan, SegReportPlan, SpeedPlan, run_segmentation_report
    from featflow.analysis.speed import measure_speed, speedup_curve
    from featflow.data.synthetic import NUM_CLASSES, SynthConfig
    from featflow.data.synthetic.export import export
    from featflow.engine.checkpoint import save_segmenter
    from featflow.methods.segmentation import VideoSegmenter

    row = measure_speed("seg", "resnet18", "flownet_inception", (64, 96), key_interval=3, frames=6)
    assert row.frames == 6 and row.per_frame_fps > 0 and row.dff_fps > 0
    assert row.speedup == pytest.approx(row.dff_fps / row.per_frame_fps)
    curve = speedup_curve(row, [1, 3])
    assert curve[1] == pytest.approx((1000 / row.per_frame_fps) / row.key_frame_ms)

    export("cityscapes", tmp_path / "data", SynthConfig(height=48, width=64, num_frames=30), videos=0, val_videos=2,
           progress=False)
    names = ["c"] * NUM_CLASSES
    save_segmenter(tmp_path / "frame.safetensors", VideoSegmenter(NUM_CLASSES, "resnet18", 16), names)
    save_segmenter(tmp_path / "dff.safetensors", VideoSegmenter(NUM_CLASSES, "resnet18", 16, "flownet_inception"),
                   names)
    frame, dff = str(tmp_path / "frame.safetensors"), str(tmp_path / "dff.safetensors")
    plan = SegReportPlan(
        data=str(tmp_path / "data"), key_interval=2, max_interval=3,
        rows=(RowPlan("Frame", frame, "frame"), RowPlan("SFF-fast", frame, "sff-fast"), RowPlan("DFF", dff, "dff"),
              RowPlan("DFF separate", frame, "dff", flow_net="flownet_inception")),
        curves=(CurvePlan("resnet18 + flownet_inception", dff, frame),),
        speed=SpeedPlan(feature_net="resnet18", flow_nets=("flownet_inception",), sizes=((48, 64),), frames=4))
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {"model": {"init": None}, "train": {"batch_size": 4}},
                                                       "iterations": 12, "wall_seconds": 60.0,
                                                       "final": {"val_miou": 0.25}}))
    paths = run_segmentation_report(plan, tmp_path / "report", progress=False)
    assert {p.name for p in paths} == {"segmentation.md", "segmentation.json", "segmentation.png"}
    data = json.loads((tmp_path / "report" / "segmentation.json").read_text())
    assert [r["name"] for r in data["ablation"]] == ["Frame", "SFF-fast", "DFF", "DFF separate"]
    assert data["ablation"][0]["speedup"] == pytest.approx(1.0)
    assert sorted(int(l) for l in data["curves"][0]["miou"]) == [1, 2, 3]
    assert len(data["speed"]) == 1
    text = (tmp_path / "report" / "segmentation.md").read_text()
    assert "DFF fix" not in text and "| DFF separate |" in text
    own = data["curves"][0]["miou"]["1"]
    assert f"DFF's own N_feat run on every frame (l=1) gets {100 * own:.1f}" in text
    # both checkpoints share the metrics.json here; total samples = 12 iterations x batch 4, along no init chain
    assert "| random init | 12 | 1.0 | 48 | 1.0 | val_miou 0.250 |" in text


def test_training_budgets_add_up_along_init_chains_and_plateau_is_read_off_the_curve(tmp_path):
    from featflow.analysis.reports import curves_plot, plateau_gain, training_lines, training_records

    def run(name: str, init: str | None, iterations: int, batch: int, minutes: float, curve: list[float]) -> str:
        folder = tmp_path / name
        folder.mkdir()
        history = [{"iteration": (i + 1) * iterations // len(curve), "val_map": v, "loss": 1.0}
                   for i, v in enumerate(curve)]
        model = {"init": init, "features_init": None if init else "seg-dff-r18-synth"}
        (folder / "metrics.json").write_text(json.dumps({
            "config": {"model": model, "train": {"batch_size": batch}}, "iterations": iterations,
            "wall_seconds": 60 * minutes, "final": history[-1], "history": history}))
        return str(folder / "model.safetensors")

    base = run("frame", None, 100, 8, 10.0, [0.1, 0.2, 0.3, 0.305])
    video = run("fgfa", base, 50, 4, 20.0, [0.32, 0.34])
    records = {r["weights"]: r for r in training_records([video])}
    assert set(records) == {video, base}  # the chain is followed
    assert (records[base]["total_samples"], records[base]["total_minutes"]) == (800, 10.0)
    assert (records[video]["total_samples"], records[video]["total_minutes"]) == (800 + 200, 30.0)
    assert plateau_gain(records[base]["curve"], "val_map") == pytest.approx(0.005)  # iteration 75 -> 100
    assert plateau_gain([{"iteration": 10, "val_map": 0.1}], "val_map") is None
    lines = "\n".join(training_lines(list(records.values())))
    assert "| N_feat from `seg-dff-r18-synth` | 100 | 10.0 | 800 | 10.0 |" in lines
    assert curves_plot(tmp_path / "curves.png", list(records.values()), "val_map", "mAP")
    assert (tmp_path / "curves.png").stat().st_size > 1000
