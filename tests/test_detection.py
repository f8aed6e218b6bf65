"""Detection: R-FCN with RPN and OHEM, DFF and FGFA over the same detector, streams, training, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from featflow.engine.models import build_video_model
from featflow.methods.detection import VideoDetector, total_loss
from featflow.methods.fgfa import aggregation_weights, cosine_similarity
from featflow.methods.streams import AggregatedFeatures, KeyFrameFeatures
from featflow.modeling.rfcn import RFCNConfig, RFCNHead
from featflow.modeling.rpn import RPNConfig

SMALL = RPNConfig(anchor_sizes=(16, 32, 64))


def _detector(**kwargs) -> VideoDetector:
    torch.manual_seed(0)
    return VideoDetector(3, "resnet18", 16, rpn=SMALL, **kwargs)


def _targets(boxes: list[list[float]], labels: list[int]) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64)}


class _NoProposals(torch.nn.Module):
    """An RPN stand-in that proposes nothing."""

    def forward(self, images, features, targets=None):
        n = images.tensors.shape[0]
        zero = torch.zeros((), requires_grad=True)
        return [torch.zeros(0, 4)] * n, ({"loss_objectness": zero, "loss_rpn_box_reg": zero} if targets else {})


def test_training_with_and_without_objects_and_proposals():
    model = _detector().train()
    images = torch.rand(2, 3, 64, 96) * 255
    # the second frame has no objects; the first also a one-pixel sliver (x1 == x2), which must not train
    targets = [_targets([[10, 8, 40, 50], [0, 5, 0, 30]], [2, 1]), _targets([], [])]
    losses = model(images, targets=targets)
    assert set(losses) == {"rpn_objectness", "rpn_box", "rfcn_cls", "rfcn_box"}
    assert all(torch.isfinite(v) for v in losses.values())
    total_loss(losses).backward()
    assert model.rfcn.cls_maps.weight.grad.abs().sum() > 0 and model.feature_net.conv1.weight.grad is not None
    model.rpn = _NoProposals()  # no proposals: training still has the ground-truth RoIs, inference returns nothing
    losses = model(images, targets=targets)
    assert torch.isfinite(total_loss(losses))
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert [len(d) for d in out] == [0, 0]


def test_inference_output_is_clipped_sorted_per_class_and_bounded():
    model = _detector().eval()
    with torch.no_grad():
        dets = model(torch.rand(1, 3, 64, 96) * 255)[0]
    assert 0 < len(dets) <= 300
    assert dets.labels.min() >= 1 and dets.labels.max() <= 3
    assert dets.boxes[:, [0, 2]].max() <= 95 and dets.boxes[:, [1, 3]].max() <= 63 and dets.boxes.min() >= 0


def test_rfcn_targets_and_ohem_keep_the_hardest_rois():
    head = RFCNHead(8, 3, RFCNConfig(group=3, ohem_rois=1))
    rois, labels, targets = head.targets([torch.tensor([[0., 0, 10, 10], [50, 50, 60, 60]])],
                                         [torch.tensor([[0., 0, 10, 11]])], [torch.tensor([2])])
    assert labels.tolist() == [2, 0, 2]  # IoU >= 0.5 -> class 2, far -> background, the ground truth itself -> 2
    assert torch.allclose(targets[2], torch.zeros(4))
    scores = torch.tensor([[0., 0, 5, 0], [0., 0, 0, 0], [9., 0, 0, 0]])  # RoI 2 is the worst classified
    deltas = torch.zeros(3, 4)
    loss = head.loss(scores, deltas, labels, targets, [3])
    worst = torch.nn.functional.cross_entropy(scores[2:], labels[2:])
    assert loss["rfcn_cls"] == pytest.approx(worst.item())


def test_fgfa_weights_and_identical_frames():
    current = torch.randn(1, 6, 2, 3)
    refs = [current, -current, 2 * current]  # the same direction twice and its opposite once
    cos = torch.stack([cosine_similarity(current, r) for r in refs], 1)
    assert torch.allclose(cos, torch.tensor([1.0, -1.0, 1.0]).view(1, 3, 1, 1, 1).expand(1, 3, 1, 2, 3), atol=1e-6)
    other = torch.randn_like(current)
    assert torch.allclose(cosine_similarity(current, other)[:, 0],
                          torch.nn.functional.cosine_similarity(current, other, dim=1), atol=1e-6)
    w = aggregation_weights(cos)
    assert w.shape == (1, 3, 1, 2, 3)
    assert torch.allclose(w.sum(1), torch.ones(1, 1, 2, 3))
    assert torch.allclose(w[:, 0], w[:, 2]) and (w[:, 0] > w[:, 1]).all()  # cos 1 beats cos -1
    model = _detector(flow_net="flownet_inception", aggregation="adaptive").eval()
    features = torch.randn(1, 16, 4, 6)
    # every frame the same: softmax weights sum to one, so the aggregate is the frame's features
    embedding = model.aggregator.embedding(features)
    out = model.aggregate(embedding, [features] * 3, [embedding] * 3)
    assert torch.allclose(out, features, atol=1e-5)
    other = torch.randn(1, 16, 4, 6)  # two different frames: the softmax of their cosines weighs them
    e_other = model.aggregator.embedding(other)
    w_own, w_other = aggregation_weights(torch.stack([cosine_similarity(embedding, embedding),
                                                      cosine_similarity(embedding, e_other)], 1)).unbind(1)
    out = model.aggregate(embedding, [features, other], [embedding, e_other])
    assert torch.allclose(out, w_own * features + w_other * other, atol=1e-5)


def test_aggregation_ablations_without_flow_and_without_adaptive_weights():
    frames = [torch.rand(2, 3, 32, 48) * 255 for _ in range(3)]
    mean = _detector(aggregation="mean").eval()  # no flow net: features are aggregated unwarped
    assert mean.aggregator.embedding is None and mean.flow_net is None
    out = mean.aggregated_features(frames[0], frames[1:])
    expected = (mean.key_features(frames[1]) + mean.key_features(frames[2])) / 2
    assert torch.allclose(out, expected, atol=1e-4)
    adaptive = _detector(aggregation="adaptive").eval()
    stream = AggregatedFeatures(adaptive, window=1, online=True)
    assert [item.index for item in stream.push(frames[0][:1])] == [0]
    with pytest.raises(ValueError, match="unknown aggregation"):
        _detector(aggregation="max")


def test_for_inference_runs_channels_last_on_the_cpu_with_the_same_outputs():
    model = _detector(flow_net="flownet_inception", aggregation="adaptive").eval()
    frames = [torch.rand(1, 3, 32, 48) * 255 for _ in range(3)]
    stream = AggregatedFeatures(model, window=1)
    before = [out for frame in frames for out in stream.push(frame)] + stream.finish()
    key = model.key_features(frames[0])
    propagated = model.propagate(key, frames[1], frames[0])
    assert model.for_inference("cpu") is model and not model.training
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.dim() == 4)
    stream = AggregatedFeatures(model, window=1)
    after = [out for frame in frames for out in stream.push(frame)] + stream.finish()
    assert [o.index for o in after] == [o.index for o in before]
    for (_, a, _), (_, b, _) in zip(before, after):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(model.propagate(model.key_features(frames[0]), frames[1], frames[0]), propagated,
                               atol=1e-4, rtol=1e-4)
    # FGFA has no scale field: its flow skips the scale head
    flow, scale = model.learned_flow(frames[1], frames[0], with_scale=False)
    assert scale is None and flow.shape == (1, 2, 2, 3)


class _CountingZeroFlow:
    """A flow source with zero flow that records each (current, reference) call."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, current, key):
        self.calls += 1
        n, _, h, w = current.shape
        return torch.zeros(n, 2, -(-h // 16), -(-w // 16)), None


def test_fgfa_stream_offline_online_padding_and_bounded_memory():
    model = _detector(flow_net="flownet_inception", aggregation="adaptive").eval()
    frames = [torch.rand(1, 3, 32, 48) * 255 for _ in range(7)]
    source = _CountingZeroFlow()
    stream = AggregatedFeatures(model, window=2, source=source)
    out = []
    for t, frame in enumerate(frames):
        ready = stream.push(frame)
        assert [item.index for item in ready] == ([t - 2] if t >= 2 else [])  # offline: K = 2 frames late
        assert len(stream.buffer) <= 5
        out += ready
    out += stream.finish()
    assert [item.index for item in out] == list(range(7))
    # F runs once per distinct (current, reference) pair: frame 0 sees refs {1, 2} (the padding repeats frame 0),
    # frame 1 sees {0, 2, 3}, frames 2..4 four each, frame 5 {3, 4, 6}, frame 6 {4, 5}
    assert source.calls == 2 + 3 + 4 * 3 + 3 + 2
    # with zero flow, frame 0's window is frames 0, 0, 0, 1, 2 (padding by repetition): the weights follow
    feats = [model.frame_features(f) for f in frames[:3]]
    expected = model.aggregate(feats[0][1], [feats[0][0]] * 3 + [feats[1][0], feats[2][0]],
                               [feats[0][1]] * 3 + [feats[1][1], feats[2][1]])
    assert torch.allclose(out[0].features, expected, atol=1e-5)
    online = AggregatedFeatures(model, window=2, online=True, source=_CountingZeroFlow())
    assert [[item.index for item in online.push(f)] for f in frames[:3]] == [[0], [1], [2]]  # no delay
    assert online.finish() == []


def test_dff_feature_stream_key_frames():
    model = _detector(flow_net="flownet_inception").eval()
    from featflow.methods.schedulers import FixedInterval

    stream = KeyFrameFeatures(model, propagate=True, scheduler=FixedInterval(3))
    keys = [stream.step(torch.rand(1, 3, 32, 48) * 255)[1] for _ in range(7)]
    assert keys == [True, False, False, True, False, False, True]
    with pytest.raises(ValueError, match="flow network"):
        KeyFrameFeatures(_detector(), propagate=True)


def test_streams_prepare_each_frames_flow_input_once(monkeypatch):
    import featflow.methods.dff as dff
    from featflow.methods.schedulers import FixedInterval

    prepared = []
    real = dff.flow_input
    monkeypatch.setattr(dff, "flow_input", lambda images: prepared.append(images) or real(images))
    model = _detector(flow_net="flownet_inception", aggregation="adaptive").eval()
    frames = [torch.rand(1, 3, 32, 48) * 255 for _ in range(7)]
    stream = AggregatedFeatures(model, window=2)
    out = [o for f in frames for o in stream.push(f)] + stream.finish()
    assert len(out) == 7 and len(prepared) == 7  # once per frame, though each frame is in up to 4 pairs
    assert all(any(p is f for p in prepared) for f in frames)
    prepared.clear()
    keyed = KeyFrameFeatures(model, propagate=True, scheduler=FixedInterval(3))
    for f in frames:
        keyed.step(f)
    assert len(prepared) == 6  # the 4 non-key frames and their key frames 0 and 3, once each (8 without the cache)
    # the cached input is the one F would have computed: the stream's features equal the model's own path
    keyed = KeyFrameFeatures(model, propagate=True, scheduler=FixedInterval(3))
    streamed = [keyed.step(f)[0] for f in frames[:3]]
    torch.testing.assert_close(streamed[2], model.features(frames[2], frames[0]), atol=1e-5, rtol=1e-5)


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


def test_cocovid_round_trip_reads_what_the_vid_reader_reads(tmp_path):
    from featflow.data.formats.cocovid import CocoVidDataset, write_cocovid
    from featflow.data.synthetic import SynthConfig
    from featflow.data.synthetic.export import export
    from featflow.data.vid import VidDataset

    export("vid", tmp_path / "vid", SynthConfig(height=48, width=64, num_frames=4), videos=0, val_videos=2,
           progress=False)
    vid = VidDataset(tmp_path / "vid", "val")
    write_cocovid(tmp_path / "val.json", vid)
    coco = CocoVidDataset(tmp_path / "val.json", tmp_path / "vid" / "Data" / "VID")
    assert coco.classes == vid.classes and len(coco) == len(vid) == 2
    assert [v.frame_ids for v in coco.videos] == [v.frame_ids for v in vid.videos]
    boxes = 0
    for v in range(2):
        for t in range(4):
            a, b = vid.targets(v, t), coco.targets(v, t)
            assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.labels, b.labels)
            assert np.array_equal(a.track_ids, b.track_ids)
            boxes += len(a.labels)
        assert np.array_equal(coco.image(v, 3), vid.image(v, 3))
    assert boxes > 0
    (tmp_path / "bad.json").write_text('{"videos": []}')
    with pytest.raises(ValueError, match="lacks"):
        CocoVidDataset(tmp_path / "bad.json", tmp_path)


def test_vid_dataset_without_image_sets_and_bad_input(tmp_path):
    import shutil

    from featflow.data.formats import vid as vidfmt
    from featflow.data.synthetic import SynthConfig
    from featflow.data.synthetic.export import export
    from featflow.data.vid import VidDataset

    export("vid", tmp_path / "vid", SynthConfig(height=48, width=64, num_frames=3), videos=2, val_videos=0,
           progress=False)
    shutil.rmtree(tmp_path / "vid" / "ImageSets")
    data = VidDataset(tmp_path / "vid", "train")  # videos found from the nested train folders
    assert len(data) == 2 and data.videos[1].frame_ids == (4, 5, 6)
    assert data.videos[0].name == "ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000"
    with pytest.raises(FileNotFoundError, match="'val' split"):
        VidDataset(tmp_path / "vid", "val")
    # an annotation naming a class outside the class map
    ann = vidfmt.read_vid_xml(tmp_path / "vid" / "Annotations" / "VID" / "train" / data.videos[0].name / "000000.xml")
    ann = vidfmt.VidAnnotation(ann.folder, ann.filename, ann.width, ann.height,
                               (vidfmt.VidObject(0, "n00000000", (1, 1, 5, 5)),))
    vidfmt.write_vid_xml(tmp_path / "vid" / "Annotations" / "VID" / "train" / data.videos[0].name / "000000.xml", ann)
    with pytest.raises(ValueError, match="n00000000"):
        data.targets(0, 0)


def test_draw_boxes_marks_confident_detections_only():
    from featflow.utils.visualize import draw_boxes

    image = np.zeros((60, 80, 3), np.uint8)
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
    out = draw_boxes(image, np.array([[10, 20, 40, 50], [50, 5, 70, 25]]), np.array([1, 2]), np.array([0.9, 0.1]),
                     ["a", "b"], palette)
    assert (out[50, 25] == [255, 0, 0]).all()  # the bottom edge of the confident box
    assert not out[15:26, 50:71].any()  # the 0.1 box is not drawn
    assert not image.any()  # the input is left alone


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


def test_features_init_takes_n_feat_from_a_segmenter(tmp_path):
    from featflow.engine.checkpoint import save_segmenter
    from featflow.engine.det_training import DetModelConfig
    from featflow.methods.segmentation import VideoSegmenter

    torch.manual_seed(1)
    seg = VideoSegmenter(5, "resnet18", channels=16)
    save_segmenter(tmp_path / "seg.safetensors", seg, [f"c{k}" for k in range(5)])
    det = build_video_model(DetModelConfig(channels=16, features_init=str(tmp_path / "seg.safetensors")), 3)
    for name, value in seg.feature_net.state_dict().items():
        assert torch.equal(det.feature_net.state_dict()[name], value), name
    with pytest.raises(ValueError, match="channels"):
        build_video_model(DetModelConfig(channels=32, features_init=str(tmp_path / "seg.safetensors")), 3)
    with pytest.raises(ValueError, match="alternatives"):
        DetModelConfig(init="a", features_init="b")
    dff = build_video_model(DetModelConfig(channels=16, flow_net="flownet_inception", freeze_scale=True,
                                        features_init=str(tmp_path / "seg.safetensors"), freeze_features=True), 3)
    assert not any(p.requires_grad for p in dff.flow_net.scale_conv.parameters())  # the scale field stays at 1
    assert all(p.requires_grad for n, p in dff.flow_net.named_parameters() if not n.startswith("scale_conv"))
    assert not any(p.requires_grad for p in dff.feature_net.parameters())
