"""The model settings of a training config and the one builder behind both tasks.

``ModelConfig`` holds what a segmenter and a detector share: N_feat (``arch``, ``channels``, ``norm``), F
(``flow_net``), FGFA's aggregation, where the weights start (``init``: a task checkpoint of the same task;
``features_init``: only N_feat, from any task's checkpoint; ``flow_init``: pre-trained F) and what stays fixed
(``freeze_*``: the papers' ablations). ``SegModelConfig`` and ``DetModelConfig`` add the task: which model it
builds (``task``) and its own settings (detection: ``anchor_sizes``). ``build_video_model`` builds either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor

from featflow.data.references import ReferenceSampling
from featflow.engine.checkpoint import (
    DETECTOR,
    SEGMENTER,
    TaskKind,
    TaskModel,
    load_flow_into,
    load_norm_agnostic,
    load_task_model,
    read_metadata,
    read_weights,
)
from featflow.engine.config import producer_hint
from featflow.errors import FeatflowError, MissingInput
from featflow.modeling.feature_net import load_torchvision_resnet
from featflow.modeling.rpn import RPNConfig
from featflow.registry import AGGREGATIONS, FEATURE_NETS, FLOW_NETS, NORMS, check_choice, resolve_weights


@dataclass(frozen=True)
class ModelConfig:
    """The model settings both tasks share (the ``model:`` section of a seg or det config)."""
    arch: str = "resnet18"
    channels: int = 128
    flow_net: str | None = None  # None: the per-frame model
    aggregation: str | None = None  # FGFA: "adaptive" (the paper's), "mean" (equal weights; an ablation), ...
    init: str | None = None  # a checkpoint of the same task to start from (a per-frame one for DFF / FGFA)
    # N_feat only, for a model trained from scratch: "torchvision:ARCH" (torchvision's ImageNet weights, the
    # papers' pre-training), a torchvision ResNet state-dict file (.pth / .safetensors), or any featflow task
    # checkpoint (a path, or a shipped model's name such as "seg-dff-r18-synth": the stand-in used here)
    features_init: str | None = None
    norm: str = "batch"  # N_feat's BatchNorm: "batch" (statistics trained) or "frozen" (the papers' fixed statistics)
    flow_init: str | None = "shipped"  # pre-trained flow weights for F ("shipped": the package's)
    freeze_features: bool = False  # DFF fix N
    freeze_stem: bool = False  # N_feat's conv1 and res2 fixed (the papers', with ImageNet weights)
    freeze_flow: bool = False  # DFF fix F; FGFA "without end-to-end training"
    freeze_scale: bool = False  # DFF's scale field kept at 1 (F's flow still trained)
    # FGFA: training aggregates the current frame with its two references, as the test window does (the papers'
    # training aggregates the two references only, facts.md §3; a training-only setting, not in the checkpoint)
    train_with_current: bool = False

    #: The task model these settings build (each task's config sets it).
    task: ClassVar[TaskKind]

    def __post_init__(self) -> None:
        check_choice("feature network", self.arch, FEATURE_NETS, key="arch")
        check_choice("normalisation", self.norm, NORMS, key="norm")
        check_choice("flow network", self.flow_net, (None, *FLOW_NETS), key="flow_net")
        check_choice("aggregation", self.aggregation, AGGREGATIONS, key="aggregation")
        frozen = [key for key in ("freeze_flow", "freeze_scale") if getattr(self, key)]
        if frozen and self.flow_net is None:
            raise FeatflowError(f"{' and '.join(frozen)} {'needs' if len(frozen) == 1 else 'need'} a flow network "
                                "(flow_net is null)")
        if self.train_with_current and not self.aggregation:
            raise FeatflowError("train_with_current needs an aggregation (it is FGFA's training)")
        if self.init and self.features_init:
            raise FeatflowError("init and features_init are alternatives (init already holds N_feat)")

    def references(self, max_offset: int, same_share: float = 0.0) -> ReferenceSampling:
        """What a training sample holds besides the current frame, by method: FGFA two frames at current +
        U{-max_offset..max_offset}, DFF one key frame at current + U{-max_offset..0}, per frame none; each
        reference is the current frame itself with probability ``same_share`` on top."""
        if self.aggregation:
            return ReferenceSampling(2, -max_offset, max_offset, same_share)
        if self.flow_net is None:
            return ReferenceSampling(0)
        return ReferenceSampling(1, -max_offset, 0, same_share)

    def task_options(self) -> dict[str, Any]:
        """The task model's own constructor options (beyond the shared ones)."""
        return {}

    def task_settings(self) -> dict[str, Any]:
        """The task's own settings an ``init`` checkpoint must match: config key -> value, compared with the
        loaded model's attribute of that name."""
        return {}


