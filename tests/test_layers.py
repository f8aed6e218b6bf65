"""The package's structure: dependencies point one way, downward, and the command line starts without torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from featflow import registry
from featflow.errors import FeatflowError, MissingInput

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "featflow"

#: Each top-level module or package of featflow and its layer: a module may import from its own package and from
#: lower layers only (ARCHITECTURE.md draws the same picture).
LAYERS: dict[str, int] = {
    "errors": 0,
    "registry": 1, "structures": 1, "utils": 1,
    "modeling": 2, "data": 2,
    "methods": 3, "evaluation": 3, "postprocess": 3,
    "engine": 4,
    "analysis": 5,
    "apps": 6,
    "api": 7, "cli": 7, "__init__": 7,
}


def _imports(path: Path) -> list[str]:
    """The modules ``path`` imports by absolute name, anywhere in it (function-level imports included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


def _featflow_imports(path: Path) -> list[str]:
    """The featflow modules ``path`` imports, anywhere in it (function-level imports included)."""
    return [name for name in _imports(path) if name.split(".")[0] == "featflow"]


def test_every_module_has_a_layer():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    assert tops <= set(LAYERS), f"modules without a layer: {sorted(tops - set(LAYERS))}"


def test_no_module_imports_from_a_layer_above_or_beside_it():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for name in _featflow_imports(path):
            parts = name.split(".")
            if len(parts) < 2:  # "import featflow": the lazy top-level API
                if LAYERS[own] < LAYERS["__init__"]:
                    wrong.append(f"{path.relative_to(PACKAGE)} imports featflow")
                continue
            other = parts[1]
            if other != own and LAYERS[other] >= LAYERS[own]:
                wrong.append(f"{path.relative_to(PACKAGE)} (layer {LAYERS[own]}) imports {name} "
                             f"(layer {LAYERS[other]})")
    assert not wrong, "\n".join(wrong)


def test_the_package_never_imports_the_benchmarks_harness(tmp_path):
    """``benchmarks/`` (the reports' harness, at the repository root) sits above the package and is not shipped:
    nothing in featflow imports it. ``featflow bench`` loads it by name, from a source checkout only."""
    wrong = [f"{path.relative_to(PACKAGE)} imports {name}" for path in sorted(PACKAGE.rglob("*.py"))
             for name in _imports(path) if name.split(".")[0] == "benchmarks"]
    assert not wrong, "\n".join(wrong)
    module = tmp_path / "bad.py"  # the check sees a function-level import
    module.write_text("def f():\n    from benchmarks.det_report import DetReportPlan\n")
    assert _imports(module) == ["benchmarks.det_report"]


def test_the_layer_check_catches_an_upward_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("from featflow.api import load\nfrom featflow.modeling import warp\n")
    assert _featflow_imports(module) == ["featflow.api", "featflow.modeling"]
    assert LAYERS["api"] > LAYERS["engine"] > LAYERS["modeling"]


@pytest.mark.parametrize("argv", [["--help"], ["infer", "--help"], ["bench", "speed", "--help"],
                                  ["bench", "det", "--help"], ["train", "det", "--help"], ["eval", "det", "--help"]])
def test_help_imports_no_torch(argv):
    code = ("import sys\nfrom featflow.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "heavy = sorted({'torch', 'torchvision', 'cv2', 'av', 'matplotlib'} & set(sys.modules))\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "usage: featflow" in done.stdout


def test_registry_names_once_what_the_modules_use():
    from featflow.engine.det_inference import DET_METHODS
    from featflow.engine.seg_inference import METHODS
    from featflow.methods.fgfa import AGGREGATIONS
    from featflow.modeling.feature_net import FEATURE_NETS
    from featflow.modeling.flow_net import FLOW_NETS

    assert FEATURE_NETS is registry.FEATURE_NETS and FLOW_NETS is registry.FLOW_NETS
    assert AGGREGATIONS is registry.AGGREGATIONS and METHODS is registry.SEG_METHODS
    assert DET_METHODS is registry.DET_METHODS
    assert set(registry.METHODS) == set(registry.SEG_METHODS) | set(registry.DET_METHODS)


def test_check_choice_names_the_key_and_the_choices():
    registry.check_choice("flow network", "flownet", registry.FLOW_NETS)
    with pytest.raises(FeatflowError, match=r"model.flow_net: unknown flow network 'raft'; choose one of flownet, "):
        registry.check_choice("flow network", "raft", registry.FLOW_NETS, key="model.flow_net")
    with pytest.raises(FeatflowError, match="choose one of null, adaptive, mean"):
        registry.check_choice("aggregation", "max", registry.AGGREGATIONS)


def test_shipped_names_resolve_and_unknown_ones_name_the_option(tmp_path):
    for info in registry.shipped_models():
        assert registry.resolve_weights(info.name) == info.path and info.path.is_file()
        assert info.task in registry.TASKS and set(info.methods) <= set(registry.METHODS)
    for task in registry.TASKS:
        assert registry.default_model(task) in {m.name for m in registry.shipped_models()}
    file = tmp_path / "w.safetensors"
    file.write_bytes(b"")
    assert registry.resolve_weights(file) == file
    with pytest.raises(MissingInput, match="--weights: 'nothing' is neither a shipped model"):
        registry.resolve_weights("nothing", what="--weights")


def test_user_errors_exit_2_and_internal_errors_keep_their_traceback(tmp_path, monkeypatch, capsys):
    from featflow import cli
    from featflow.cli import models

    assert cli.main(["eval", "det", "--data", str(tmp_path / "none"), "--weights", "seg-dff-r18-synth"]) == 2
    assert "featflow eval: error:" in capsys.readouterr().err

    def broken(args):
        raise ValueError("a bug, not the user's input")

    monkeypatch.setattr(models, "run", broken)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["models"])
