"""The experiment harness in ``benchmarks/`` (the reports behind ``reports/``, their plans, the exact-flow
diagnostic) and how ``featflow bench`` finds it in a source checkout."""

import json
import os

import numpy as np
import pytest
import torch

from benchmarks.difficulty import run_difficulty_probe
from benchmarks.flow_report import run_flow_benchmark
from benchmarks.synth_report import run_synth_benchmark
from featflow.engine.checkpoint import save_flow_net
from featflow.errors import FeatflowError
from featflow.modeling.flow_net import build_flow_net


@pytest.mark.slow
def test_the_machine_description_names_the_cpu_and_its_bfloat16():
    from featflow.analysis.reports import machine_description
    from featflow.modeling.precision import bf16_supported

    machine = machine_description()  # speed figures differ several-fold between CPUs of the same architecture
    assert machine["cpu_bf16"] == bf16_supported(torch.device("cpu"))
    assert machine["cpu_model"] is None or isinstance(machine["cpu_model"], str) and machine["cpu_model"]
    assert machine["cpu_count"] == os.cpu_count() and machine["torch_threads"] == torch.get_num_threads()


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


def test_bench_flow_refuses_a_report_name_that_leaves_the_report_folder(capsys):
    from featflow.cli import main

    for stem in ("../flow", "a/b", ""):
        with pytest.raises(SystemExit) as exit_info:
            main(["bench", "flow", "--stem", stem])
        assert exit_info.value.code == 2 and "argument --stem" in capsys.readouterr().err


@pytest.mark.slow
def test_flow_report_with_a_given_net(tmp_path):
    """Any flow net (here PWC-Net Lite) under a report name of its own (``--stem``)."""
    save_flow_net(tmp_path / "w.safetensors", build_flow_net("pwcnet_lite"), "pwcnet_lite",
                  {"iterations": "0", "config": "{}"})
    paths = run_flow_benchmark({"untrained": tmp_path / "w.safetensors"}, pairs=2, size=(48, 64), report=tmp_path,
                               progress=False, stem="flow_pwc")
    assert {p.name for p in paths} == {"flow_pwc.md", "flow_pwc.json", "flow_pwc.png"}
    data = json.loads((tmp_path / "flow_pwc.json").read_text())
    assert set(data["scores"]) == {"degraded", "clean", "real textures"}
    assert {"zero flow", "DIS medium", "DIS ultrafast", "untrained"} <= set(data["scores"]["clean"])
    assert data["trained"]["untrained"]["model"] == "pwcnet_lite"
    real = {(r["pair"], r["method"]): r for r in data["real_footage"]}
    zero = real["motorcycle (Middlebury 2014)", "zero flow"]
    dis = real["motorcycle (Middlebury 2014)", "DIS medium"]
    assert dis["photometric"] < zero["photometric"] and dis["epe"] < zero["epe"]  # real motion, found by DIS
    assert ("motorcycle (Middlebury 2014), x0.5", "untrained") in real
    warp = data["feature_warp_error"]
    assert warp["zero flow"] == pytest.approx(1.0) and "untrained (its stride-16 output)" in warp
    assert data["features_model"] == "seg-frame-r18-synth"
    assert "## Real footage" in (tmp_path / "flow_pwc.md").read_text()
    assert "### Error by displacement" in (tmp_path / "flow_pwc.md").read_text()
    videos = [r for r in data["real_videos"] if r["method"] == "DIS medium"]
    assert {r["video"] for r in videos} == {"bikes", "carphone"} and len(videos) >= 30
    assert np.mean([r["removed"] for r in videos]) > 0.2  # real motion that DIS aligns
    assert "## Real video" in (tmp_path / "flow_pwc.md").read_text()
    side_by_side = (tmp_path / "flow_pwc.md").read_text().split("Each net against the targets' tests")[1]
    pairs = sum(1 for r in data["real_videos"] if r["method"] == "untrained")
    assert "| untrained |" in side_by_side and f"/ {pairs} |" in side_by_side
    assert sum(b["share"] for b in dis["by_displacement"]) == pytest.approx(1.0)  # 0-64 px hold every disparity


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
    from benchmarks.flow_report import REFERENCE, _markdown
    from featflow.evaluation.flow_metrics import FlowScore

    def scores(ours: float) -> dict:
        return {c: {REFERENCE: FlowScore(2.0, 1.5, 0.01, 4), "net": FlowScore(ours, ours, 0.02, 4)}
                for c in ("degraded", "clean")}

    def bins(predicted: float) -> list[dict]:
        return [{"low": 0.0, "high": 16.0, "share": 0.25, "epe": 1.0, "predicted": 8.0, "true": 8.5},
                {"low": 16.0, "high": 32.0, "share": 0.75, "epe": 9.0, "predicted": predicted, "true": 25.0}]

    real = [{"pair": "p", "method": "zero flow", "epe": 9.0, "photometric": 20.0, "removed": 0.0, "by_displacement":
             bins(0.0)},
            {"pair": "p", "method": REFERENCE, "epe": 2.0, "photometric": 10.0, "removed": 0.5, "by_displacement":
             bins(24.0)},
            {"pair": "p", "method": "net", "epe": 3.0, "photometric": 14.0, "removed": 0.3,  # at least half of 50%
             "by_displacement": bins(15.0)}]
    short = _markdown(scores(2.5), {}, 4, (64, 128), "net", real, {"zero flow": 1.0}, 4)
    assert "| method | 0-16 px (25%) | 16-32 px (75%) |" in short
    assert "| net | 1.0 (8.0 / 8.5) | 9.0 (15.0 / 25.0) |" in short
    assert "falls short of DIS medium by 0.500 px" in short and "What would close the gap" in short
    assert "removes 30% of the photometric error against DIS medium's 50%" in short and ": met." in short
    assert "What would close the gap" not in _markdown(scores(1.5), {}, 4, (64, 128), "net", real, {}, 4)
    real[2]["removed"] = 0.2  # less than half of DIS's
    assert ": not met." in _markdown(scores(1.5), {}, 4, (64, 128), "net", real, {}, 4)
    # real video: the target holds pair by pair
    videos = [{"pair": f"v, frame {i}", "video": "v", "gap": 1, "method": m, "photometric": 1.0, "removed": r}
              for i, ours in enumerate((0.3, 0.1)) for m, r in (("zero flow", 0.0), (REFERENCE, 0.4), ("net", ours))]
    text = _markdown(scores(1.5), {}, 4, (64, 128), "net", real, {}, 4, videos)
    assert "| net | 1.00 | 20% | 1 / 2 | v, frame 1: 10% vs 40% |" in text
    assert "adds none, on 1 of 2 pairs (target: every pair): not met." in text


