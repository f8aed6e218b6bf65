"""Model weights as safetensors files (never pickles), written atomically.

A featflow weights file carries, in its safetensors metadata, what it holds (``featflow.kind``), the
network's name and the settings needed to rebuild it, so ``load_flow_net(path)`` needs nothing else.
Training state (optimizer, progress) is saved with ``torch.save`` and read back with
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from featflow.data.resize import Resize
from featflow.errors import FeatflowError, MissingInput
from featflow.methods.detection import VideoDetector
from featflow.methods.segmentation import VideoSegmenter
from featflow.methods.video_model import VideoModel
from featflow.modeling.feature_net import NormKind
from featflow.modeling.flow_net import FlowNetBase, build_flow_net
from featflow.modeling.heads import DetectionHead, SegmentationHead
from featflow.modeling.rpn import RPNConfig
from featflow.utils.io import atomic_path

#: The pre-trained flow weights shipped with featflow, by flow network (trained on synthetic pairs by ``featflow train
#: flow``; ``reports/flow_pwcnet.md``). ``flow_init: shipped`` takes its own network's; the first is the default F
#: (``featflow flow``, ``bench flow``): PWC-Net Lite, the better on synthetic pairs and on real footage.
SHIPPED_FLOW_WEIGHTS: dict[str, str] = {"pwcnet_lite": "pwcnet_lite_synth.safetensors",
                                        "flownet_inception": "flownet_inception_synth.safetensors"}


def save_weights(path: str | os.PathLike, model: nn.Module, metadata: dict[str, Any],
                 dtype: torch.dtype | None = None, skip: tuple[str, ...] = ()) -> None:
    """Write ``model``'s parameters and buffers (optionally cast to ``dtype``, leaving out names in
    ``skip``) with string ``metadata``."""
    state = {k: v.detach().to(dtype if dtype is not None and v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items() if k not in skip}
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """-> (tensors, metadata) of a safetensors file, with a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"no such weights file: {path}")
    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise FeatflowError(f"{path} is not a safetensors weights file ({err})") from None
    return tensors, metadata


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a safetensors file, without reading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"no such weights file: {path}")
    try:
        with safe_open(str(path), "pt") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise FeatflowError(f"{path} is not a safetensors weights file ({err})") from None


def pack_weights(source: str | os.PathLike, target: str | os.PathLike) -> int:
    """Copy a weights file with float tensors in float16, metadata unchanged; -> the new file's size."""
    tensors, metadata = read_weights(source)
    if "featflow.kind" not in metadata:
        raise FeatflowError(f"{source} is not a featflow weights file")
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    with atomic_path(target) as tmp:
        save_file(half, str(tmp), metadata=metadata)
    return Path(target).stat().st_size


def shipped_flow_weights(flow_net: str | None = None) -> Path:
    """The package's pre-trained weights of ``flow_net`` (default: the default F, the first of
    ``SHIPPED_FLOW_WEIGHTS``)."""
    name = flow_net or next(iter(SHIPPED_FLOW_WEIGHTS))
    if name not in SHIPPED_FLOW_WEIGHTS:
        raise FeatflowError(f"featflow ships no pre-trained weights for {name} (it ships "
                            f"{', '.join(SHIPPED_FLOW_WEIGHTS)}): pre-train it with featflow train flow and name "
                            f"the file instead of shipped")
    return Path(str(resources.files("featflow") / "weights" / SHIPPED_FLOW_WEIGHTS[name]))


def save_flow_net(path: str | os.PathLike, net: FlowNetBase, name: str, extra: dict[str, Any] | None = None,
                  dtype: torch.dtype | None = None) -> None:
    """Save a flow network. The scale-field conv is left out: flow pre-training never trains it
    (it stays zero), and the DFF model that loads the net sizes it to its own feature channels."""
    metadata = {"featflow.kind": "flow_net", "featflow.model": name, **(extra or {})}
    save_weights(path, net, metadata, dtype=dtype, skip=("scale_conv.weight",))


