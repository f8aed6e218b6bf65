"""The papers' training recipes (``flow/chairs_*``, ``seg/cityscapes_*``, ``det/imagenet_vid_*``): each loads with
the papers' settings, its placeholder data folder stops it at once naming ``data.source``, its header and the README
give its command, and each trains two iterations at its real input size on a folder of its layout written here.
And every method trains with more than one clip per batch.

The slow test trains ResNet-101; at the recipes' own sizes (1024x2048 for Cityscapes, 600x1000 for VID) that is
minutes per recipe on a CPU, more than the default test run can spend on 2 cores. By default it therefore runs at
a quarter of each side (the same code paths; the VID recipes' ``data.size``, their resize, set to that quarter);
``FEATFLOW_RECIPE_SIZE=full`` runs the real sizes (on a GPU machine):
``FEATFLOW_RECIPE_SIZE=full python -m pytest -q tests/test_recipes.py -m slow``.
The VID folder holds ImageNet DET images too (the recipes mix them in), at half its frames' size and a 3:4
aspect, so that training resizes them up to the recipe's size.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from featflow.engine.config import RUN_PREFIX, load_config, merged_config_dict, packaged_config, run_weights
from featflow.engine.det_training import DetTrainConfig
from featflow.engine.flow_training import FlowTrainConfig
from featflow.engine.seg_training import SegTrainConfig

README = Path(__file__).resolve().parents[1] / "README.md"

#: The recipes in the order they run: flow pre-training, then per task the per-frame model, then DFF / FGFA.
RECIPES: dict[str, tuple[str, ...]] = {
    "flow": ("chairs_flownet", "chairs_flownet_half", "chairs_flownet_inception"),
    "seg": ("cityscapes_frame_r101", "cityscapes_dff_r101_flownet", "cityscapes_dff_r101_half",
            "cityscapes_dff_r101_inception"),
    "det": ("imagenet_vid_rfcn_r101", "imagenet_vid_dff_r101_flownet", "imagenet_vid_fgfa_r101_flownet"),
}
ALL = [(kind, name) for kind, names in RECIPES.items() for name in names]
IDS = [f"{kind}/{name}" for kind, name in ALL]
CONFIG_CLASSES = {"flow": FlowTrainConfig, "seg": SegTrainConfig, "det": DetTrainConfig}
#: The placeholder every recipe of a kind has for the data set the user downloads.
PLACEHOLDERS = {"flow": "data/flyingchairs", "seg": "data/cityscapes", "det": "data/imagenet_vid"}
#: Each recipe's flow network (None: a per-frame model) and, for DFF / FGFA, the flow recipe its F starts from.
FLOW_NETS: dict[str, str | None] = {
    "chairs_flownet": "flownet", "chairs_flownet_half": "flownet_half", "chairs_flownet_inception": "flownet_inception",
    "cityscapes_frame_r101": None, "cityscapes_dff_r101_flownet": "flownet", "cityscapes_dff_r101_half": "flownet_half",
    "cityscapes_dff_r101_inception": "flownet_inception",
    "imagenet_vid_rfcn_r101": None, "imagenet_vid_dff_r101_flownet": "flownet",
    "imagenet_vid_fgfa_r101_flownet": "flownet",
}
FLOW_RECIPE = {"flownet": "chairs_flownet", "flownet_half": "chairs_flownet_half",
               "flownet_inception": "chairs_flownet_inception"}
FRAME_RECIPE = {"seg": "cityscapes_frame_r101", "det": "imagenet_vid_rfcn_r101"}
#: (input size, iterations) of the papers: Cityscapes 1024x2048 and 20K iterations, VID 600x1000 and 60K.
PAPER_RUN = {"seg": ((1024, 2048), 20000), "det": ((600, 1000), 60000)}


def _load(kind: str, name: str, overrides: tuple[str, ...] = ()):
    return load_config(CONFIG_CLASSES[kind], name, kind=kind, overrides=overrides)


def _torchrun(kind: str, name: str) -> str:
    return f"torchrun --standalone --nproc_per_node 8 -m featflow.cli train {kind} --config {name}"


@pytest.mark.parametrize("kind,name", ALL, ids=IDS)
def test_every_recipe_loads_with_the_papers_settings(kind, name):
    cfg = _load(kind, name)
    assert cfg.output == f"runs/{kind}/{name}"
    assert cfg.data.source == PLACEHOLDERS[kind]
    assert cfg.train.batch_size == 8  # the global batch: 8 GPUs x 1 sample
    assert cfg.train.time_limit_minutes is None  # a recipe runs its iterations, not a CPU budget
    if kind == "flow":  # FlyingChairs' own size; this project's flow schedule (the papers give none)
        assert (cfg.model, cfg.data.size) == (FLOW_NETS[name], (384, 512))
        assert (cfg.train.optimizer, cfg.train.lr, cfg.train.iterations) == ("adamw", 1e-3, 12000)
        return
    size, iterations = PAPER_RUN[kind]
    m, t = cfg.model, cfg.train
    assert (m.arch, m.channels, m.norm, m.flow_net) == ("resnet101", 1024, "frozen", FLOW_NETS[name])
    assert cfg.data.size == size and cfg.data.max_offset == 9  # key / references from current + U{-9..0} / U{-9..9}
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.iterations) == ("sgd", 1e-3, 0.9, 5e-4, iterations)
    assert (t.schedule, t.steps, t.gamma, t.backbone_lr, t.precision) == ("step", (0.667,), 0.1, 1.0, "fp32")
    assert not (m.freeze_features or m.freeze_flow or m.freeze_scale)  # end to end
    assert m.freeze_stem  # except conv1 and res2, fixed at their ImageNet weights as in the papers
    if kind == "det":
        assert m.anchor_sizes == (128, 256, 512)  # scales 8, 16, 32 x stride 16
        assert cfg.data.det_share == 0.5  # ImageNet DET + VID, as the released code of all three trains
    assert m.aggregation == ("adaptive" if "fgfa" in name else None)
    if m.flow_net is None:  # the per-frame model: N_feat from torchvision's ImageNet weights
        assert (m.features_init, m.init) == ("torchvision:resnet101", None)
    else:  # DFF / FGFA: from the per-frame recipe's weights and the matching FlyingChairs recipe's flow
        assert m.features_init is None
        assert m.init == run_weights(f"run:{kind}/{FRAME_RECIPE[kind]}", kind)
        assert m.flow_init == run_weights(f"run:flow/{FLOW_RECIPE[m.flow_net]}", kind)


@pytest.mark.parametrize("kind,name", ALL, ids=IDS)
def test_a_recipe_without_its_data_stops_at_once_naming_data_source(kind, name, tmp_path, monkeypatch, capsys):
    from featflow.cli import main

    monkeypatch.chdir(tmp_path)  # no data/ here
    assert main(["train", kind, "--config", name, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"featflow train: error: data.source: no such file or folder: {PLACEHOLDERS[kind]}"
    assert not (tmp_path / "runs").exists()  # stopped before any work


@pytest.mark.parametrize("kind,name", ALL, ids=IDS)
def test_a_recipes_header_gives_its_command_and_the_readme_every_command_in_order(kind, name):
    header = packaged_config(kind, name).read_text()
    assert _torchrun(kind, name) in header and "--set data.source=" in header
    assert "8 GPUs" in header and "B / 8" in header  # the GPU count and the linear-scaling rule
    readme = README.read_text()
    section = readme[readme.index("## Train on Cityscapes / ImageNet VID"):]
    section = section[:section.index("\n## ", 1)]
    commands = re.findall(r"torchrun --standalone --nproc_per_node 8 -m featflow\.cli train (\w+) --config (\w+)",
                          section)
    assert [c for c in commands if c in ALL] == list(dict.fromkeys(c for c in commands if c in ALL))  # each once
    assert set(commands) == set(ALL)
    assert commands.index(("flow", "chairs_flownet")) < commands.index(("seg", "cityscapes_frame_r101"))
    for task in ("seg", "det"):  # the per-frame model before the video models that start from it
        frame = commands.index((task, FRAME_RECIPE[task]))
        assert all(frame < commands.index((task, n)) for n in RECIPES[task][1:])
    assert readme.startswith("# featflow\n\n```\npip install -e . && featflow demo\n")


# ---- two iterations of every recipe at its input size ---------------------------------------------------------------

def _recipe_size(size: tuple[int, int]) -> tuple[int, int]:
    """A recipe's input size for this run: a quarter of each side (the default), or with FEATFLOW_RECIPE_SIZE=full
    its own."""
    mode = os.environ.get("FEATFLOW_RECIPE_SIZE", "small")
    if mode == "full":
        return size
    if mode == "small":
        return size[0] // 4, size[1] // 4
    raise pytest.UsageError(f"FEATFLOW_RECIPE_SIZE: 'small' (the default) or 'full', got {mode!r}")


@pytest.fixture(scope="module")
def recipe_data(tmp_path_factory):
    """A folder of each kind's layout (FlyingChairs, Cityscapes, ImageNet VID) at its recipes' input size, written
    on first use: a few pairs, one training and one validation snippet / video."""
    from featflow.data.synthetic import SynthConfig
    from featflow.data.synthetic.export import export, export_det

    folders: dict[str, Path] = {}

    def folder(kind: str) -> Path:
        if kind not in folders:
            height, width = _recipe_size(_load(kind, RECIPES[kind][0]).data.size)
            root = tmp_path_factory.mktemp(f"{kind}_{height}x{width}")
            if kind == "flow":
                export("flyingchairs", root, SynthConfig(height, width, 10), videos=2, val_videos=1, progress=False)
            elif kind == "seg":
                export("cityscapes", root, SynthConfig(height, width, 30), videos=1, val_videos=1, progress=False)
            else:  # VID's geometry: few, large objects; and ImageNet DET images of another shape beside them
                export("vid", root, SynthConfig.vid(height, width, 10), videos=1, val_videos=1, progress=False)
                export_det(root, SynthConfig.vid(height // 2, height * 2 // 3, 1), images=3)
            folders[kind] = root
        return folders[kind]

    return folder


@pytest.fixture(scope="module")
def imagenet_stand_in(tmp_path_factory) -> Path:
    """A torchvision ResNet-101 state dict with random weights, in place of torchvision's ImageNet file (no
    download): N_feat gets the torchvision layout and loading path that ``torchvision:resnet101`` gives."""
    import torchvision

    path = tmp_path_factory.mktemp("imagenet") / "resnet101_random.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet101().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def train_recipe(tmp_path_factory, recipe_data, imagenet_stand_in):
    """``train(kind, name)``: the recipe trained for two iterations through ``featflow train`` (once per module),
    after the recipes its ``run:`` references name, whose outputs it then starts from. Changed for the test: the data
    folder, N_feat's ImageNet weights (a random stand-in), one sample per batch (one GPU's share of the recipe's
    global batch of 8) and a two-sample evaluation."""
    from featflow.cli import main

    root = tmp_path_factory.mktemp("recipes")
    trained: dict[tuple[str, str], Path] = {}

    def train(kind: str, name: str) -> Path:
        if (kind, name) in trained:
            return trained[kind, name]
        model = merged_config_dict(name, kind).get("model")
        sets = [f"data.source={recipe_data(kind)}", "train.batch_size=1", "eval.every=2"]
        if kind == "det":  # the resize: to the folder's frame size (a quarter of the recipe's by default)
            sets.append("data.size=[{},{}]".format(*_recipe_size(PAPER_RUN[kind][0])))
        if kind == "flow":
            sets.append("eval.pairs=2")
        else:
            sets.append("eval.samples=2")
            for key in ("init", "flow_init"):
                value = model.get(key)
                if isinstance(value, str) and value.startswith(RUN_PREFIX):
                    run_kind, _, run_name = value[len(RUN_PREFIX):].rpartition("/")
                    sets.append(f"model.{key}={train(run_kind or kind, run_name)}")
            if model.get("features_init"):
                sets.append(f"model.features_init={imagenet_stand_in}")
        out = root / kind / name
        argv = ["train", kind, "--config", name, "--iterations", "2", "--out", str(out), "--quiet"]
        for item in sets:
            argv += ["--set", item]
        assert main(argv) == 0, (kind, name)
        trained[kind, name] = out / "model.safetensors"
        return trained[kind, name]

    return train


@pytest.mark.slow
@pytest.mark.parametrize("kind,name", ALL, ids=IDS)
def test_a_recipe_trains_two_iterations_at_its_input_size(kind, name, train_recipe, recipe_data):
    from featflow.engine.checkpoint import read_metadata

    weights = train_recipe(kind, name)
    record = json.loads((weights.parent / "metrics.json").read_text())
    assert record["iterations"] == 2 and [h["iteration"] for h in record["history"]] == [2]
    final = record["final"]
    config = record["config"]
    assert config["data"]["source"] == str(recipe_data(kind))
    if kind == "det":  # trained on VID and DET images, both resized to the recipe's size
        assert config["data"]["det_share"] == 0.5 and config["data"]["size"] == list(_recipe_size(PAPER_RUN[kind][0]))
    meta = read_metadata(weights)
    if kind == "flow":
        assert meta["featflow.model"] == FLOW_NETS[name] and torch.isfinite(torch.tensor(final["val_epe"]))
        return
    metric = "val_miou" if kind == "seg" else "val_map"
    assert 0.0 <= final[metric] <= 1.0 and final["feat_std"] > 0
    assert (meta["arch"], meta["channels"], meta["norm"]) == ("resnet101", "1024", "frozen")
    assert meta["flow_net"] == (FLOW_NETS[name] or "") and meta["aggregation"] == ("adaptive" if "fgfa" in name else "")
    assert meta["layout"] == "torchvision"  # N_feat as torchvision's ImageNet weights were trained, DFF / FGFA too
    cfg = config["model"]
    assert (cfg["arch"], cfg["norm"], cfg["flow_net"]) == ("resnet101", "frozen", FLOW_NETS[name])
    # the sample the recipe trained on has the folder's size: the recipe's own (or a quarter of each side)
    if kind == "seg":
        from featflow.data.cityscapes import CityscapesVideo

        image = CityscapesVideo(recipe_data(kind), "train").image(0, 19)
    else:
        from featflow.data.vid import VidDataset

        image = VidDataset(recipe_data(kind), "train").image(0, 0)
    assert image.shape[:2] == _recipe_size(PAPER_RUN[kind][0])


# ---- batches of more than one clip, for every method ----------------------------------------------------------------

METHODS = {  # (task, the model settings of the method)
    "seg frame": ("seg", {}),
    "seg dff": ("seg", {"flow_net": "flownet_inception"}),
    "det frame": ("det", {}),
    "det dff": ("det", {"flow_net": "flownet_inception"}),
    "det fgfa": ("det", {"flow_net": "flownet_inception", "aggregation": "adaptive"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_with_three_clips_per_batch_and_treats_each_clip_on_its_own(method, tmp_path):
    """Two iterations of a batch of 3 (frames, (current, key) pairs or 3-frame clips), then: the batched features
    are each clip's own (the key / references, the key == current case and FGFA's softmax stay within a clip)."""
    from featflow.engine.config import from_dict
    from featflow.engine.det_training import train_detection
    from featflow.engine.seg_training import train_segmentation

    task, model = METHODS[method]
    data = {"model": {"arch": "resnet18", "channels": 16, "norm": "frozen", **model},
            "data": {"size": [48, 64], "max_offset": 3, "frames_per_video": 2},
            "train": {"batch_size": 3, "iterations": 2, "lr": 0.001, "warmup": 1, "workers": 0, "optimizer": "sgd"},
            "eval": {"samples": 2, "every": 2}}
    if task == "det":
        data["model"]["anchor_sizes"] = [16, 32]
        result = train_detection(from_dict(DetTrainConfig, data), out=tmp_path, progress=False)
    else:
        result = train_segmentation(from_dict(SegTrainConfig, data), out=tmp_path, progress=False)
    assert result.iterations == 2 and (tmp_path / "model.safetensors").is_file()
    assert [h["iteration"] for h in result.history] == [2] and torch.isfinite(torch.tensor(result.last["loss"]))
    net = result.model.eval()
    generator = torch.Generator().manual_seed(0)
    current = torch.rand(3, 3, 48, 64, generator=generator) * 255
    references = torch.rand(3, 2, 3, 48, 64, generator=generator) * 255
    same = torch.tensor([[True, False], [False, False], [True, True]])
    references[same] = current[same.nonzero()[:, 0]]  # "same": the reference is the current frame itself

    def run(i: slice) -> torch.Tensor:
        if task == "seg":
            return net(current[i], references[i, 0] if net.flow_net is not None else None, same[i, 0])
        return net.clip_features(current[i], references[i], same[i])

    with torch.no_grad():
        batched = run(slice(0, 3))
        one_by_one = torch.cat([run(slice(i, i + 1)) for i in range(3)])
    torch.testing.assert_close(batched, one_by_one, rtol=1e-4, atol=1e-4)