@pytest.mark.slow
def test_speed_row_and_segmentation_report(tmp_path):
    from benchmarks.seg_report import CurvePlan, RowPlan, SegReportPlan, SpeedPlan, run_segmentation_report
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
        speed=SpeedPlan(feature_net="resnet18", flow_nets=("flownet_inception",), sizes=((48, 64),), frames=4),
        bootstrap_samples=50)
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
    # every row against Frame and DFF against the others, with intervals over snippets
    miou = {r["name"]: 100 * r["miou"] for r in data["ablation"]}
    pairs = {(c["base"], c["other"]): c["miou"] for c in data["comparisons"]}
    assert set(pairs) == {("Frame", "SFF-fast"), ("Frame", "DFF"), ("Frame", "DFF separate"), ("SFF-fast", "DFF"),
                          ("DFF separate", "DFF")}
    for (base, other), d in pairs.items():
        assert d["delta"] == pytest.approx(miou[other] - miou[base], abs=1e-6)
        assert d["ci_low"] - 1e-9 <= d["delta"] <= d["ci_high"] + 1e-9
    assert "## Differences with 95% bootstrap intervals" in text and "| DFF | Frame |" in text
    assert "## Where propagation loses (DFF, by class)" in text
    by_class = data["propagation_by_class"]  # the data's classes, by their names in the data
    assert by_class and all(c["loss"] == pytest.approx(c["iou_key"] - c["iou_last"]) for c in by_class)


def test_propagation_by_class_reads_offsets_and_region_sizes_in_cells():
    import numpy as np

    from benchmarks.seg_report import propagation_by_class, region_cells

    label = np.zeros((64, 96), np.uint8)
    label[8:40, 16:80] = 1  # one region 32 px high: 2 cells on its shorter side
    label[50:58, 0:16] = 2  # two regions 8 px high: half a cell
    label[50:58, 40:48] = 2
    label[60:64, 90:92] = 1  # a stray fragment of class 1: few pixels, so it does not move the pixel median
    label[0:4, 0:2] = 1
    cells = region_cells([label], 4)
    assert cells[1] == 2.0 and cells[2] == 0.5 and cells[3] is None
    confusion = np.zeros((3, 2, 4, 4), np.int64)  # 3 key offsets, 2 snippets, [truth, prediction]
    confusion[:, :, 0, 0] = 10
    confusion[0, :, 1, 1] = 5  # class 1: right at offset 0 ...
    confusion[2, :, 1, 1], confusion[2, :, 1, 0] = 3, 2  # ... and 3 of 5 pixels at the last offset
    rows = {r["class"]: r for r in propagation_by_class(confusion, ["a", "b", "c", "d"], cells)}
    assert set(rows) == {"a", "b"}  # classes without labelled pixels are left out
    assert rows["b"]["iou_key"] == pytest.approx(1.0) and rows["b"]["iou_last"] == pytest.approx(0.6)
    assert rows["b"]["loss"] == pytest.approx(0.4) and rows["b"]["pixel_share"] == pytest.approx(5 / 15)
    assert rows["a"]["iou_last"] == pytest.approx(10 / 12) and rows["b"]["region_cells"] == 2.0


def test_training_budgets_add_up_along_init_chains_and_plateau_is_read_off_the_curve(tmp_path):
    from benchmarks.training import (
        chain_curve,
        chain_plateau_gain,
        curves_plot,
        earlier_records,
        plateau_gain,
        training_lines,
        training_records,
    )

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
    points = chain_curve(records[video], list(records.values()), "val_map")  # the chain's curve, in samples seen
    assert points == [(200, 0.1), (400, 0.2), (600, 0.3), (800, 0.305), (900, 0.32), (1000, 0.34)]
    assert chain_plateau_gain(points) == pytest.approx(0.04)  # samples 600 (<= 750) -> 1000
    assert chain_plateau_gain(points[:1]) is None
    lines = "\n".join(training_lines(list(records.values())))
    assert "| N_feat from `seg-dff-r18-synth` | 100 | 10.0 | 800 | 10.0 |" in lines
    assert curves_plot(tmp_path / "curves.png", list(records.values()), "val_map", "mAP")
    assert (tmp_path / "curves.png").stat().st_size > 1000
    # a shipped checkpoint whose run folder is gone: its chain from an earlier report's records, the batch size
    # (which older reports did not keep) from the packaged config that wrote the run
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"training": [
        {"weights": "runs/seg/frame_r18_long/model.safetensors", "init": "runs/seg/frame_r18/model.safetensors",
         "iterations": 10, "minutes": 2.0},
        {"weights": "runs/seg/frame_r18/model.safetensors", "init": None, "iterations": 5, "minutes": 1.0}]}))
    records = training_records(["runs/seg/frame_r18_long/model.safetensors"], earlier_records([earlier]))
    assert [(r["samples"], r["total_samples"], r["total_minutes"]) for r in records] == [(80, 120, 3.0), (40, 40, 1.0)]
    assert training_records(["runs/seg/frame_r18_long/model.safetensors"]) == []  # no record, no guess
    # a run that continued a shipped model (model.init: seg-frame-r18-long, resolved to the packaged file, wherever
    # the package lies): its chain goes on through the run that model was packed from (models.json trained_as)
    from featflow.registry import shipped_models

    shipped = next(m for m in shipped_models() if m.name == "seg-frame-r18-long")
    earlier.write_text(json.dumps({"training": [
        {"weights": shipped.trained_as, "init": None, "iterations": 10, "batch_size": 8, "minutes": 2.0}]}))
    cont = run("cont", str(tmp_path / "copy" / "featflow" / "weights" / shipped.file), 20, 8, 3.0, [0.5, 0.6])
    records = {r["weights"]: r for r in training_records([cont], earlier_records([earlier]))}
    assert records[cont]["init"] == shipped.trained_as
    from benchmarks.training import shipped_run

    assert shipped_run("seg-frame-r18-long") == shipped.trained_as  # by its name too (a report row's weights)
    assert shipped_run("runs/x.safetensors") == "runs/x.safetensors"
    assert (records[cont]["total_samples"], records[cont]["total_minutes"]) == (160 + 80, 5.0)


