import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from featflow.cli import main
from featflow.data.cityscapes import CityscapesVideo
from featflow.data.formats import cityscapes as cs
from featflow.data.io import read_label_image, write_image
from featflow.data.references import ReferenceSampling
from featflow.data.segmentation_clips import CityscapesClips
from featflow.data.synthetic import NUM_CLASSES, SynthConfig, SyntheticVideo
from featflow.data.synthetic.export import export
from featflow.engine.checkpoint import load_segmenter, save_segmenter
from featflow.engine.config import load_config
from featflow.engine.models import build_video_model
from featflow.engine.seg_inference import SegmentationStream, evaluate_segmentation
from featflow.engine.seg_training import SegModelConfig, SegTrainConfig, train_segmentation
from featflow.errors import FeatflowError
from featflow.evaluation.bootstrap import miou_interval
from featflow.evaluation.segmentation import ConfusionMatrix
from featflow.methods.dff import ShallowFlow
from featflow.methods.fgfa import aggregated_features, window_features
from featflow.methods.schedulers import FixedInterval
from featflow.methods.segmentation import VideoSegmenter
from featflow.modeling.shallow_flow import zero_flow


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    export("cityscapes", root, SynthConfig(height=48, width=64, num_frames=30), videos=2, val_videos=2, seed=1,
           progress=False)
    return root