def load_flow_net(path: str | os.PathLike | None = None,
                  scale_channels: int = 1024) -> tuple[FlowNetBase, dict[str, str]]:
    """Rebuild a flow network from a featflow weights file (default: the shipped one).

    The scale field is created with ``scale_channels`` outputs and starts at exactly 1.
    """
    path = Path(path) if path is not None else shipped_flow_weights()
    tensors, metadata = read_weights(path)
    if metadata.get("featflow.kind") != "flow_net" or "featflow.model" not in metadata:
        raise FeatflowError(f"{path} does not hold featflow flow-network weights (no featflow.kind=flow_net metadata)")
    net = build_flow_net(metadata["featflow.model"], scale_channels)
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    missing, unexpected = net.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if k != "scale_conv.weight"]
    if missing or unexpected:
        raise FeatflowError(f"{path}: weights do not fit {metadata['featflow.model']} "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return net, metadata


#: The one buffer BatchNorm has and frozen BatchNorm lacks; it is not used for inference or (with a fixed momentum)
#: training, so checkpoints move between the two normalisations without it.
BATCHES_TRACKED = "num_batches_tracked"


def load_norm_agnostic(module: nn.Module, tensors: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """``module.load_state_dict(tensors, strict=False)`` across BatchNorm and frozen BatchNorm (float tensors as
    float32); -> (missing, unexpected) names, leaving out BatchNorm's batch counters. Frozen BatchNorm drops the
    counters it is given; a BatchNorm module given none keeps its own."""
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    missing, unexpected = module.load_state_dict(tensors, strict=False)
    return ([k for k in missing if not k.endswith(BATCHES_TRACKED)],
            [k for k in unexpected if not k.endswith(BATCHES_TRACKED)])


def _load_state(path: Path, model: nn.Module, tensors: dict[str, torch.Tensor], optional: tuple[str, ...]) -> None:
    """Load ``tensors`` into ``model``; parts under the ``optional`` prefixes may be absent (added by the caller).
    Tensors whose shapes differ from the model's (another class count or width) are named in the error."""
    expected = model.state_dict()
    wrong = [f"{k}: {tuple(v.shape)} in the file, {tuple(expected[k].shape)} in the model"
             for k, v in tensors.items() if k in expected and v.shape != expected[k].shape]
    if wrong:
        raise FeatflowError(f"{path}: weights do not fit the model they describe "
                            f"({len(wrong)} tensors differ in shape; {'; '.join(wrong[:3])})")
    missing, unexpected = load_norm_agnostic(model, tensors)
    missing = [k for k in missing if not k.startswith(optional)] if optional else missing
    if missing or unexpected:
        raise FeatflowError(f"{path}: weights do not fit the model they describe (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")


def saved_norm(metadata: dict[str, str]) -> str:
    """N_feat's normalisation in a task checkpoint ("batch" for those written before the option existed)."""
    return metadata.get("norm") or "batch"


@dataclass(frozen=True)
class TaskKind:
    """What one task's checkpoints hold beyond what all share (N_feat, F, FGFA's aggregation, classes): the model
    class, its ``featflow.kind`` and the task's own settings (detection: the RPN's anchor sizes), written as
    metadata by ``settings`` and read back as constructor options by ``options``. ``renamed`` maps the tensor
    names of older checkpoints to today's (prefix -> prefix), so every file featflow wrote still loads."""
    kind: str  # featflow.kind: "segmenter" or "detector"
    model: type[VideoSegmenter] | type[VideoDetector]  # builds the task's model from its settings
    head: type[SegmentationHead] | type[DetectionHead]  # what a video model of this task holds as its head
    settings: Callable[[Any], dict[str, str]] = lambda model: {}  # model -> its own metadata
    options: Callable[[dict[str, str]], dict[str, Any]] = lambda metadata: {}  # metadata -> constructor options
    renamed: tuple[tuple[str, str], ...] = ()

    def current_names(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``tensors`` under today's names (``renamed``)."""
        def name(key: str) -> str:
            for old, new in self.renamed:
                if key.startswith(old):
                    return new + key[len(old):]
            return key
        return {name(k): v for k, v in tensors.items()}


def _detector_settings(model: VideoModel) -> dict[str, str]:
    return {"anchor_sizes": json.dumps(list(model.head.anchor_sizes))}


def _detector_options(metadata: dict[str, str]) -> dict[str, Any]:
    return {"rpn": RPNConfig(anchor_sizes=tuple(json.loads(metadata["anchor_sizes"])))}


SEGMENTER = TaskKind("segmenter", VideoSegmenter, SegmentationHead)
# detectors written before the detection head was one part held their RPN and R-FCN at the top level
DETECTOR = TaskKind("detector", VideoDetector, DetectionHead, _detector_settings, _detector_options,
                    renamed=(("rpn.", "head.rpn."), ("rfcn.", "head.rfcn.")))
#: Every task model's checkpoint kind, by ``featflow.kind``.
TASK_KINDS: dict[str, TaskKind] = {task.kind: task for task in (SEGMENTER, DETECTOR)}

#: A task model: what ``load_task_model`` rebuilds.
TaskModel = VideoModel


def task_of(model: nn.Module) -> TaskKind:
    """The checkpoint kind of a task model: its head's task."""
    for task in TASK_KINDS.values():
        if isinstance(getattr(model, "head", None), task.head):
            return task
    raise TypeError(f"not a featflow task model: {type(model).__name__}")


def save_task_model(path: str | os.PathLike, model: TaskModel, class_names: list[str],
                    extra: dict[str, Any] | None = None) -> None:
    """Save a segmenter or detector with what is needed to rebuild it: the shared settings, the task's own
    (``TaskKind.settings``) and ``extra`` (training records its iteration and config there)."""
    task = task_of(model)
    if model.feature_net.folded:
        raise ValueError("this model was prepared for inference (for_inference folded N_feat's BatchNorm into its "
                         "convolutions): save it before, its file would not load back")
    for part, name in (("flow network", model.flow_name), ("aggregation", model.aggregation)):
        if name == "":  # built by hand, not by build_flow_net / build_aggregation: the file could not rebuild it
            raise ValueError(f"the model's {part} has no registry name (build it with featflow's builder or set "
                             f"its .name), so its weights could not be loaded back")
    metadata = {"featflow.kind": task.kind, "arch": model.arch, "channels": str(model.channels),
                "norm": model.norm, "flow_net": model.flow_name or "", "aggregation": model.aggregation or "",
                "num_classes": str(model.num_classes), "class_names": json.dumps(class_names),
                **({"layout": model.feature_net.layout} if model.feature_net.layout != "msra" else {}),
                **task.settings(model), **(extra or {})}
    save_weights(path, model, metadata)


def load_task_model(path: str | os.PathLike, task: TaskKind | None = None, flow_net: str | None = None,
                    aggregation: str | None = None, norm: NormKind | None = None) -> tuple[TaskModel, dict[str, str]]:
    """Rebuild a task model of kind ``task`` (None: whichever the checkpoint holds). ``flow_net`` /
    ``aggregation`` add a fresh F / embedding network to a checkpoint without them (a per-frame one starting DFF
    or FGFA training); a checkpoint's own parts are kept. ``norm`` rebuilds N_feat with another normalisation than
    the checkpoint's (its statistics carry over)."""
    path = Path(path)
    tensors, metadata = read_weights(path)
    found = metadata.get("featflow.kind")
    if task is None:
        if found not in TASK_KINDS:
            raise FeatflowError(f"{path} holds no featflow segmenter or detector (featflow.kind={found!r})")
        task = TASK_KINDS[found]
    elif found != task.kind:
        raise FeatflowError(f"{path} does not hold featflow {task.kind} weights "
                            f"(no featflow.kind={task.kind} metadata)")
    own_flow, own_aggregation = metadata.get("flow_net") or None, metadata.get("aggregation") or None
    model = task.model(int(metadata["num_classes"]), metadata["arch"], int(metadata["channels"]),
                       own_flow or flow_net, own_aggregation or aggregation, norm=norm or saved_norm(metadata),
                       layout=metadata.get("layout") or "msra", **task.options(metadata))
    optional = (() if own_flow else ("flow_net.",)) + (() if own_aggregation else ("aggregator.",))
    _load_state(path, model, task.current_names(tensors), optional)
    return model, metadata


def save_segmenter(path: str | os.PathLike, model: VideoSegmenter, class_names: list[str],
                   extra: dict[str, Any] | None = None) -> None:
    """Save a video segmenter (N_feat, head and, for DFF / FGFA, F and the embedding network)."""
    save_task_model(path, model, class_names, extra)


def save_detector(path: str | os.PathLike, model: VideoDetector, class_names: list[str],
                  extra: dict[str, Any] | None = None) -> None:
    """Save a video detector (N_feat, RPN, R-FCN and, for DFF / FGFA, F and the embedding network)."""
    save_task_model(path, model, class_names, extra)


def load_segmenter(path: str | os.PathLike, flow_net: str | None = None, aggregation: str | None = None,
                   norm: NormKind | None = None) -> tuple[VideoSegmenter, dict[str, str]]:
    """Rebuild a segmenter (``load_task_model`` of a segmenter checkpoint)."""
    model, metadata = load_task_model(path, SEGMENTER, flow_net, aggregation, norm)
    return cast(VideoSegmenter, model), metadata


def load_detector(path: str | os.PathLike, flow_net: str | None = None, aggregation: str | None = None,
                  norm: NormKind | None = None) -> tuple[VideoDetector, dict[str, str]]:
    """Rebuild a detector (``load_task_model`` of a detector checkpoint)."""
    model, metadata = load_task_model(path, DETECTOR, flow_net, aggregation, norm)
    return cast(VideoDetector, model), metadata


def load_flow_into(model: VideoModel, path: str | os.PathLike | None) -> None:
    """Put pre-trained flow weights (default: those shipped for the model's flow network) into ``model.flow_net``;
    its scale field starts at 1."""
    if model.flow_net is None:
        raise FeatflowError("the model has no flow network to load weights into")
    path = shipped_flow_weights(model.flow_name) if path is None else path
    net, metadata = load_flow_net(path, scale_channels=model.channels)
    if metadata["featflow.model"] != model.flow_name:
        raise FeatflowError(f"flow weights are for {metadata['featflow.model']}, the model uses {model.flow_name}")
    model.flow_net.load_state_dict(net.state_dict())


def load_model(path: str | os.PathLike) -> tuple[TaskModel, dict[str, str]]:
    """Whichever task model a checkpoint holds (segmenter or detector), rebuilt from its own metadata."""
    return load_task_model(path)


def trained_resize(metadata: dict[str, str]) -> Resize | None:
    """The resize a detector's training applied, from its checkpoint's training config: a folder-trained one saw its
    frames resized per ``data.size`` (``det_training.DetDataConfig``); a synthetic-trained one (or one without a
    training record) saw frames at their own size: None."""
    data = json.loads(metadata.get("config") or "{}").get("data") or {}
    if data.get("source", "synthetic") == "synthetic" or not data.get("size"):
        return None
    return Resize.from_size(tuple(data["size"]))