def test_a_detection_report_rewritten_from_json_sums_budgets_through_an_earlier_report(tmp_path):
    """The runs of a report are gone (runs/ lasts a session) and so is the run of the shipped model they started
    from: their records come from the report's own JSON, the start's from the plan's earlier_training report."""
    from benchmarks.det_report import DetReportPlan, DetRowPlan, _training

    row, start = "runs/det/gone_row/model.safetensors", "runs/det/gone_start/model.safetensors"
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"training": [
        {"weights": start, "init": None, "iterations": 100, "batch_size": 8, "minutes": 10.0}]}))
    saved = [{"weights": row, "init": start, "iterations": 40, "batch_size": 8, "samples": 320, "minutes": 4.0,
              "total_samples": 320, "total_minutes": 4.0}]
    plan = DetReportPlan(data="unused", ablation=(DetRowPlan("single frame", row),), earlier_training=(str(earlier),))
    records = {r["weights"]: r for r in _training(plan, saved)}
    assert (records[row]["total_samples"], records[row]["total_minutes"]) == (320 + 800, 14.0)
    assert records[start]["total_samples"] == 800
    # without the earlier report the chain stops at the row (what the report said before): no guess
    alone = _training(DetReportPlan(data="unused", ablation=(DetRowPlan("single frame", row),)), saved)
    assert [(r["weights"], r["total_samples"]) for r in alone] == [(row, 320)]
    # a plan naming a report that is not there: one line naming the setting and the file
    from featflow.errors import FeatflowError

    with pytest.raises(FeatflowError, match="earlier_training: no report .*missing.json"):
        _training(DetReportPlan(data="unused", ablation=(DetRowPlan("single frame", row),),
                                earlier_training=(str(tmp_path / "missing.json"),)), saved)


# ---- the detection report (moved from test_detection.py / test_fgfa.py with the harness) ------------------


