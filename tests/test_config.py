"""Config inheritance (``_base_``), deep merge and ``KEY=VALUE`` overrides in ``featflow.engine.config``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

from featflow.engine.config import (
    apply_overrides,
    check_paths,
    load_config,
    merged_config_dict,
    packaged_config,
    to_dict,
)
from featflow.engine.det_training import DetTrainConfig
from featflow.engine.flow_training import FlowTrainConfig
from featflow.engine.seg_training import SegTrainConfig
from featflow.errors import FeatflowError, MissingInput

PACKAGED = {"det": DetTrainConfig, "seg": SegTrainConfig, "flow": FlowTrainConfig}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


BASE = """
model: {arch: resnet18, channels: 128, anchor_sizes: [32, 64, 128], init: runs/a/model.safetensors}
data: {size: [64, 96], max_offset: 5}
train: {batch_size: 4, lr: 0.001, warmup: 10}
output: runs/base
"""


def test_child_is_deep_merged_over_its_base(tmp_path):
    _write(tmp_path / "base.yaml", BASE)
    child = _write(tmp_path / "child.yaml", """
_base_: base.yaml
model:
  channels: 64             # a mapping merges key by key: arch and the rest stay the base's
  anchor_sizes: [16, 32]   # a list replaces, it is not merged element by element
  init: null               # null sets null (here: back to no init)