def test_dff_features_and_gradients():
    model = VideoSegmenter(NUM_CLASSES, "resnet18", channels=16, flow_net="flownet_inception")
    current, key = torch.rand(2, 3, 48, 64) * 255, torch.rand(2, 3, 48, 64) * 255
    # key == current: the unwarped key features; zero flow: the key features as they are
    same = model.features(current, current, same=torch.tensor([True, True]))
    torch.testing.assert_close(same, model.key_features(current))
    zero = model.features(current, key, source=ShallowFlow(zero_flow))
    torch.testing.assert_close(zero, model.key_features(key), atol=1e-5, rtol=0)
    # end to end: the segmentation loss reaches N_feat, F (flow and scale) and the head
    logits = model(current, key, torch.tensor([False, False]))
    assert logits.shape == (2, NUM_CLASSES, 48, 64)
    F.cross_entropy(logits, torch.randint(0, NUM_CLASSES, (2, 48, 64))).backward()
    for module in (model.feature_net, model.flow_net.predict_flow, model.flow_net.scale_conv, model.head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_heads_labels_are_the_argmax_of_its_upsampled_scores_in_either_layout(channels_last):
    from featflow.modeling.heads import SegmentationHead

    torch.manual_seed(0)
    head = SegmentationHead(32, NUM_CLASSES).eval()
    torch.nn.init.normal_(head.classifier.weight)  # scores far apart enough to have real winners
    features = torch.randn(2, 32, 9, 13)
    if channels_last:  # warped features come channels-last
        features = features.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = head(features.contiguous(), (70, 100)).argmax(1)  # upsampled NCHW planes
        labels = head.predict(features, (70, 100))
    assert labels.dtype == torch.uint8 and labels.shape == (2, 70, 100)
    assert torch.equal(labels.long(), expected)

    # compiled (featflow infer --compile): the upsampling and argmax fused, the same labels
    head.compile_predict()
    with torch.no_grad():
        compiled = head.predict(features, (70, 100))
    assert compiled.dtype == torch.uint8 and (compiled.long() != expected).float().mean() < 1e-3


@pytest.mark.parametrize("smooth", [False, True])
@pytest.mark.parametrize("shape,size", [((1, 19, 32, 64), (512, 1024)), ((2, 5, 7, 9), (97, 131)),
                                        ((1, 4, 1, 1), (8, 8)), ((1, 4, 6, 6), (3, 12)), ((1, 3, 5, 5), (5, 5))])
def test_upsampled_argmax_gives_the_labels_of_upsampling_every_class(shape, size, smooth, monkeypatch):
    from featflow.modeling import heads

    torch.manual_seed(0)
    n, k, h, w = shape
    scores = torch.randn(shape)
    if smooth:  # regions spanning several cells, as a trained model gives: few pixels are mixed one by one
        scores = F.interpolate(torch.randn(n, k, max(1, h // 4), max(1, w // 4)), size=(h, w), mode="bilinear")
    expected = F.interpolate(scores, size=size, mode="bilinear", align_corners=False).argmax(1)
    for share in (heads.MAX_SPLIT_SHARE, 1.0):  # as shipped, and with noise-like scores mixed one by one too
        monkeypatch.setattr(heads, "MAX_SPLIT_SHARE", share)
        labels = heads.upsampled_argmax(scores, size)
        assert labels.dtype == torch.uint8 and torch.equal(labels.long(), expected)


def test_a_model_prepared_for_inference_is_not_saved(tmp_path):
    model = VideoSegmenter(NUM_CLASSES, "resnet18", channels=16).for_inference()
    with pytest.raises(ValueError, match="save it before"):  # its BatchNorm is folded: the file would not load
        save_segmenter(tmp_path / "folded.safetensors", model, ["c"] * NUM_CLASSES)

def test_ablation_switches_freeze_the_right_parts(tmp_path):
    frame = VideoSegmenter(NUM_CLASSES, "resnet18", channels=16)
    save_segmenter(tmp_path / "frame.safetensors", frame, ["c"] * NUM_CLASSES)
    fix_n = build_video_model(SegModelConfig(channels=16, flow_net="flownet_inception",
                                       init=str(tmp_path / "frame.safetensors"), freeze_features=True), NUM_CLASSES)
    assert not any(p.requires_grad for p in fix_n.feature_net.parameters())
    fix_n.train()
    assert not fix_n.feature_net.training and fix_n.flow_net.training  # frozen batch norm stays frozen
    assert all(p.requires_grad for p in fix_n.flow_net.parameters())
    torch.testing.assert_close(fix_n.feature_net.conv1.weight, frame.feature_net.conv1.weight)
    fix_f = build_video_model(SegModelConfig(channels=16, flow_net="flownet_inception", freeze_flow=True), NUM_CLASSES)
    assert not any(p.requires_grad for p in fix_f.flow_net.parameters())
    # the pre-trained (shipped) flow weights were loaded, and the scale field starts at 1
    assert fix_f.flow_net.scale_conv.weight.abs().sum() == 0
    with pytest.raises(ValueError, match="channels"):
        build_video_model(SegModelConfig(channels=32, flow_net="flownet_inception",
                                         init=str(tmp_path / "frame.safetensors")), NUM_CLASSES)


def test_stream_keeps_only_the_key_frame(small_config):
    model = VideoSegmenter(NUM_CLASSES, "resnet18", channels=16, flow_net="flownet_inception")
    video = SyntheticVideo(SynthConfig(height=48, width=64, num_frames=12), seed=2)
    stream = SegmentationStream(model, "dff", FixedInterval(4))
    per_frame = SegmentationStream(model, "frame")
    keys = []
    for t in range(12):
        labels, is_key = stream.step(video.frame(t))
        keys.append(is_key)
        assert labels.shape == (48, 64) and labels.dtype == np.uint8
        if is_key:  # key frames are segmented exactly as per frame
            assert np.array_equal(labels, per_frame.step(video.frame(t))[0])
        held = [v for v in vars(stream.features).values() if isinstance(v, torch.Tensor)]
        assert len(held) == 2  # the key image and its features, nothing per past frame
    assert keys == [t % 4 == 0 for t in range(12)]


def test_cityscapes_video_reads_the_synthetic_export(cityscapes_root):
    video = CityscapesVideo(cityscapes_root, "val")
    assert len(video) == 2 and video.num_classes == NUM_CLASSES
    truth = SyntheticVideo(SynthConfig(height=48, width=64, num_frames=30), seed=1, index=1, split="val")
    assert np.array_equal(video.label(1), truth.annotation(19).semantic)
    assert np.array_equal(video.image(1, 4), truth.frame(4))
    pairs = CityscapesClips(video, ReferenceSampling(1, -4, 0), repeats=10)
    assert len(pairs) == 20
    sample = pairs[1]
    assert torch.equal(sample["label"], torch.from_numpy(video.label(1).astype(np.int64)))
    assert torch.equal(sample["current"], torch.from_numpy(video.image(1, 19)).permute(2, 0, 1).float())
    # every draw of a snippet has its own key frame, one of the 5 frames 15..19
    keys = {pairs[i]["references"][0].sum().item() for i in range(0, 20, 2)}
    frames = {torch.from_numpy(video.image(0, f)).float().sum().item() for f in range(15, 20)}
    assert len(keys) > 2 and keys <= frames
    # FGFA's two neighbours on either side: inside the snippet's 19 frames before and 10 after the labelled one
    fgfa = CityscapesClips(video, ReferenceSampling(2, -10, 10), repeats=5)
    assert fgfa[0]["references"].shape == (2, 3, 48, 64) and fgfa[0]["same"].shape == (2,)
    with pytest.raises(FeatflowError, match="leave the snippets.*10 after"):
        CityscapesClips(video, ReferenceSampling(2, -11, 11))
    with pytest.raises(IndexError):
        video.image(0, 40)


def test_cityscapes_video_errors(tmp_path, cityscapes_root):
    with pytest.raises(FileNotFoundError, match="not a Cityscapes folder"):
        CityscapesVideo(tmp_path, "val")
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(cityscapes_root, broken)
    next((broken / "leftImg8bit_sequence" / "val" / "shapes").glob("*_000003_*")).unlink()
    with pytest.raises(FileNotFoundError, match="lacks frame"):
        CityscapesVideo(broken, "val")


def test_miou_agrees_with_cityscapesscripts(tmp_path, rng):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev

    evaluated = np.array([7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33], np.uint8)
    other = np.array([0, 1, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30], np.uint8)
    predictions, truths = [], []
    ours = ConfusionMatrix(19)
    lut = cs.CITYSCAPES.id_to_train_id()
    for i in range(3):
        truth = rng.choice(evaluated, (40, 60))
        truth[rng.random((40, 60)) < 0.1] = rng.choice(other)  # some ignored pixels
        pred = np.where(rng.random((40, 60)) < 0.6, truth, rng.choice(evaluated, (40, 60)))
        pred[np.isin(pred, other)] = evaluated[0]
        write_image(tmp_path / f"gt/c_00000{i}_000019_gtFine_labelIds.png", truth)
        write_image(tmp_path / f"pred/c_00000{i}_000019_pred_labelIds.png", pred)
        truths.append(str(tmp_path / f"gt/c_00000{i}_000019_gtFine_labelIds.png"))
        predictions.append(str(tmp_path / f"pred/c_00000{i}_000019_pred_labelIds.png"))
        ours.update(lut[pred], lut[truth])
    ev.args.evalInstLevelScore = False
    ev.args.quiet = True
    ev.args.JSONOutput = False
    result = ev.evaluateImgLists(predictions, truths, ev.args)
    theirs = result["classScores"]
    for label, iou in zip(cs.CITYSCAPES.class_names, ours.iou()):
        assert iou == pytest.approx(theirs[label], abs=1e-6), label
    assert ours.miou() == pytest.approx(result["averageScoreClasses"], abs=1e-6)


def _tiny_config(path, **overrides):
    data = {"model": {"arch": "resnet18", "channels": 16},
            "data": {"size": [48, 64], "max_offset": 3, "frames_per_video": 4},
            "train": {"batch_size": 2, "iterations": 4, "warmup": 1, "workers": 0, "lr": 0.001},
            "eval": {"samples": 4, "every": 2}}
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value}
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_train_frame_then_dff_then_evaluate(tmp_path, cityscapes_root, capsys):
    frame_cfg = load_config(SegTrainConfig, _tiny_config(tmp_path / "frame.yaml"), kind="seg")
    result = train_segmentation(frame_cfg, out=tmp_path / "frame", progress=False)
    assert result.iterations == 4 and 0 <= result.last["val_miou"] <= 1
    frame_weights = tmp_path / "frame" / "model.safetensors"
    dff_cfg = _tiny_config(tmp_path / "dff.yaml", model={"flow_net": "flownet_inception", "init": str(frame_weights)})
    assert main(["train", "seg", "--config", str(dff_cfg), "--out", str(tmp_path / "dff"), "--quiet"]) == 0
    model, meta = load_segmenter(tmp_path / "dff" / "model.safetensors")
    assert meta["flow_net"] == "flownet_inception" and model.flow_net is not None
    # resume continues to a longer schedule
    assert main(["train", "seg", "--config", str(dff_cfg), "--out", str(tmp_path / "dff"), "--resume",
                 "--iterations", "6", "--quiet"]) == 0
    assert json.loads((tmp_path / "dff" / "metrics.json").read_text())["iterations"] == 6
    # the DFF protocol on Cityscapes-layout data, with saved predictions
    video = CityscapesVideo(cityscapes_root, "val")
    ev = evaluate_segmentation(model, video, "dff", key_interval=3, save_predictions=tmp_path / "pred", progress=False)
    assert len(ev.miou_by_offset) == 3 and ev.fps > 0 and 0 <= ev.miou <= 1
    untimed = evaluate_segmentation(model, video, "dff", key_interval=3, fps_snippets=0, progress=False)
    assert untimed.fps is None and untimed.miou_by_offset == ev.miou_by_offset  # the report times rows itself
    # per-snippet confusions (for intervals over snippets) add up to the per-offset mIoUs
    assert ev.snippet_confusion.shape == (3, len(video), video.num_classes, video.num_classes)
    assert miou_interval(ev.snippet_confusion, samples=10).value == pytest.approx(100 * ev.miou)
    saved = sorted((tmp_path / "pred" / "offset_2").iterdir())
    assert [p.name for p in saved] == ["shapes_000000_000019_pred_labelIds.png",
                                       "shapes_000001_000019_pred_labelIds.png"]
    assert set(np.unique(read_label_image(saved[0]))) <= set(range(1, NUM_CLASSES + 1))  # label ids, not train ids
    # the CLI: DFF separate (per-frame weights + pre-trained flow) and SFF, with JSON output
    out = tmp_path / "sep.json"
    assert main(["eval", "seg", "--data", str(cityscapes_root), "--weights", str(frame_weights), "--method", "dff",
                 "--flow-net", "flownet_inception", "--key-interval", "2", "--json", str(out), "--quiet"]) == 0
    data = json.loads(out.read_text())
    assert data["method"] == "dff" and len(data["miou_by_offset"]) == 2 and data["fps"] > 0
    assert main(["eval", "seg", "--data", str(cityscapes_root), "--weights", str(frame_weights), "--method",
                 "sff-fast", "--key-interval", "2", "--quiet"]) == 0
    assert main(["eval", "seg", "--data", str(cityscapes_root), "--weights", str(frame_weights), "--method", "dff",
                 "--quiet"]) == 2
    assert "flow network" in capsys.readouterr().err
    # FGFA: trained from the per-frame checkpoint on clips of two neighbours, then the labelled frame aggregated
    fgfa_cfg = _tiny_config(tmp_path / "fgfa.yaml", model={"flow_net": "flownet_inception", "aggregation": "adaptive",
                                                          "init": str(frame_weights)}, data={"max_offset": 3})
    assert main(["train", "seg", "--config", str(fgfa_cfg), "--out", str(tmp_path / "fgfa"), "--quiet"]) == 0
    fgfa_weights = tmp_path / "fgfa" / "model.safetensors"
    fgfa, meta = load_segmenter(fgfa_weights)
    assert meta["aggregation"] == "adaptive" and fgfa.aggregator is not None
    trained = json.loads((tmp_path / "fgfa" / "metrics.json").read_text())
    assert trained["iterations"] == 4 and 0 <= trained["final"]["val_miou"] <= 1
    out = tmp_path / "fgfa.json"
    assert main(["eval", "seg", "--data", str(cityscapes_root), "--weights", str(fgfa_weights), "--method", "fgfa",
                 "--window", "2", "--json", str(out), "--quiet"]) == 0
    data = json.loads(out.read_text())
    assert data["method"] == "fgfa" and len(data["miou_by_offset"]) == 1 and data["fps"] > 0
    assert "fgfa (K=2)" in capsys.readouterr().out
    assert main(["eval", "seg", "--data", str(cityscapes_root), "--weights", str(fgfa_weights), "--method", "fgfa",
                 "--window", "11", "--quiet"]) == 2
    assert "K=11 leaves the snippets" in capsys.readouterr().err
    assert main(["eval", "seg", "--data", str(cityscapes_root), "--weights", str(frame_weights), "--method", "fgfa",
                 "--quiet"]) == 2
    assert "no aggregation network" in capsys.readouterr().err


@pytest.mark.slow
def test_train_seg_from_a_cityscapes_folder(tmp_path, cityscapes_root):
    cfg = load_config(SegTrainConfig, _tiny_config(tmp_path / "c.yaml", data={"source": str(cityscapes_root)}),
                      kind="seg")
    assert train_segmentation(cfg, out=tmp_path / "run", progress=False).iterations == 4


@pytest.mark.parametrize("size", [(48, 64), (47, 65), (33, 17), (16, 16)])
def test_shallow_flow_lines_up_with_features(size):
    from featflow.modeling.feature_net import feature_map_size

    constant = lambda a, b: np.tile(np.array([32.0, -16.0], np.float32), (*a.shape[:2], 1))  # noqa: E731
    flow, scale = ShallowFlow(constant)(torch.zeros(2, 3, *size), torch.zeros(2, 3, *size))
    assert flow.shape == (2, 2, *feature_map_size(*size)) and scale is None
    torch.testing.assert_close(flow[:, 0], torch.full_like(flow[:, 0], 2.0))  # 32 image px = 2 feature px
    torch.testing.assert_close(flow[:, 1], torch.full_like(flow[:, 1], -1.0))


def stream_online(model, frames):
    """The last frame's features from the online FGFA stream with K=1 (frames t-1..t)."""
    from featflow.methods.streams import AggregatedFeatures

    stream = AggregatedFeatures(model, window=1, online=True)
    return [r for f in frames for r in stream.push(f)][-1].features


def test_fgfa_segmentation_through_the_shared_aggregation(tmp_path):
    from featflow.engine.checkpoint import load_segmenter, save_segmenter
    from featflow.methods.streams import AggregatedFeatures

    torch.manual_seed(0)
    model = VideoSegmenter(NUM_CLASSES, "resnet18", channels=16, flow_net="flownet_inception",
                           aggregation="adaptive").eval()
    save_segmenter(tmp_path / "fgfa.safetensors", model, ["c"] * NUM_CLASSES)
    loaded, meta = load_segmenter(tmp_path / "fgfa.safetensors")
    assert meta["aggregation"] == "adaptive" and loaded.aggregator is not None
    video = SyntheticVideo(SynthConfig(height=48, width=64, num_frames=5), seed=3)
    frames = [torch.from_numpy(video.frame(t)).permute(2, 0, 1)[None].float() for t in range(5)]
    stream = AggregatedFeatures(loaded.eval(), window=1)
    out = [r for f in frames for r in stream.push(f)] + stream.finish()
    assert [item.index for item in out] == list(range(5))
    logits = loaded.head(out[2].features, (48, 64))
    assert logits.shape == (1, NUM_CLASSES, 48, 64) and torch.isfinite(logits).all()
    # one labelled frame's test-time aggregation, one frame's N_feat at a time, is the stream's
    torch.testing.assert_close(window_features(loaded, frames[1:4], 1), out[2].features)
    torch.testing.assert_close(window_features(loaded, frames[1:3], 1), stream_online(loaded, frames[:3]))
    # training path: the segmentation loss reaches the embedding network
    loaded.train()
    features = aggregated_features(loaded, frames[2], [frames[0], frames[4]])
    loaded.head(features, (48, 64)).logsumexp(1).mean().backward()
    assert loaded.aggregator.embedding.layers[0].weight.grad.abs().sum() > 0


def test_same_share_makes_that_share_of_keys_the_current_frame():
    rng = np.random.default_rng(0)
    plain, mixed = ReferenceSampling(1, -9, 0), ReferenceSampling(1, -9, 0, same_share=0.5)
    same = np.mean([mixed.draw(rng, 20, 30)[0] == 20 for _ in range(4000)])
    assert abs(same - (0.5 + 0.5 / 10)) < 0.03  # the extra share on top of U{-9..0}'s offset 0
    # the papers' sampling (0) keeps its random stream: a resumed or re-run default config draws the same keys
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert [plain.draw(a, 20, 30) for _ in range(20)] == [ReferenceSampling(1, -9, 0, 0.0).draw(b, 20, 30)
                                                         for _ in range(20)]
    cfg = load_config(SegTrainConfig, "dff_r18_inception_mix", "seg")
    assert cfg.model.references(cfg.data.max_offset, cfg.data.same_share) == mixed
    with pytest.raises(FeatflowError, match="same_share"):
        load_config(SegTrainConfig, "frame_r18", "seg", ["data.same_share=1.0"])
    with pytest.raises(ValueError):
        ReferenceSampling(1, -9, 0, same_share=-0.1)