@pytest.mark.slow
def test_detection_report_tables(tmp_path):
    from benchmarks.det_report import DetReportPlan, DetRowPlan, DetSpeedPlan, run_detection_report
    from featflow.data.synthetic import SynthConfig
    from featflow.data.synthetic.export import export
    from featflow.engine.checkpoint import save_detector
    from featflow.methods.detection import VideoDetector
    from featflow.modeling.rpn import RPNConfig

    export("vid", tmp_path / "vid", SynthConfig(height=48, width=64, num_frames=5), videos=0, val_videos=3,
           progress=False)
    names = [f"c{k}" for k in range(8)]
    paths = {}
    for name, kwargs in {"frame": {}, "fgfa": {"flow_net": "flownet_inception", "aggregation": "adaptive"},
                         "dff": {"flow_net": "flownet_inception"}}.items():
        torch.manual_seed(0)
        paths[name] = str(tmp_path / f"{name}.safetensors")
        save_detector(paths[name], VideoDetector(8, "resnet18", 16, rpn=RPNConfig(anchor_sizes=(16, 32, 64)),
                                                 **kwargs), names)
    plan = DetReportPlan(
        data=str(tmp_path / "vid"), videos=2, key_interval=2, window=1,
        ablation=(DetRowPlan("single frame", paths["frame"]), DetRowPlan("FGFA", paths["fgfa"], "fgfa")),
        postprocessing=(DetRowPlan("single frame", paths["frame"]),
                        DetRowPlan("single frame + Seq-NMS", paths["frame"], postprocess="seq-nms")),
        dff=(DetRowPlan("DFF", paths["dff"], "dff"),), frame_count_weights=paths["fgfa"], frame_count_windows=(0, 1),
        speed=DetSpeedPlan(feature_net="resnet18", flow_nets=("flownet_inception",), size=(48, 64), key_interval=2,
                           window=1, fgfa_flow_nets=("flownet_inception",), frames=2), bootstrap_samples=50,
        findings=("FGFA's weights are a plain average here.",), appearance=True)
    out = run_detection_report(plan, tmp_path / "report", progress=False)
    assert {p.name for p in out} == {"detection.md", "detection.json", "detection.png"}
    data = json.loads((tmp_path / "report" / "detection.json").read_text())
    assert [r["name"] for r in data["ablation"]] == ["single frame", "FGFA"]
    assert data["postprocessing"][1]["postprocess"] == "seq-nms" and len(data["frame_counts"]) == 2
    assert data["num_gt"]["all"] == data["ablation"][0]["num_gt"]["all"] > 0
    text = (tmp_path / "report" / "detection.md").read_text()
    assert ("| FGFA 3 frames + flownet_inception |" in text and "FGFA (FlowNet Inception) gains" in text
            and "| 3 |" in text)
    assert data["videos"] == 2 and "its first 2 of 3 videos" in text  # the plan's subset of the held-out videos
    # every difference carries its bootstrap interval, per motion category, beside the rows it compares
    pairs = {(c["base"], c["other"]) for c in data["comparisons"]}
    assert {("single frame", "FGFA"), ("single frame", "DFF"), ("single frame", "single frame + Seq-NMS"),
            ("1 frames", "3 frames")} <= pairs
    for c in data["comparisons"]:
        for category in ("all", "slow", "medium", "fast"):
            d = c[category]
            assert set(d) == {"delta", "ci_low", "ci_high"}
            if d["delta"] is not None and d["ci_low"] is not None:
                assert d["ci_low"] - 1e-9 <= d["delta"] <= d["ci_high"] + 1e-9
    assert "95% bootstrap intervals" in text
    assert "## What the tables show\n\n- FGFA's weights are a plain average here." in text  # the plan's findings
    weights = data["ablation"][1]["aggregation_weights"]  # FGFA's weights as the stream computed them
    assert 0 < weights["current_weight"] <= 1 and -1 <= weights["reference_cosine"] <= 1
    assert "## FGFA's adaptive weights at test" in text and "current_weight" not in data["ablation"][0]
    # accuracy by appearance: every box in one group, read from the generator that wrote the data
    appearance = data["appearance"]
    assert sum(appearance["boxes"].values()) == data["num_gt"]["all"]
    assert [r["name"] for r in appearance["rows"]] == ["single frame", "FGFA", "DFF"]
    assert appearance["rows"][0]["map"]["all"] == pytest.approx(data["ablation"][0]["map"])
    assert [t["deterioration"] for t in appearance["by_type"]] == ["smear", "defocus", "foreshortening", "hidden"]
    assert all(sum(t["boxes"].values()) == data["num_gt"]["all"] for t in appearance["by_type"])
    assert {d["other"] for d in appearance["differences"]} == {"FGFA", "DFF"}
    assert "## Accuracy by appearance" in text
    # findings written after the tables were seen: the report is rewritten from its JSON, evaluating nothing
    # (the weights may be gone by then), with its numbers and reproducing command kept
    import dataclasses

    for weights in paths.values():
        os.remove(weights)
    later = dataclasses.replace(plan, findings=("Written later.",))
    run_detection_report(later, tmp_path / "report", command="featflow bench det --other", from_json=True)
    rewritten = json.loads((tmp_path / "report" / "detection.json").read_text())
    assert rewritten["plan"]["findings"] == ["Written later."] and rewritten["command"] == data["command"]
    assert rewritten["ablation"] == data["ablation"] and rewritten["machine"] == data["machine"]
    text = (tmp_path / "report" / "detection.md").read_text()
    assert "- Written later." in text and "FGFA's weights are a plain average" not in text
    with pytest.raises(FeatflowError, match="differs .* in window"):
        run_detection_report(dataclasses.replace(later, window=2), tmp_path / "report", from_json=True)
    # a report measured before a plan setting existed: the setting reads as its default there, not as a change
    saved = json.loads((tmp_path / "report" / "detection.json").read_text())
    del saved["plan"]["ablation_title"]
    (tmp_path / "report" / "detection.json").write_text(json.dumps(saved))
    run_detection_report(later, tmp_path / "report", from_json=True)
    with pytest.raises(FeatflowError, match="differs .* in ablation_title"):
        run_detection_report(dataclasses.replace(later, ablation_title="another"), tmp_path / "report",
                             from_json=True)
    with pytest.raises(FeatflowError, match="no .* to rewrite"):
        run_detection_report(later, tmp_path / "elsewhere", from_json=True)


def test_the_weight_probe_reads_a_plain_average_on_a_still_video():
    from benchmarks.det_report import WeightProbe
    from featflow.engine.det_inference import DetStreamConfig
    from featflow.methods.detection import VideoDetector
    from featflow.methods.streams import AggregatedFeatures
    from featflow.modeling.rpn import RPNConfig

    torch.manual_seed(0)
    model = VideoDetector(3, "resnet18", 16, None, "adaptive", rpn=RPNConfig(anchor_sizes=(16, 32, 64))).eval()
    probe = WeightProbe(model.aggregator, DetStreamConfig("fgfa", window=2))
    stream = AggregatedFeatures(model, window=2)
    frame = torch.rand(1, 3, 32, 48) * 255
    items = [item for _ in range(4) for item in stream.push(frame)] + stream.finish()
    stats = probe.close()
    assert len(items) == 4
    # the same frame five times (no flow, unwarped): every cosine is 1 and the weights are a plain average
    assert stats["current_weight"] == pytest.approx(1 / 5, abs=1e-4)
    assert stats["reference_cosine"] == pytest.approx(1.0, abs=1e-4)
    assert not model.aggregator._forward_pre_hooks  # closed: the model is left as it was


# ---- the exact-flow diagnostic ------------------------------------------------------------------------------