@dataclass(frozen=True)
class SegModelConfig(ModelConfig):
    """A video segmenter: per frame, DFF (``flow_net``) or FGFA (``aggregation``)."""
    task: ClassVar[TaskKind] = SEGMENTER


@dataclass(frozen=True)
class DetModelConfig(ModelConfig):
    """A video detector (R-FCN): per frame, DFF (``flow_net``) or FGFA (``aggregation``)."""
    anchor_sizes: tuple[int, ...] = (32, 64, 128)  # the RPN's

    task: ClassVar[TaskKind] = DETECTOR

    def task_options(self) -> dict[str, Any]:
        return {"rpn": RPNConfig(anchor_sizes=tuple(self.anchor_sizes))}

    def task_settings(self) -> dict[str, Any]:
        return {"anchor_sizes": tuple(self.anchor_sizes)}


TORCHVISION_PREFIX = "torchvision:"


def imagenet_state_dict(arch: str) -> dict[str, Tensor]:
    """torchvision's ImageNet weights of ``arch`` (IMAGENET1K_V1, the classic ones) through torchvision's own
    weights API: its cache (``$TORCH_HOME/hub/checkpoints``), or a download where the machine has a network.
    Read with ``weights_only=True``: nothing is unpickled."""
    import torch
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    weights = enum.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return torch.hub.load_state_dict_from_url(weights.url, progress=False, weights_only=True)
    except (OSError, RuntimeError) as err:  # no network and not cached (urllib's URLError is an OSError)
        raise MissingInput(f"model.features_init: torchvision's ImageNet weights of {arch} are not in its cache "
                           f"({cached}) and could not be downloaded ({err.__class__.__name__}); put the file there "
                           "or give its path") from None


def _torchvision_file(value: str) -> Path | None:
    """The torchvision ResNet state-dict file ``features_init`` names: a .pth / .pt, or a .safetensors without
    featflow's metadata (None: a featflow checkpoint, a shipped model's name, or no file)."""
    path = Path(value)
    if not path.is_file():
        return None
    if path.suffix in (".pth", ".pt"):
        return path
    if path.suffix == ".safetensors" and not read_metadata(path).get("featflow.kind"):
        return path
    return None


def torchvision_state(value: str, arch: str) -> dict[str, Tensor] | None:
    """``features_init`` as torchvision ResNet weights: ``torchvision:ARCH``, or a file whose keys are
    torchvision's (``layer1....``); None when it is a featflow checkpoint or a shipped model's name."""
    if value.startswith(TORCHVISION_PREFIX):
        named = value[len(TORCHVISION_PREFIX):]
        if named != arch:
            raise FeatflowError(f"model.features_init: {value} is a {named}, model.arch is {arch}")
        return imagenet_state_dict(arch)
    path = _torchvision_file(value)
    if path is None:
        return None
    if path.suffix == ".safetensors":
        tensors = read_weights(path)[0]
    else:
        import torch

        try:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 (pickle / zip errors of many kinds: the file is not a state dict)
            raise FeatflowError(f"model.features_init: {path} is not a state dict ({err})") from None
        if not isinstance(tensors, dict):
            raise FeatflowError(f"model.features_init: {path} holds a {type(tensors).__name__}, not a state dict")
    if not any(key.startswith("layer1.") for key in tensors):
        raise FeatflowError(f"model.features_init: {path} is neither a featflow checkpoint nor a torchvision "
                            "ResNet state dict (no layer1.* keys)")
    return tensors


def features_layout(cfg: ModelConfig) -> str:
    """N_feat's layout for ``cfg``: torchvision's where its weights are loaded (they were trained with it)."""
    value = cfg.features_init
    if value and (value.startswith(TORCHVISION_PREFIX) or _torchvision_file(value) is not None):
        return "torchvision"
    return "msra"


def features_source(value: str) -> Path:
    """``model.features_init`` as a weights file: a shipped model's name (its N_feat, e.g. the shipped segmenter's,
    "seg-dff-r18-synth") or a checkpoint path."""
    try:
        return resolve_weights(value, what="model.features_init")
    except MissingInput as err:  # a run of a packaged config: say which command makes it
        raise MissingInput(f"{err}{producer_hint(value)}") from None


