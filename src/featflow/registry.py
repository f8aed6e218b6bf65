"""Every name featflow knows, in one place, without importing torch.

The command line's choices, the configs' checks, the API and ``featflow models`` read these lists, so a new
feature net, flow net, method or shipped model is named once, here, and ``featflow --help`` stays fast (this
module imports nothing heavier than ``json``).

- Building blocks: feature nets (N_feat), their normalisation, flow nets (F), FGFA's aggregation.
- Video methods per task, and the box-level post-processing of detection.
- Synthetic data: geometries and the dataset layouts it is written in.
- Shipped weights: ``featflow/weights/models.json``, read by ``shipped_models`` and ``resolve_weights``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from featflow.errors import FeatflowError, MissingInput

# ---- building blocks -------------------------------------------------------------------------------------------

#: N_feat: dilated ResNets with output stride 16 (``featflow.modeling.feature_net``).
FEATURE_NETS: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101")
#: N_feat's bottleneck layout: "msra" (ResNet-v1 as the original code: stride in the first 1x1) or "torchvision"
#: (stride in the 3x3, "v1.5": what torchvision's ImageNet weights were trained with).
FEATURE_LAYOUTS: tuple[str, ...] = ("msra", "torchvision")
#: N_feat's BatchNorm: "batch" (statistics trained) or "frozen" (the papers' fixed statistics and affine).
NORMS: tuple[str, ...] = ("batch", "frozen")
#: F: FlowNet-Simple, FlowNet Half and FlowNet Inception (``featflow.modeling.flow_net``).
FLOW_NETS: tuple[str, ...] = ("flownet", "flownet_half", "flownet_inception", "pwcnet_lite")
#: How F is trained: on flow ground truth (multi-scale end-point error) or on real video without it (photometric).
FLOW_LOSSES: tuple[str, ...] = ("epe", "unsupervised")
#: FGFA's aggregation: none, adaptive weights from the embedding network, the plain mean (an ablation), adaptive
#: weights with a learned softmax temperature, or with that temperature and a learned per-pixel quality logit of
#: each frame (``featflow.methods.fgfa``; the last two are not in the paper).
AGGREGATIONS: tuple[str | None, ...] = (None, "adaptive", "mean", "adaptive-temperature", "adaptive-quality")

# ---- video methods ---------------------------------------------------------------------------------------------

TASKS: tuple[str, ...] = ("seg", "det")
#: How a frame gets its features, for every task: the stream class of each method, as "module:Class" (imported
#: when used, so this module stays torch-free). A new method is one class and one line here.
STRATEGIES: dict[str, str] = {
    "frame": "featflow.methods.streams:PerFrame",  # N_feat on every frame
    "dff": "featflow.methods.streams:DFF",  # key frames propagated along F x the scale field
    "sff-slow": "featflow.methods.streams:SFFSlow",  # ... along OpenCV's DIS flow (medium)
    "sff-fast": "featflow.methods.streams:SFFFast",  # ... along DIS (ultrafast)
    "fgfa": "featflow.methods.streams:FGFA",  # neighbours warped along F and averaged with adaptive weights
}
#: Every method (the choices of ``featflow infer --method`` and ``featflow eval det --method``).
METHODS: tuple[str, ...] = tuple(STRATEGIES)
#: The methods the DFF protocol of Cityscapes evaluates (``featflow eval seg``): the one labelled frame of each
#: snippet, reached from key frames 0..l-1 frames before it (DFF, SFF), or aggregated from its neighbours (FGFA).
SEG_METHODS: tuple[str, ...] = METHODS
#: The methods VID evaluation runs (``featflow eval det``): every stream.
DET_METHODS: tuple[str, ...] = METHODS
#: The papers' key-frame intervals: Cityscapes 5, ImageNet VID 10.
DEFAULT_KEY_INTERVAL: dict[str, int] = {"seg": 5, "det": 10}
#: Box-level post-processing of detection (FGFA's table 4).
POSTPROCESS: tuple[str, ...] = ("seq-nms", "mgp", "tubelet")

# ---- training --------------------------------------------------------------------------------------------------

OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")
#: "auto": bf16 where the device runs it natively, else fp32 (the inference default of featflow infer).
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
#: Learning-rate schedules after the warm-up: cosine decay to 1%, or steps (x gamma at fractions of the run).
SCHEDULES: tuple[str, ...] = ("cosine", "step")

# ---- synthetic data --------------------------------------------------------------------------------------------

#: "shapes": many small objects; "vid": ImageNet VID's geometry (few large objects, most >= 4 feature cells).
GEOMETRIES: tuple[str, ...] = ("shapes", "vid")
#: The real dataset layouts synthetic data is written in (``featflow synth --format``).
FORMATS: tuple[str, ...] = ("cityscapes", "vid", "flyingchairs")
#: The prefix that names a packaged video where a video path is expected (``footage:bigbuckbunny``,
#: ``featflow.data.real_footage``): a source scheme, which path checks leave to the reader that resolves it.
FOOTAGE_PREFIX = "footage:"


def check_choice(what: str, value: Any, choices: Iterable[Any], key: str | None = None) -> None:
    """Raise ``FeatflowError`` when ``value`` is not one of ``choices``: "[key: ]unknown {what} {value!r}; choose
    one of ..." (``what`` names the kind of thing, e.g. "flow network"; ``key`` the config key or option)."""
    choices = tuple(choices)
    if value not in choices:
        listed = ", ".join("null" if c is None else str(c) for c in choices)
        raise FeatflowError(f"{key + ': ' if key else ''}unknown {what} {value!r}; choose one of {listed}")


# ---- shipped weights -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """A shipped model: its name, weights file, task, methods it can run, trained frame size and figures."""

    name: str
    file: str
    task: str
    methods: tuple[str, ...]
    size: tuple[int, int]
    description: str
    benchmark: dict[str, Any] = field(default_factory=dict)
    trained_as: str | None = None  # the run weights it was packed from, as reports' training records name them

    @property
    def path(self) -> Path:
        return Path(str(resources.files("featflow") / "weights" / self.file))


def shipped_models() -> list[ModelInfo]:
    """The models shipped in the package, from ``featflow/weights/models.json``."""
    catalog = json.loads((resources.files("featflow") / "weights" / "models.json").read_text())
    return [ModelInfo(name, m["file"], m["task"], tuple(m["methods"]), tuple(m["size"]), m["description"],
                      m.get("benchmark", {}), m.get("trained_as")) for name, m in catalog.items()]


#: The model ``featflow infer`` and the demo use when none is named: by task, and DFF detection apart (the FGFA
#: detector holds no scale field, so DFF has its own).
DEFAULT_MODELS: dict[str, str] = {"seg": "seg-dff-r18-synth", "det": "det-fgfa-r18-synth",
                                  "det-dff": "det-dff-r18-synth"}


def default_model(task: str, method: str | None = None) -> str:
    """The shipped model for ``task`` (and ``method``) when the user names none."""
    return DEFAULT_MODELS["det-dff" if task == "det" and method == "dff" else task]


def resolve_weights(name_or_path: str | os.PathLike, what: str = "weights") -> Path:
    """A shipped model's name or a weights file -> the file; anything else raises ``MissingInput`` naming
    ``what`` (an option or a config key)."""
    for info in shipped_models():
        if str(name_or_path) == info.name:
            return info.path
    path = Path(name_or_path)
    if path.is_file():
        return path
    names = ", ".join(m.name for m in shipped_models())
    raise MissingInput(f"{what}: {str(name_or_path)!r} is neither a shipped model ({names}) nor a weights file")