def test_exact_flow_source_reads_the_generators_flow_on_the_feature_grid(tmp_path, capsys):
    from benchmarks import exact_flow_diagnostic as script
    from featflow.data.synthetic import SynthConfig
    from featflow.data.synthetic.video import SyntheticVideo
    from featflow.modeling.preprocess import image_to_tensor

    video = SyntheticVideo(SynthConfig(height=40, width=56, num_frames=4), seed=3, index=0, split="val")
    frames = [np.full((40, 56, 3), t, np.uint8) for t in range(4)]
    exact = torch.from_numpy(video.flow(3, 1)[0]).permute(2, 0, 1)  # (2, H, W) image pixels, frame 3 -> 1
    for sampling in script.SAMPLINGS:
        source = script.ExactFlow(video, sampling, frames)
        # the frames as a stream makes them: new tensors, recognised by their content
        flow, scale = source(image_to_tensor(frames[3]), image_to_tensor(frames[1]))
        assert scale is None and flow.shape == (1, 2, 3, 4)  # ceil(40/16) x ceil(56/16)
        if sampling == "point":
            torch.testing.assert_close(flow[0], exact[:, ::16, ::16] / 16)
        else:
            torch.testing.assert_close(flow[0, :, 1, 1], exact[:, 8:25, 8:25].mean((1, 2)) / 16)
    with pytest.raises(ValueError, match="frames 0 and 2 of video 0 are identical"):
        script.ExactFlow(video, "point", [frames[0], frames[1], frames[0]])
    with pytest.raises(SystemExit):  # not a featflow export: a one-line error, not a traceback
        script.main(["--data", str(tmp_path), "--frame", "a", "--dff", "b", "--fgfa", "c"])
    assert "featflow_synth.json" in capsys.readouterr().err


def test_the_exact_flow_diagnostic_detects_as_its_own_loop_did():
    """The diagnostic runs the library's streams (``run_stream``) with the exact flow as their source; its
    detections are those of the loop it had before, frame for frame."""
    from benchmarks import exact_flow_diagnostic as script
    from featflow.data.synthetic import SynthConfig
    from featflow.data.synthetic.video import SyntheticVideo
    from featflow.methods.detection import VideoDetector
    from featflow.methods.schedulers import FixedInterval
    from featflow.methods.streams import AggregatedFeatures, KeyFrameFeatures
    from featflow.modeling.preprocess import image_to_tensor
    from featflow.modeling.rpn import RPNConfig

    video = SyntheticVideo(SynthConfig(height=48, width=64, num_frames=13), seed=3, index=0, split="val")
    frames = [video.frame(t) for t in range(13)]
    torch.manual_seed(0)
    model = VideoDetector(3, "resnet18", 16, "flownet_inception", "adaptive",
                          rpn=RPNConfig(anchor_sizes=(16, 32, 64))).for_inference()
    size = tuple(frames[0].shape[:2])
    for method in ("frame", "dff", "fgfa"):
        for sampling in (None, "point"):
            source = script.ExactFlow(video, sampling, frames) if sampling else None
            images = [image_to_tensor(f) for f in frames]
            before = [None] * len(images)  # the loop the diagnostic had
            with torch.no_grad():
                if method == "fgfa":
                    stream = AggregatedFeatures(model, 10, source=source)
                    items = [i for image in images for i in stream.push(image)] + stream.finish()
                    for t, features, _ in items:
                        before[t] = model.predict(features, size)[0]
                else:
                    keyed = KeyFrameFeatures(model, method == "dff", FixedInterval(10), source=source)
                    before = [model.predict(keyed.step(image)[0], size)[0] for image in images]
            after = script.detect(model, method, frames, source)
            assert sum(len(d.scores) for d in after) > 0
            for old, new in zip(before, after, strict=True):
                for field in ("boxes", "scores", "labels"):
                    np.testing.assert_array_equal(getattr(new, field), getattr(old, field))



def test_key_offset_groups_follow_a_fixed_interval_from_frame_0():
    import numpy as np

    from benchmarks.exact_flow_diagnostic import OFFSET_GROUPS, key_offset_groups
    from featflow.structures import VideoGroundTruth

    box = np.array([[0.0, 0.0, 9.0, 9.0]])
    frames = 12
    gt = VideoGroundTruth(tuple(box if t != 5 else np.zeros((0, 4)) for t in range(frames)),
                          tuple(np.ones(1 if t != 5 else 0, np.int64) for t in range(frames)),
                          tuple(np.ones(1 if t != 5 else 0, np.int64) for t in range(frames)))
    groups = key_offset_groups([gt], 10)[0]
    assert [g.tolist() for g in groups] == [[OFFSET_GROUPS[k]] if t != 5 else [] for t, k in
                                            enumerate([0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0, 1])]