def check_sources(cfg: ModelConfig) -> None:
    """Fail before any work when ``features_init`` names no shipped model and no file (``init`` and
    ``flow_init`` are paths: ``config.check_paths`` checks them)."""
    if cfg.features_init and not cfg.features_init.startswith(TORCHVISION_PREFIX):
        features_source(cfg.features_init)


def load_features_into(model: TaskModel, path: str | Path) -> None:
    """N_feat's weights from any featflow task checkpoint (segmenter or detector) of the same arch and width,
    whichever normalisation either uses (BatchNorm statistics become frozen ones and back)."""
    tensors, meta = read_weights(path)
    if (meta.get("arch"), meta.get("channels")) != (model.arch, str(model.channels)):
        raise FeatflowError(f"{path} holds a {meta.get('arch')} N_feat with {meta.get('channels')} channels; "
                            f"the model is a {model.arch} with {model.channels}")
    prefix = "feature_net."
    missing, unexpected = load_norm_agnostic(
        model.feature_net, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    if missing or unexpected:
        raise FeatflowError(f"{path}: N_feat's weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")


def _check_init(cfg: ModelConfig, model: TaskModel, num_classes: int) -> None:
    """The ``init`` checkpoint's model is the one the config describes: one line naming every key that differs."""
    wanted = {"arch": cfg.arch, "channels": cfg.channels, "flow_net": cfg.flow_net, "aggregation": cfg.aggregation,
              **cfg.task_settings(), "classes": num_classes}
    found = {"arch": model.arch, "channels": model.channels, "flow_net": model.flow_name,
             "aggregation": model.aggregation, **{key: getattr(model, key) for key in cfg.task_settings()},
             "classes": model.num_classes}
    wrong = [f"{key} {_show(found[key])} (the {'data set' if key == 'classes' else 'config'}: {_show(wanted[key])})"
             for key in wanted if found[key] != wanted[key]]
    if wrong:
        raise FeatflowError(f"model.init: {cfg.init} does not fit the config: it has {', '.join(wrong)}")


def _show(value: Any) -> str:
    """A setting as a config writes it."""
    if value is None:
        return "null"
    return f"[{', '.join(map(str, value))}]" if isinstance(value, tuple) else str(value)


def build_video_model(cfg: ModelConfig, num_classes: int) -> TaskModel:
    """The task model ``cfg`` describes, initialised as it says: from an ``init`` checkpoint (which must match the
    config) or fresh (N_feat optionally from ``features_init``); then pre-trained F where the model's F is new;
    then the frozen parts."""
    if cfg.init:
        model, meta = load_task_model(cfg.init, cfg.task, flow_net=cfg.flow_net, aggregation=cfg.aggregation,
                                      norm=cfg.norm)
        _check_init(cfg, model, num_classes)
        new_flow = cfg.flow_net is not None and not meta.get("flow_net")
    else:
        model = cfg.task.model(num_classes, cfg.arch, cfg.channels, cfg.flow_net, cfg.aggregation,
                               norm=cfg.norm, layout=features_layout(cfg), **cfg.task_options())
        new_flow = cfg.flow_net is not None
        if cfg.features_init:
            imagenet = torchvision_state(cfg.features_init, cfg.arch)
            if imagenet is not None:
                load_torchvision_resnet(model.feature_net, imagenet, f"model.features_init: {cfg.features_init}")
            else:
                load_features_into(model, features_source(cfg.features_init))
    if new_flow and cfg.flow_init is not None:
        load_flow_into(model, None if cfg.flow_init == "shipped" else cfg.flow_init)
    model.train_with_current = cfg.train_with_current
    model.feature_net.requires_grad_(not cfg.freeze_features)
    if cfg.freeze_stem:
        model.feature_net.freeze_stem()
    if model.flow_net is not None:
        model.flow_net.requires_grad_(not cfg.freeze_flow)
        if cfg.freeze_scale:
            model.flow_net.scale_conv.requires_grad_(False)
    return model


def has_unused_parameters(model: TaskModel) -> bool:
    """Whether a training step leaves some trainable parameter without a gradient (DDP must then look for them):
    FGFA warps without the scale field, so a trainable F's scale head gets none. Per frame and DFF use every
    parameter."""
    return (model.aggregator is not None and model.flow_net is not None
            and model.flow_net.scale_conv.weight.requires_grad)
