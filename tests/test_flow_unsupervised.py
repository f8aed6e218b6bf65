"""Unsupervised fine-tuning of F on a user's videos: frame pairs from a folder, the photometric loss, the command."""

import numpy as np
import pytest
import torch

from featflow.cli import main
from featflow.data.synthetic import SynthConfig, SyntheticVideo
from featflow.data.video import write_video
from featflow.data.video_pairs import VideoFramePairs, video_entries
from featflow.engine.checkpoint import load_flow_net, shipped_flow_weights
from featflow.engine.flow_training import FlowLossConfig, _non_occluded, unsupervised_loss
from featflow.errors import FeatflowError, MissingInput
from featflow.modeling.flow_net import FlowOutput


def _frames(count: int, seed: int = 0) -> list[np.ndarray]:
    video = SyntheticVideo(SynthConfig(height=48, width=64, num_frames=count), seed=seed)
    return [video.frame(t) for t in range(count)]


@pytest.fixture()
def videos(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    write_video(root / "a.mp4", _frames(6, seed=1), fps=10)
    folder = root / "b"
    folder.mkdir()
    for t, frame in enumerate(_frames(4, seed=2)):
        from featflow.data.io import write_image
        write_image(folder / f"{t:03d}.png", frame)
    (root / "notes.txt").write_text("not a video")
    return root


def test_pairs_come_from_every_video_of_a_folder(videos):
    assert [p.name for p in video_entries(videos)] == ["a.mp4", "b"]
    pairs = VideoFramePairs(videos, 40, size=(32, 48), max_gap=2, seed=3)
    assert len(pairs.videos) == 2 and pairs.frames == 10 and [len(v) for v in pairs.videos] == [6, 4]
    seen = set()
    for i in range(40):
        video, current, key = pairs.pair(i)
        assert 1 <= abs(current - key) <= 2 and 0 <= min(current, key) and max(current, key) < len(pairs.videos[video])
        seen.add(video)
    assert seen == {0, 1}
    sample = pairs[5]
    assert sample["current"].shape == (3, 32, 48) and sample["key"].dtype == torch.float32
    assert torch.equal(VideoFramePairs(videos, 40, size=(32, 48), max_gap=2, seed=3)[5]["key"], sample["key"])
    assert VideoFramePairs(videos, 4, size=(32, 48), max_frames=3).frames == 6  # at most 3 frames of each


def test_a_packaged_video_is_one_video_to_train_on():
    from featflow.data.real_footage import package_video

    assert video_entries("footage:bigbuckbunny") == [package_video("bigbuckbunny")]
    pairs = VideoFramePairs("footage:bigbuckbunny", 2, size=(32, 48), max_frames=3)
    assert pairs.frames == 3 and pairs[0]["current"].shape == (3, 32, 48)


def test_a_folder_without_videos_is_a_clear_error(tmp_path):
    with pytest.raises(MissingInput, match="no such folder of videos"):
        video_entries(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FeatflowError, match="holds no videos"):
        video_entries(tmp_path / "empty")


class _FixedFlow(torch.nn.Module):
    """A stand-in for F that answers one constant flow (image pixels) for the forward pair and its negative for
    the backward one, with a parameter so that the loss has something to differentiate."""

    def __init__(self, flow: tuple[float, float]) -> None:
        super().__init__()
        self.flow = torch.nn.Parameter(torch.tensor(flow).view(1, 2, 1, 1))
        self.calls = 0

    def forward(self, current, key, pyramid=False, with_scale=True):
        sign = 1.0 if self.calls % 2 == 0 else -1.0
        self.calls += 1
        n, _, h, w = current.shape  # half resolution
        level8 = (sign * self.flow).expand(n, 2, -(-h // 4), -(-w // 4))
        return FlowOutput(level8[..., ::2, ::2] / 16, None, {8: level8})


def test_the_photometric_loss_is_lowest_at_the_true_motion():
    rng = np.random.default_rng(0)
    texture = rng.uniform(0, 255, (1, 3, 80, 112)).astype(np.float32)
    texture = torch.nn.functional.avg_pool2d(torch.from_numpy(texture), 5, 1, 2)  # smooth enough to interpolate
    current, key = texture[..., 8:72, 8:104], texture[..., 8:72, 12:108]  # key = current moved 4 px left
    cfg = FlowLossConfig(kind="unsupervised")
    losses = {dx: unsupervised_loss(_FixedFlow((dx, 0.0)), current, key, cfg).item() for dx in (-4.0, 0.0, 4.0, 8.0)}
    assert min(losses, key=losses.get) == -4.0  # current(x) = key(x - 4): the flow points 4 px left
    model = _FixedFlow((0.0, 0.0))
    unsupervised_loss(model, current, key, cfg).backward()
    assert model.flow.grad[0, 0] > 0  # gradient descent moves the flow towards -4


def test_the_forward_backward_check_marks_occlusions_and_the_frame_edge():
    forward = torch.zeros(1, 2, 8, 10)
    forward[0, 0] = 2.0
    backward = -forward.clone()
    backward[0, 0, 3:5, 5:7] = 3.0  # disagrees: these points are occluded in the other frame
    mask = _non_occluded(forward, backward)[0, 0]
    assert mask[:, 8:].sum() == 0  # x + 2 leaves the frame
    assert mask[0, :3].all() and mask[3, 3:5].sum() == 0 and mask[6, :8].all()


def test_train_flow_unsupervised_from_the_shipped_weights(tmp_path, videos, capsys):
    out = tmp_path / "run"
    args = ["train", "flow", "--unsupervised", str(videos), "--iterations", "2", "--out", str(out), "--quiet",
            "--set", "data.size=[48,64]", "--set", "train.batch_size=2", "--set", "eval.pairs=2",
            "--set", "eval.every=2", "--set", "train.workers=0"]
    assert main(args) == 0
    net, meta = load_flow_net(out / "model.safetensors")
    assert meta["featflow.model"] == "flownet_inception" and meta["iterations"] == "2"
    shipped, _ = load_flow_net(shipped_flow_weights("flownet_inception"))  # the config's net, not the default F
    moved = sum(float((a - b).abs().sum().detach()) for a, b in zip(net.parameters(), shipped.parameters()))
    assert moved > 0  # it started from the shipped weights and trained
    assert "validation EPE" in capsys.readouterr().out
    assert main(["train", "flow", "--quiet"]) == 2
    assert "--unsupervised VIDEOS_DIR" in capsys.readouterr().err
    assert main(["train", "flow", "--unsupervised", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "data.source: no such file or folder" in capsys.readouterr().err
    # a packaged video's name passes the path check and is checked where it is resolved
    assert main(["train", "flow", "--unsupervised", "footage:nope", "--quiet"]) == 2
    assert "unknown packaged video 'nope'" in capsys.readouterr().err
    # the packaged recipe on Big Buck Bunny (footage:bigbuckbunny)
    assert main(["train", "flow", "--config", "flownet_inception_bbb", "--iterations", "1", "--out",
                 str(tmp_path / "bbb"), "--quiet", "--set", "data.size=[48,64]", "--set", "data.max_frames=4",
                 "--set", "train.batch_size=2", "--set", "eval.pairs=2", "--set", "train.workers=0"]) == 0
    assert load_flow_net(tmp_path / "bbb" / "model.safetensors")[1]["iterations"] == "1"