def test_the_exact_flow_diagnostic_compares_every_row_with_paired_intervals(tmp_path):
    """End to end on a tiny export: each exact-flow row is compared with its method's learned F and every row with
    single frame, as objects with delta and its interval; ``--samplings`` picks the rows, ``--bootstrap 0`` drops
    the comparisons."""
    from benchmarks import exact_flow_diagnostic as script
    from featflow.cli import main
    from featflow.engine.checkpoint import save_detector
    from featflow.methods.detection import VideoDetector
    from featflow.modeling.rpn import RPNConfig

    data = tmp_path / "vid"
    assert main(["synth", "--format", "vid", "--out", str(data), "--videos", "0", "--val-videos", "2",
                 "--frames", "5", "--size", "64x96", "--quiet"]) == 0
    weights = {}
    for method, flow, aggregation in (("frame", None, None), ("dff", "flownet_inception", None),
                                      ("fgfa", "flownet_inception", "adaptive")):
        torch.manual_seed(0)
        model = VideoDetector(8, "resnet18", 16, flow, aggregation, rpn=RPNConfig(anchor_sizes=(16, 32)))
        weights[method] = tmp_path / f"{method}.safetensors"
        save_detector(weights[method], model, [f"c{k}" for k in range(8)])
    common = ["--data", str(data), "--videos", "2", "--report", str(tmp_path / "r"),
              *[arg for m, w in weights.items() for arg in (f"--{m}", str(w))]]
    script.main([*common, "--samplings", "point", "--bootstrap", "20", "--stem", "diag"])
    report = json.loads((tmp_path / "r" / "diag.json").read_text())
    assert [r["name"] for r in report["rows"]] == ["single frame", "DFF, learned F", "DFF, exact flow (point)",
                                                    "DFF's model, per frame", "FGFA, learned F",
                                                    "FGFA, exact flow (point)"]
    assert report["rows"][3]["method"] == "frame" and report["rows"][3]["weights"] == str(weights["dff"])
    pairs = [(c["row"], c["against"]) for c in report["comparisons"]]
    assert pairs == [("DFF, learned F", "single frame"), ("DFF, exact flow (point)", "single frame"),
                     ("DFF, exact flow (point)", "DFF, learned F"), ("DFF's model, per frame", "single frame"),
                     ("FGFA, learned F", "single frame"), ("FGFA, exact flow (point)", "single frame"),
                     ("FGFA, exact flow (point)", "FGFA, learned F")]
    # mAP by frames since the key frame, for single frame and the DFF rows (5 frames: offsets 0-4 only)
    offsets = {o["name"]: o["map"] for o in report["by_key_offset"]}
    assert list(offsets) == ["single frame", "DFF, learned F", "DFF, exact flow (point)", "DFF's model, per frame"]
    assert all(set(m) == {"all", *script.OFFSET_GROUPS} and m["7-9"] is None for m in offsets.values())
    rows = {r["name"]: r for r in report["rows"]}
    assert all(m["all"] == pytest.approx(rows[name]["map"]) for name, m in offsets.items())  # the groups' whole
    for c in report["comparisons"]:
        for category in ("all", "slow", "medium", "fast"):
            d = c[category]  # points; a percentile interval need not hold its point estimate, but is ordered
            assert set(d) >= {"delta", "ci_low", "ci_high"} and d["ci_low"] <= d["ci_high"] + 1e-9
    assert "| FGFA, exact flow (point) | FGFA, learned F |" in (tmp_path / "r" / "diag.md").read_text()
    no_fgfa = [a for a in common if a not in ("--fgfa", str(weights["fgfa"]))]
    script.main([*no_fgfa, "--samplings", "pooled", "--bootstrap", "0", "--stem", "plain"])
    plain = json.loads((tmp_path / "r" / "plain.json").read_text())
    assert plain["comparisons"] == [] and plain["rows"][2]["name"] == "DFF, exact flow (pooled)"
    assert not any(r["method"] == "fgfa" for r in plain["rows"])  # --fgfa is optional
    assert "bootstrap intervals" not in (tmp_path / "r" / "plain.md").read_text()


# ---- the plans and how featflow bench finds the harness ------------------------------------------------------


def test_every_plan_loads_by_name_and_by_path():
    import benchmarks
    from benchmarks.det_report import DetReportPlan
    from benchmarks.seg_report import SegReportPlan
    from featflow.errors import MissingInput

    assert benchmarks.plan_names() == ["detection", "detection_vid", "detection_vid_converge", "detection_vid_plateau",
                                      "detection_vid_quality", "detection_vid_weighting", "segmentation",
                                      "segmentation_budget", "segmentation_converge", "segmentation_long",
                                      "segmentation_plateau"]
    for name in benchmarks.plan_names():
        cls = DetReportPlan if name.startswith("detection") else SegReportPlan
        plan = benchmarks.load_plan(cls, name)
        assert benchmarks.load_plan(cls, benchmarks.PLANS / f"{name}.yaml") == plan
    plan = benchmarks.load_plan(DetReportPlan, "detection_vid")
    assert plan.stem == "detection_vid" and plan.bootstrap_samples >= 1000
    assert benchmarks.load_plan(SegReportPlan, "segmentation_budget").earlier_training == ("reports/segmentation.json",)
    with pytest.raises(MissingInput, match="no plan file nothing .*detection, detection_vid, detection_vid_converge, "
                                           "detection_vid_plateau, detection_vid_quality, detection_vid_weighting, "
                                           "segmentation"):
        benchmarks.load_plan(DetReportPlan, "nothing")