train: {lr: 0.01}
output: runs/child
""")
    config = load_config(DetTrainConfig, child, kind="det")
    assert (config.model.arch, config.model.channels, config.model.anchor_sizes) == ("resnet18", 64, (16, 32))
    assert config.model.init is None
    assert config.data.size == (64, 96) and config.data.max_offset == 5
    assert (config.train.batch_size, config.train.lr, config.train.warmup) == (4, 0.01, 10)
    assert config.output == "runs/child"
    merged = merged_config_dict(child, kind="det")
    assert "_base_" not in merged and merged["model"]["init"] is None and merged["train"] == {
        "batch_size": 4, "lr": 0.01, "warmup": 10}


def test_a_null_section_replaces_the_base_section_and_is_then_a_type_error(tmp_path):
    _write(tmp_path / "base.yaml", BASE)
    child = _write(tmp_path / "child.yaml", "_base_: base.yaml\ntrain: null\n")
    assert merged_config_dict(child, kind="det")["train"] is None
    with pytest.raises(FeatflowError, match=r"child\.yaml\.train: expected a mapping, got None"):
        load_config(DetTrainConfig, child, kind="det")


def test_a_list_of_bases_applies_in_order_then_the_child(tmp_path):
    _write(tmp_path / "a.yaml", "train: {lr: 0.1, warmup: 1, batch_size: 2}\noutput: runs/a\n")
    _write(tmp_path / "b.yaml", "train: {lr: 2e-1, warmup: 2}\noutput: runs/b\n")
    child = _write(tmp_path / "c.yaml", "_base_: [a.yaml, b.yaml]\ntrain: {warmup: 3}\n")
    config = load_config(SegTrainConfig, child, kind="seg")
    assert (config.train.lr, config.train.warmup, config.train.batch_size, config.output) == (0.2, 3, 2, "runs/b")


def test_bases_chain_and_a_shared_base_is_no_cycle(tmp_path):
    _write(tmp_path / "root.yaml", "train: {lr: 0.1, warmup: 1}\n")
    _write(tmp_path / "left.yaml", "_base_: root.yaml\ntrain: {warmup: 2}\n")
    _write(tmp_path / "right.yaml", "_base_: root.yaml\ntrain: {batch_size: 3}\n")
    child = _write(tmp_path / "child.yaml", "_base_: [left.yaml, right.yaml]\n")
    train = load_config(SegTrainConfig, child, kind="seg").train
    # right.yaml re-applies root's warmup over left's: each base is resolved on its own, then merged in order
    assert (train.lr, train.warmup, train.batch_size) == (0.1, 1, 3)


def test_a_base_path_is_relative_to_the_including_file_not_the_working_folder(tmp_path, monkeypatch):
    _write(tmp_path / "shared" / "base.yaml", BASE)
    child = _write(tmp_path / "runs" / "exp" / "child.yaml", "_base_: ../../shared/base.yaml\noutput: runs/exp\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(DetTrainConfig, child, kind="det")
    assert config.data.size == (64, 96) and config.output == "runs/exp"
    _write(tmp_path / "abs.yaml", f"_base_: {tmp_path / 'shared' / 'base.yaml'}\n")
    assert load_config(DetTrainConfig, tmp_path / "abs.yaml", kind="det").data.size == (64, 96)


def test_a_base_name_falls_back_to_the_packaged_config_of_the_same_kind(tmp_path):
    child = _write(tmp_path / "mine.yaml", "_base_: frame_r18\ntrain: {iterations: 10}\noutput: runs/mine\n")
    config = load_config(DetTrainConfig, child, kind="det")
    packaged = load_config(DetTrainConfig, "frame_r18", kind="det")
    assert to_dict(config) == {**to_dict(packaged), "train": {**to_dict(packaged)["train"], "iterations": 10},
                               "output": "runs/mine"}
    # the same name under another kind is that kind's packaged config
    seg = load_config(SegTrainConfig, _write(tmp_path / "seg.yaml", "_base_: frame_r18\n"), kind="seg")
    assert seg == load_config(SegTrainConfig, "frame_r18", kind="seg")
    # a file next to the including one wins over a packaged config of the same name
    _write(tmp_path / "frame_r18", "output: runs/local\n")
    assert load_config(DetTrainConfig, _write(tmp_path / "local.yaml", "_base_: frame_r18\n"), kind="det").output == \
        "runs/local"


def test_inheritance_cycles_are_reported_with_the_chain(tmp_path):
    _write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    _write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(FeatflowError, match="cycle") as err:
        load_config(SegTrainConfig, tmp_path / "a.yaml", kind="seg")
    a, b = (str((tmp_path / n).resolve()) for n in ("a.yaml", "b.yaml"))
    assert f"{a} -> {b} -> {a}" in str(err.value)
    _write(tmp_path / "self.yaml", "_base_: self.yaml\n")
    with pytest.raises(FeatflowError, match="cycle"):
        load_config(SegTrainConfig, tmp_path / "self.yaml", kind="seg")


def test_errors_name_the_dotted_key_and_the_file_that_set_it(tmp_path):
    base = _write(tmp_path / "base.yaml", "train: {lr_rate: 1, batch_size: eight}\n")
    child = _write(tmp_path / "child.yaml", "_base_: base.yaml\nmodel: {channels: 32}\n")
    with pytest.raises(FeatflowError, match=rf"^{base}\.train: unknown key 'lr_rate' \(known: "):
        load_config(SegTrainConfig, child, kind="seg")
    _write(tmp_path / "base.yaml", "data: {size: [64, x]}\n")
    with pytest.raises(FeatflowError, match=rf"^{base}\.data\.size\[1\]: expected an integer"):
        load_config(SegTrainConfig, child, kind="seg")
    _write(tmp_path / "base.yaml", "model: {typo: 1}\n")  # an unknown key in a section the child also sets
    with pytest.raises(FeatflowError, match=rf"^{base}\.model: unknown key 'typo'"):
        load_config(SegTrainConfig, child, kind="seg")
    _write(tmp_path / "child.yaml", "_base_: base.yaml\nmodel: {typo: 2}\n")  # ... and the child sets it too
    with pytest.raises(FeatflowError, match=rf"^{child}\.model: unknown key 'typo'"):
        load_config(SegTrainConfig, child, kind="seg")
    _write(tmp_path / "base.yaml", "modle: {arch: resnet18}\n")  # an unknown section
    _write(tmp_path / "child.yaml", "_base_: base.yaml\n")
    with pytest.raises(FeatflowError, match=rf"^{base}: unknown key 'modle'"):
        load_config(SegTrainConfig, child, kind="seg")


def test_bad_bases_and_files_are_user_errors(tmp_path):
    _write(tmp_path / "missing_base.yaml", "_base_: nowhere\n")
    with pytest.raises(MissingInput, match=r"missing_base\.yaml\._base_: no config file .*nowhere"):
        load_config(SegTrainConfig, tmp_path / "missing_base.yaml", kind="seg")
    for bad in ("3", "[a.yaml, 3]", "null", "{a: 1}", "''"):
        _write(tmp_path / "bad.yaml", f"_base_: {bad}\n")
        with pytest.raises(FeatflowError, match=r"bad\.yaml\._base_: expected a config name or path"):
            load_config(SegTrainConfig, tmp_path / "bad.yaml", kind="seg")
    _write(tmp_path / "broken.yaml", "train: [unclosed")
    _write(tmp_path / "uses_broken.yaml", "_base_: broken.yaml\n")
    with pytest.raises(FeatflowError, match=r"broken\.yaml: not valid YAML"):
        load_config(SegTrainConfig, tmp_path / "uses_broken.yaml", kind="seg")
    _write(tmp_path / "list.yaml", "- 1\n")
    with pytest.raises(FeatflowError, match="expected a mapping of settings at the top level"):
        load_config(SegTrainConfig, tmp_path / "list.yaml", kind="seg")
    with pytest.raises(MissingInput, match="no packaged seg config of that name"):
        load_config(SegTrainConfig, tmp_path / "missing.yaml", kind="seg")
    config = load_config(SegTrainConfig, _write(tmp_path / "i.yaml", "model: {init: nope.safetensors}\n"), "seg")
    with pytest.raises(MissingInput, match="model.init: no such file or folder"):
        check_paths(config, ("model.init",))
    assert issubclass(MissingInput, ValueError) and issubclass(MissingInput, FileNotFoundError)


def test_apply_overrides_parses_values_as_yaml_and_merges_like_a_child():
    data = {"model": {"arch": "resnet18", "init": "a.safetensors"}, "train": {"lr": 0.1}}
    out = apply_overrides(data, ["train.lr=0.01", "train.warmup=5", "model.anchor_sizes=[32, 64,128]",
                                 "model.init=null", "model.freeze_flow=true", "output=runs/x=y", "data.size=[8,16]",
                                 "eval={samples: 4}", "train.lr=2e-3"])
    assert out == {"model": {"arch": "resnet18", "init": None, "anchor_sizes": [32, 64, 128], "freeze_flow": True},
                   "train": {"lr": 2e-3, "warmup": 5}, "output": "runs/x=y", "data": {"size": [8, 16]},
                   "eval": {"samples": 4}}
    assert data == {"model": {"arch": "resnet18", "init": "a.safetensors"}, "train": {"lr": 0.1}}  # not changed
    assert apply_overrides(data, []) == data
    # exponents without a dot are numbers, in overrides and files alike (PyYAML alone reads 3e-4 as a string)
    assert apply_overrides({}, ["a=3e-4", "b=1E5", "c='3e-4'", "d=1e"]) == {"a": 3e-4, "b": 1e5, "c": "3e-4", "d": "1e"}
    # a mapping value merges into the section; a scalar over a mapping replaces it
    assert apply_overrides(data, ["model={channels: 64}"])["model"] == {"arch": "resnet18", "init": "a.safetensors",
                                                                         "channels": 64}
    assert apply_overrides(data, ["model=flownet"])["model"] == "flownet"


@pytest.mark.parametrize("item", ["train.lr", "=1", "train.=1", ".lr=1", "train..lr=1", " =1", "train.lr=[1,"])
def test_a_malformed_override_is_named(item):
    with pytest.raises(FeatflowError, match=f"override {item!r}".replace("[", r"\[").replace(".", r"\.")):
        apply_overrides({}, [item])


def test_load_config_applies_overrides_after_the_bases(tmp_path):
    _write(tmp_path / "base.yaml", BASE)
    child = _write(tmp_path / "child.yaml", "_base_: base.yaml\ntrain: {lr: 0.01}\n")
    config = load_config(DetTrainConfig, child, kind="det",
                         overrides=["train.lr=0.5", "model.anchor_sizes=[8]", "model.init=null", "eval.samples=3"])
    assert (config.train.lr, config.train.warmup, config.model.anchor_sizes) == (0.5, 10, (8,))
    assert config.model.init is None and config.eval.samples == 3
    flow = load_config(FlowTrainConfig, "flownet", kind="flow", overrides=["model=flownet_half", "train.lr=3e-4"])
    assert (flow.model, flow.train.lr, flow.output) == ("flownet_half", 3e-4, "runs/flow/flownet")
    with pytest.raises(TypeError):
        load_config(DetTrainConfig, child, kind="det", overrides="train.lr=1")  # type: ignore[arg-type]


def test_an_unknown_override_key_is_reported_like_one_in_a_file(tmp_path):
    _write(tmp_path / "base.yaml", BASE)
    child = _write(tmp_path / "child.yaml", "_base_: base.yaml\n")
    _write(tmp_path / "typo.yaml", "_base_: base.yaml\ntrain: {lr_rate: 1}\n")
    with pytest.raises(FeatflowError) as in_file:
        load_config(DetTrainConfig, tmp_path / "typo.yaml", kind="det")
    with pytest.raises(FeatflowError) as in_override:
        load_config(DetTrainConfig, child, kind="det", overrides=["train.lr_rate=1"])
    assert str(in_file.value).startswith(f"{tmp_path / 'typo.yaml'}.train: unknown key 'lr_rate' (known: ")
    assert str(in_override.value) == str(in_file.value).replace(str(tmp_path / "typo.yaml"), "overrides")
    with pytest.raises(FeatflowError, match=r"^overrides\.train\.batch_size: expected an integer, got 'eight'"):
        load_config(DetTrainConfig, child, kind="det", overrides=["train.batch_size=eight"])
    with pytest.raises(FeatflowError, match=r"^overrides: unknown key 'nope'"):
        load_config(DetTrainConfig, child, kind="det", overrides=["nope.x=1"])
    # a file's own typo is still the file's when an override touches the same section
    with pytest.raises(FeatflowError, match=rf"^{tmp_path / 'typo.yaml'}\.train: unknown key 'lr_rate'"):
        load_config(DetTrainConfig, tmp_path / "typo.yaml", kind="det", overrides=["train.lr=0.1"])


def _packaged(kind: str) -> list[str]:
    folder = resources.files("featflow") / "configs" / kind
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def test_every_packaged_config_resolves_and_its_bases_are_packaged_names():
    for kind in PACKAGED:  # the report plans are not packaged: benchmarks/plans/ (tests/test_reports.py)
        for name in _packaged(kind):
            cls = PACKAGED[kind]
            config = load_config(cls, name, kind=kind)
            assert load_config(cls, packaged_config(kind, name), kind=kind) == config  # by name or by path
            raw = yaml.safe_load(packaged_config(kind, name).read_text())
            bases = raw.get("_base_", [])
            for base in [bases] if isinstance(bases, str) else bases:
                # by name, not by file: a packaged child copied elsewhere still finds its base
                assert packaged_config(kind, base) is not None and not base.endswith(".yaml"), (kind, name, base)
            assert config.output.endswith("/" + name), (kind, name, config.output)  # its own folder, inherited too


def test_a_missing_pre_training_step_names_the_command_that_makes_it(tmp_path, monkeypatch):
    """``featflow train det --config vid_fgfa_r18_inception`` starts from vid_frame_r18's run: without it, the error
    says which command to run first (it used to say only that the file does not exist)."""
    from featflow.engine.config import check_paths, load_config, producer_hint
    from featflow.engine.det_training import DetTrainConfig

    monkeypatch.chdir(tmp_path)  # no runs/ here
    cfg = load_config(DetTrainConfig, "vid_fgfa_r18_inception", kind="det")
    with pytest.raises(MissingInput, match=r"model.init: no such file or folder: runs/det/vid_frame_r18/model"
                                            r".safetensors \(the output of a pre-training step: run `featflow train "
                                            r"det --config vid_frame_r18` first\)"):
        check_paths(cfg, ("model.init",))
    from featflow.engine.models import features_source

    with pytest.raises(MissingInput, match=r"run `featflow train seg --config frame_r18_long` first"):
        features_source(load_config(DetTrainConfig, "frame_r18", kind="det").model.features_init)  # N_feat's step
    assert producer_hint("runs/det/no_such_config/model.safetensors") == ""
    assert producer_hint(tmp_path / "elsewhere.safetensors") == ""


def test_run_references_and_shipped_names_resolve_to_weights_and_packaged_configs_use_them(tmp_path):
    import re
    from importlib import resources

    from featflow.engine.config import run_weights
    from featflow.engine.det_training import DetTrainConfig

    assert run_weights("run:vid_frame_r18", "det") == "runs/det/vid_frame_r18/model.safetensors"
    assert run_weights("run:seg/frame_r18_long", "det") == "runs/seg/frame_r18_long/model.safetensors"
    cfg = load_config(DetTrainConfig, "vid_frame_r18_long", "det")
    assert cfg.model.init == "runs/det/vid_frame_r18/model.safetensors"  # what the base's training writes
    over = load_config(DetTrainConfig, "vid_frame_r18_long", "det", ["model.init=run:frame_r18"])
    assert over.model.init == "runs/det/frame_r18/model.safetensors"
    (tmp_path / "bad.yaml").write_text("_base_: vid_frame_r18_long\nmodel: {init: 'run:det/nonesuch'}\n")
    with pytest.raises(FeatflowError, match="no packaged det config 'nonesuch'"):
        load_config(DetTrainConfig, tmp_path / "bad.yaml", "det")
    # a shipped model's name continues from its packaged file
    from featflow.registry import shipped_models

    shipped = next(m for m in shipped_models() if m.name == "seg-frame-r18-long")
    cont = load_config(DetTrainConfig, "vid_frame_r18_long", "det", ["model.init=seg-frame-r18-long"])
    assert cont.model.init == str(shipped.path) and shipped.path.is_file()
    # no packaged config names a weights file by a path relative to the working directory
    root = resources.files("featflow") / "configs"
    for kind in ("det", "seg", "flow"):
        for entry in (root / kind).iterdir():
            text = "\n".join(line.split("#")[0] for line in entry.read_text().splitlines())
            assert not re.search(r"(init|features_init|flow_init):\s*runs/", text), entry.name