def test_bench_finds_the_harness_in_a_checkout_and_says_when_there_is_none(monkeypatch, capsys):
    import benchmarks
    from featflow.cli import bench, main

    assert bench.checkout_root() == benchmarks.PLANS.parents[1]
    assert bench.harness("det", "det_report").DetReportPlan
    monkeypatch.setattr(bench, "checkout_root", lambda: None)  # an installed wheel, no source checkout
    for argv in (["bench", "det", "--plan", "detection_vid"], ["bench", "seg"], ["bench", "synth"],
                 ["bench", "flow"], ["bench", "difficulty", "--weights", "w.safetensors"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "source checkout" in err[0], err


def test_the_commands_in_the_reports_and_scripts_reach_their_plan(monkeypatch, capsys):
    """``featflow bench det --plan detection_vid --cache runs/det_cache`` (reproduce_detection_vid.sh) and
    ``featflow bench seg --plan segmentation`` hand the named plan, the cache and the command to the harness."""
    import benchmarks.det_report as det_report
    import benchmarks.seg_report as seg_report
    from featflow.cli import main

    calls = {}

    def fake(name):
        def run(plan, report, command, progress, **kwargs):
            calls[name] = (plan, str(report), command, progress, kwargs)
            return []
        return run

    monkeypatch.setattr(det_report, "run_detection_report", fake("det"))
    monkeypatch.setattr(seg_report, "run_segmentation_report", fake("seg"))
    argv = ["bench", "det", "--plan", "detection_vid", "--report", "reports", "--cache", "runs/det_cache", "--quiet"]
    monkeypatch.setattr("sys.argv", ["featflow", *argv])
    assert main(argv) == 0 and main(["bench", "seg", "--plan", "segmentation"]) == 0
    plan, report, command, progress, kwargs = calls["det"]
    assert (plan.stem, report, progress, str(kwargs["cache"])) == ("detection_vid", "reports", False, "runs/det_cache")
    assert command == "featflow " + " ".join(argv)  # what the report's JSON records
    assert calls["seg"][0].rows[0].name == "Frame"


def test_the_wheel_leaves_the_harness_out():
    from pathlib import Path

    from setuptools import find_namespace_packages

    root = Path(__file__).resolve().parents[1]
    packages = find_namespace_packages(root / "src")  # what [tool.setuptools.packages.find] where = ["src"] ships
    assert "featflow.analysis" in packages and not any(p.split(".")[0] == "benchmarks" for p in packages)
    assert not (root / "src" / "featflow" / "configs" / "reports").exists()


@pytest.mark.slow
def test_precision_report_measures_every_shipped_model_in_both_precisions(tmp_path, tiny_models, monkeypatch):
    import benchmarks.precision_report as precision_report
    from featflow.data.synthetic import SynthConfig
    from featflow.data.synthetic.export import export
    from featflow.engine.checkpoint import save_segmenter
    from featflow.methods.segmentation import VideoSegmenter
    from featflow.registry import ModelInfo

    export("cityscapes", tmp_path / "cs", SynthConfig(height=48, width=64, num_frames=30), videos=0, val_videos=1,
           progress=False)
    export("vid", tmp_path / "vid", SynthConfig(height=48, width=64, num_frames=4), videos=0, val_videos=2,
           progress=False)
    torch.manual_seed(0)
    seg = tmp_path / "seg.safetensors"  # the synthetic classes, as the Cityscapes-layout export labels them
    from featflow.data.synthetic import CLASS_NAMES
    save_segmenter(seg, VideoSegmenter(len(CLASS_NAMES), "resnet18", 16, "flownet_inception"), list(CLASS_NAMES))
    _, det = tiny_models
    from featflow.engine.checkpoint import save_detector
    from featflow.methods.detection import VideoDetector
    from featflow.modeling.rpn import RPNConfig
    det8 = tmp_path / "det8.safetensors"  # the VID export's 8 classes
    save_detector(det8, VideoDetector(8, "resnet18", 16, "flownet_inception", "adaptive",
                                      rpn=RPNConfig(anchor_sizes=(16, 32))), [f"c{k}" for k in range(8)])
    fake = [ModelInfo("seg-x", "seg.safetensors", "seg", ("dff",), (48, 64), "a segmenter"),
            ModelInfo("det-x", "det8.safetensors", "det", ("fgfa",), (48, 64), "a detector"),
            ModelInfo("det-f", "det8.safetensors", "det", ("frame",), (48, 64), "a single-frame detector")]
    monkeypatch.setattr(ModelInfo, "path", property(lambda self: tmp_path / self.file))
    monkeypatch.setattr(precision_report, "shipped_models", lambda: fake)
    paths = precision_report.run_precision_report(tmp_path / "cs", tmp_path / "vid", videos=2,
                                                  report=tmp_path / "r", samples=20, progress=False)
    data = json.loads((tmp_path / "r" / "precision.json").read_text())
    assert {p.name for p in paths} == {"precision.md", "precision.json"}
    assert [(r["model"], r["method"]) for r in data["rows"]] == [("seg-x", "dff"), ("seg-x", "frame"),
                                                                 ("det-x", "fgfa"), ("det-x", "frame"),
                                                                 ("det-f", "frame")]
    assert data["rows"][0]["data"] == str(tmp_path / "cs") and data["rows"][2]["videos"] == 2
    for r in data["rows"]:
        assert r["delta"] == pytest.approx(r["bf16"] - r["fp32"], abs=1e-6) and r["fps_fp32"] > 0
    assert data["rows"][2]["ci_low"] is not None  # detection changes carry their interval over videos
    assert f"| det-x | `{tmp_path / 'vid'}` | fgfa 21 frames | mAP |" in (tmp_path / "r" / "precision.md").read_text()


def test_precision_report_measures_each_model_with_what_it_holds_on_its_reports_held_out_data(tmp_path):
    from benchmarks.precision_report import held_out_data, model_runs
    from featflow.registry import ModelInfo

    def info(task, methods, benchmark=None):
        return ModelInfo("m", "m.safetensors", task, methods, (48, 64), "", benchmark or {})

    assert model_runs(info("seg", ("frame", "dff"))) == (("dff", 5), ("frame", 1))
    assert model_runs(info("seg", ("frame",))) == (("frame", 1),)
    assert model_runs(info("det", ("frame", "dff", "fgfa"))) == (("fgfa", 10), ("frame", 0))
    assert model_runs(info("det", ("frame", "dff"))) == (("dff", 10),)
    assert model_runs(info("det", ("frame",))) == (("frame", 0),)  # no F: no DFF row
    (tmp_path / "geo").mkdir(), (tmp_path / "fallback").mkdir()
    report = tmp_path / "det_report.json"
    report.write_text(json.dumps({"plan": {"data": str(tmp_path / "geo"), "seed_note": "seed 1"}}))
    assert held_out_data(info("det", ("frame",), {"source": f"{report}, ablation row single frame"}),
                         tmp_path / "fallback") == tmp_path / "geo"
    assert held_out_data(info("det", ("frame",)), tmp_path / "fallback") == tmp_path / "fallback"
    report.write_text(json.dumps({"plan": {"data": str(tmp_path / "gone"), "seed_note": "seed 1"}}))
    with pytest.raises(FeatflowError, match=r"gone: no such folder \(the held-out set of .*det_report.json: seed 1\)"):
        held_out_data(info("det", ("frame",), {"source": str(report)}), tmp_path / "fallback")


@pytest.mark.slow
def test_memory_stays_flat_over_a_long_video(tmp_path, tiny_models):
    from benchmarks.memory_report import measure, synthetic_video

    _, det = tiny_models
    video = synthetic_video(tmp_path / "long.mp4", 100, (48, 64), progress=False)
    for method, online in (("dff", False), ("fgfa", True)):
        row = measure(video, str(det), method, online, tmp_path, warmup=30, tail=50, progress=False)
        assert row["frames"] == 100
        assert row["growth_mb"] < 30, (method, online, row["growth_mb"])  # looser than the report's 50 MB target


@pytest.mark.slow
def test_streams_report_runs_concurrent_infer_processes_under_each_setting(tmp_path, tiny_models):
    from benchmarks.streams_report import run_streams_report

    _, det = tiny_models
    with pytest.raises(FeatflowError, match="must include 1"):
        run_streams_report(4, (48, 64), (2,), str(det), report=tmp_path, progress=False)
    run_streams_report(6, (48, 64), (1, 2), str(det), report=tmp_path, progress=False,
                       settings=("default", "shared cores"))
    data = json.loads((tmp_path / "streams.json").read_text())
    rows = {(r["setting"], r["streams"]): r for r in data["rows"]}
    assert set(rows) == {("default", 1), ("default", 2), ("shared cores", 1), ("shared cores", 2)}
    cores = os.cpu_count() or 1
    assert rows["shared cores", 2]["threads"] == max(1, cores // 2) and rows["default", 2]["threads"] is None
    for r in rows.values():  # every process ran the whole video and reported its rate
        assert len(r["fps_per_stream"]) == r["streams"] and all(f > 0 for f in r["fps_per_stream"])
        assert r["total_fps"] == pytest.approx(sum(r["fps_per_stream"]))
    assert rows["default", 1]["vs_one_stream"] == pytest.approx(1.0)
    assert "| shared cores | 2 |" in (tmp_path / "streams.md").read_text()


def test_appearance_groups_say_whether_a_better_view_is_near():
    from benchmarks.appearance import appearance_groups, type_groups
    from featflow.structures import VideoGroundTruth

    # two objects over 12 frames: track 0 strongly smeared in frame 0 only, track 1 half hidden in every frame;
    # frame 1 mildly defocuses track 0
    frames = 12
    truth = [VideoGroundTruth((np.zeros((2, 4)),) * frames, (np.array([1, 2]),) * frames, (np.array([0, 1]),) * frames)]
    measures = [[{"smear": np.array([20.0 if t == 0 else 0.0, 0.0]),
                  "defocus": np.array([1.5 if t == 1 else 0.0, 0.0]),
                  "foreshortening": np.array([1.0, 1.0]), "hidden": np.array([0.0, 0.6])} for t in range(frames)]]
    groups = appearance_groups(truth, measures)[0]
    assert list(groups[0]) == ["strong, better nearby", "strong throughout"]
    assert list(groups[1]) == ["mild", "strong throughout"] and list(groups[5]) == ["clear", "strong throughout"]
    smear = type_groups(measures, "smear")[0]
    assert list(smear[0]) == ["strong", "none"] and list(smear[1]) == ["none", "none"]


def test_the_headroom_of_aggregation_is_the_arithmetic_of_box_shares():
    from benchmarks.appearance import GROUPS, headroom

    maps = {"all": 0.17, GROUPS[0]: 0.25, GROUPS[1]: 0.20, GROUPS[2]: 0.15, GROUPS[3]: 0.05}
    room = headroom(maps, dict(zip(GROUPS, (20, 40, 20, 20))))
    assert room["weighted"] == pytest.approx(0.2 * 0.25 + 0.4 * 0.20 + 0.2 * 0.15 + 0.2 * 0.05)
    assert room["better_nearby"] == pytest.approx(0.2 * 0.10) and room["with_mild"] == pytest.approx(0.02 + 0.4 * 0.05)
    assert headroom({**maps, GROUPS[3]: None}, dict(zip(GROUPS, (20, 40, 20, 20)))) is None


@pytest.mark.slow
def test_the_gpu_script_runs_every_part_at_toy_sizes_on_the_cpu(tmp_path):
    from benchmarks.gpu_check import _markdown, run_gpu_check

    paths = run_gpu_check("cpu", tmp_path, tiny=True, seg_data=None, det_data=None)
    assert {p.name for p in paths} == {"gpu.md", "gpu.json"}
    data = json.loads((tmp_path / "gpu.json").read_text())
    assert data["tiny"] and data["accuracy"] == []
    # per-frame against DFF for both tasks and FGFA, in both precisions
    assert {(r["kind"], r.get("task", "det"), r["precision"]) for r in data["speed"]} == {
        (kind, task, p) for p in ("fp32", "bf16") for kind, task in (("dff", "seg"), ("dff", "det"), ("fgfa", "det"))}
    assert all(r["speedup"] > 0 for r in data["speed"] if r["kind"] == "dff")
    # the real training step of every case runs and gives a finite loss
    cases = {(r["task"], r["method"]) for r in data["training"]}
    assert cases == {("seg", "frame"), ("seg", "dff"), ("det", "frame"), ("det", "dff"), ("det", "fgfa")}
    assert all(r["loss_finite"] and r["images_per_second"] > 0 for r in data["training"])
    text = (tmp_path / "gpu.md").read_text()
    assert "dry run at toy sizes" in text and "| det | fgfa |" in text
    # the accuracy table sets the device's figures beside the CPU's
    row = {"model": "m", "method": "dff", "setting": "l=5", "metric": "mIoU", "fp32": 35.9, "bf16": 35.8}
    table = _markdown([], [], [row], [{**row, "fp32": 35.5}], "GPU", False)
    assert "| m | dff l=5 | mIoU | 35.90 | 35.80 | 35.50 | +0.40 |" in table
