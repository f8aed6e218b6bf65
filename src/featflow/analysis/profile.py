"""Where a video method's time goes: each stage's milliseconds against its multiply-adds.

An average DFF frame at key interval l runs 1/l of a key frame (N_feat) and (l-1)/l of a propagated one (F, W), and
the head on every frame. An FGFA frame runs N_feat and the embedding once, F on its 2K (current, reference) pairs
in one batched call as the stream does, the warp once per pair, the weighting and sum of 2K+1 frames, and the
head. Both prepare F's half-resolution input once per frame (the streams' ``StreamFlow`` keeps it for every pair
the frame is in), so F's stage runs on prepared inputs and the preparation is a stage of its own. Each stage runs
here on its own, on the paper-sized model (random weights, ``analysis.speed``):

- timed: the mean of ``repeats`` calls after a warm-up call;
- split by operator: the shares of torch.profiler's self time of the operators the stage ran, applied to the
  timed milliseconds; each operator goes to the category of its outermost recognised caller (convolution,
  transposed convolution, warp sampling, RoI pooling, NMS, normalisation, activation, memory-layout copies, other);
- counted: the multiply-adds of its conv and deconv layers (the cost table's rule, ``analysis.cost``), on the
  eager model before any compilation (``compile``: then N_feat, F, the embedding and a segmenter's labels run
  through ``torch.compile`` with frozen weights, ``VideoModel.for_inference``, and the warm-up call compiles).

``precision`` autocasts every stage as the streams do (``featflow.modeling.precision``); ``flow_batch`` b > 1
profiles offline DFF (``StreamOptions.flow_batch``): F runs on b frames of one key frame per call, so a call
serves b frames.

A stage's GMAC/s beside N_feat's names the stage that runs far from its arithmetic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import Tensor
from torch.profiler import ProfilerActivity, profile

from featflow.analysis.cost import MultiplyAddCounter
from featflow.analysis.speed import paper_model
from featflow.errors import FeatflowError
from featflow.methods.fgfa import frame_features
from featflow.methods.video_model import VideoModel
from featflow.modeling.precision import autocast, autocast_dtype
from featflow.modeling.preprocess import flow_input
from featflow.modeling.warp import propagate, warp
from featflow.registry import TASKS, check_choice

#: Profiled methods: DFF (either task) and FGFA (detection).
PROFILED_METHODS = ("dff", "fgfa")

#: Operator categories (the first that matches a name); an operator takes its outermost caller's, else "other".
_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("transposed convolution", ("conv_transpose",)),
    ("convolution", ("conv2d", "convolution")),
    ("warp sampling", ("grid_sampler", "index", "gather", "take")),
    ("RoI pooling", ("ps_roi_pool", "roi_pool", "roi_align")),
    ("NMS", ("nms",)),
    ("normalisation", ("batch_norm", "linalg_vector_norm")),
    ("activation", ("relu", "leaky_relu", "softmax")),
    ("memory-layout copies", ("copy_", "contiguous", "clone", "to_dense", "_to_copy")),
)


@dataclass(frozen=True)
class StageProfile:
    """One stage: how often an average frame runs it, and what one call costs."""

    name: str
    calls_per_frame: float
    ms_per_call: float
    multiply_adds: int  # of one call (conv and deconv layers)
    operators: dict[str, float] = field(default_factory=dict)  # category -> self ms of one call

    @property
    def ms_per_frame(self) -> float:
        return self.calls_per_frame * self.ms_per_call

    @property
    def gmacs_per_second(self) -> float | None:
        """Multiply-adds per second (None for a stage without conv layers)."""
        return self.multiply_adds / self.ms_per_call / 1e6 if self.multiply_adds and self.ms_per_call > 0 else None

    def to_json(self) -> dict:
        return {**asdict(self), "ms_per_frame": self.ms_per_frame, "gmacs_per_second": self.gmacs_per_second}


@dataclass(frozen=True)
class MethodProfile:
    """A method's stages on one configuration, and the single-frame model's time for comparison."""

    task: str
    method: str
    feature_net: str
    flow_net: str
    size: tuple[int, int]
    key_interval: int  # DFF's l (1 for FGFA)
    window: int  # FGFA's K (0 for DFF)
    stages: tuple[StageProfile, ...]
    repeats: int
    threads: int
    device: str
    compiled: bool = False  # N_feat, F, the embedding and seg labels through torch.compile (frozen weights)
    precision: str = "fp32"  # the autocast of every stage ("bf16": bfloat16 where native)
    flow_batch: int = 1  # DFF's F on this many frames per call (offline DFF)

    @property
    def ms_per_frame(self) -> float:
        return sum(s.ms_per_frame for s in self.stages)

    @property
    def single_frame_ms(self) -> float:
        """N_feat and the head on every frame: the per-frame model."""
        return sum(s.ms_per_call for s in self.stages if s.name in ("N_feat", "head"))

    def _macs(self, *names: str) -> int:
        return sum(s.multiply_adds for s in self.stages if s.name in names)

    @property
    def measured_ratio(self) -> float:
        """DFF: the speed-up over the single-frame model; FGFA: its cost as a multiple of the single-frame model's."""
        if self.method == "dff":
            return self.single_frame_ms / self.ms_per_frame
        return self.ms_per_frame / self.single_frame_ms

    @property
    def arithmetic_ratio(self) -> float:
        """The same ratio from multiply-adds alone. DFF: the bound l / (1 + (l - 1) r), r = O(F) / O(N_feat) (the
        talk's cost rule, which takes N_task as negligible); FGFA: ``stage_ratio``."""
        if self.method == "dff":
            flow = sum(s.multiply_adds for s in self.stages if s.name.startswith("F ")) / self.flow_batch  # a frame's
            r = flow / self._macs("N_feat")
            return self.key_interval / (1 + (self.key_interval - 1) * r)
        return self.stage_ratio

    @property
    def stage_ratio(self) -> float:
        """The ratio from every stage's multiply-adds, the head's included: what this model could reach if every
        stage ran at one rate. DFF: (N_feat + head) / (N_feat / l + (l - 1) / l F + head), below the talk's bound
        where the head is not negligible (R-FCN's 2.4 GMAC at 600x1000); FGFA: the floor
        (N_feat + embedding + 2K F + head) / (N_feat + head)."""
        single = self._macs("N_feat", "head")
        frame = sum(s.calls_per_frame * s.multiply_adds for s in self.stages)
        return single / frame if self.method == "dff" else frame / single

    def to_json(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "stages"},
                "stages": [s.to_json() for s in self.stages], "ms_per_frame": self.ms_per_frame,
                "single_frame_ms": self.single_frame_ms, "measured_ratio": self.measured_ratio,
                "arithmetic_ratio": self.arithmetic_ratio, "stage_ratio": self.stage_ratio}

    @classmethod
    def from_json(cls, data: dict) -> MethodProfile:
        """The profile ``to_json`` wrote (its derived figures recomputed), to re-render a report without re-timing."""
        stage_fields = {f.name for f in fields(StageProfile)}
        stages = tuple(StageProfile(**{k: v for k, v in s.items() if k in stage_fields}) for s in data["stages"])
        own = {f.name for f in fields(cls)} - {"stages", "size"}
        return cls(**{k: v for k, v in data.items() if k in own}, size=tuple(data["size"]), stages=stages)


def _category(event) -> str:
    """The category of a profiled operator: that of the outermost of itself and its callers that has one (the call
    the model made: a transposed convolution runs ``aten::_convolution`` inside, NMS indexing)."""
    found = "other"
    while event is not None:
        name = event.name.lower()
        found = next((category for category, keys in _CATEGORIES if any(key in name for key in keys)), found)
        event = event.cpu_parent
    return found


def _count(run: Callable[[], object], model: VideoModel) -> int:
    """The conv and deconv multiply-adds of one call of a stage (on the eager model: hooks see every layer)."""
    with MultiplyAddCounter(model) as counter:
        run()
    return counter.total


def _profile_stage(name: str, stage: Callable[[], object], multiply_adds: int, calls_per_frame: float,
                   repeats: int, sync: Callable[[], None], cast: torch.dtype | None, device: str) -> StageProfile:
    def run() -> object:
        with autocast(torch.device(device), cast):
            return stage()

    run()  # warm-up: kernel selection, allocations (and the compilation of a compiled model)
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    sync()
    ms = 1000 * (time.perf_counter() - start) / repeats
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            run()
        sync()
    self_time: dict[str, float] = {}
    for event in prof.events():
        if event.self_cpu_time_total > 0:
            category = _category(event)
            self_time[category] = self_time.get(category, 0.0) + event.self_cpu_time_total
    # the profiled run's shares of the timed run's milliseconds (the profiler's own overhead left out)
    total = sum(self_time.values()) or 1.0
    operators = {k: ms * v / total for k, v in sorted(self_time.items(), key=lambda kv: -kv[1])}
    return StageProfile(name, calls_per_frame, ms, multiply_adds, operators)


@torch.no_grad()
def profile_method(task: str = "seg", method: str = "dff", feature_net: str = "resnet101", flow_net: str = "flownet",
                   size: tuple[int, int] = (512, 1024), key_interval: int = 5, window: int = 10, repeats: int = 3,
                   device: str = "cpu", seed: int = 0, compile: bool = False, precision: str = "fp32",
                   flow_batch: int = 1) -> MethodProfile:
    """Profile ``method`` stage by stage on the paper-sized ``task`` model (random weights) at ``size``
    (``compile``: its networks through ``torch.compile``; ``precision``: their autocast; ``flow_batch``: DFF's F
    on that many frames per call)."""
    check_choice("task", task, TASKS)
    check_choice("method", method, PROFILED_METHODS)
    if method == "fgfa" and task != "det":
        raise FeatflowError("the FGFA profile is for --task det")
    if key_interval < 1 or window < 0 or repeats < 1:
        raise FeatflowError("key interval and repeats must be at least 1, the window at least 0")
    if not 1 <= flow_batch <= max(key_interval - 1, 1) or (flow_batch > 1 and method != "dff"):
        raise FeatflowError(f"flow_batch {flow_batch}: DFF batches at most the l - 1 = {key_interval - 1} frames "
                            "of a key interval (FGFA: 1)")
    cast = autocast_dtype(precision, torch.device(device), purpose="profiling")
    torch.manual_seed(seed)
    model, _ = paper_model(task, feature_net, flow_net, aggregation="adaptive" if method == "fgfa" else None)
    model.for_inference(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    current, key = (torch.rand(1, 3, *size, device=device) * 255 for _ in range(2))
    currents = torch.rand(flow_batch, 3, *size, device=device) * 255  # a key interval's frames (offline DFF)
    key_features = model.key_features(key)
    f_net = model.flow_net  # F itself (``flow_net`` names it)
    # F's inputs, prepared once per frame as the streams do: (1, 3, H/2, W/2), and (b, 3, H/2, W/2) for offline DFF
    half_current, half_key, half_currents = flow_input(current), flow_input(key), flow_input(currents)
    prepare = ("F's input (half resolution)", lambda: flow_input(current), 1.0)
    stages: list[tuple[str, Callable[[], object], float]]  # (name, one call, calls per frame)
    if method == "dff":
        flow, scale = model.learned_flow(current, key)
        propagated = propagate(key_features, flow, scale)
        others = (key_interval - 1) / key_interval
        name = "F (flow and scale field)" + (f", {flow_batch} frames a call" if flow_batch > 1 else "")
        stages = [("N_feat", lambda: model.key_features(key), 1 / key_interval), prepare,
                  (name, lambda: f_net(half_currents, half_key.expand_as(half_currents)), others / flow_batch),
                  ("W (warp x scale)", lambda: propagate(key_features, flow, scale), others),
                  ("head", lambda: model.predict(propagated, size), 1.0)]
    else:
        pairs = 2 * window
        half_keys = half_key.repeat(max(pairs, 1), 1, 1, 1)  # (2K, 3, H/2, W/2): the other frames' prepared inputs
        features, embedding = frame_features(model, key)
        maps = torch.cat([features, embedding], 1).contiguous(memory_format=torch.channels_last)
        flow, _ = model.learned_flow(current, key, with_scale=False)
        aggregator = model.aggregator
        warped = [maps] * (2 * window + 1)

        def weigh_and_sum() -> Tensor:
            parts = [w.split([features.shape[1], embedding.shape[1]], 1) for w in warped]
            return aggregator([f for f, _ in parts], [aggregator.similarity(embedding, e) for _, e in parts])

        stages = [("N_feat", lambda: model.key_features(key), 1.0),
                  ("embedding", lambda: aggregator.embed(features), 1.0), prepare,
                  (f"F (flow), {pairs} pairs a call",  # the stream's one call per frame (StreamFlow.pairs)
                   lambda: f_net(half_current.expand_as(half_keys), half_keys, with_scale=False),
                   1.0 if pairs else 0.0),
                  ("W (warp of features and embedding)", lambda: warp(maps, flow), pairs),
                  ("weights and sum", weigh_and_sum, 1.0),
                  ("head", lambda: model.predict(features, size), 1.0)]
    counts = [_count(run, model) for _, run, _ in stages]
    if compile:
        model.for_inference(device, compile=True)
    profiled = tuple(_profile_stage(name, run, macs, calls, repeats, sync, cast, device)
                     for (name, run, calls), macs in zip(stages, counts))
    return MethodProfile(task, method, feature_net, flow_net, tuple(size), key_interval if method == "dff" else 1,
                         window if method == "fgfa" else 0, profiled, repeats, torch.get_num_threads(),
                         torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu", compile,
                         "bf16" if cast == torch.bfloat16 else "fp16" if cast == torch.float16 else "fp32",
                         flow_batch)


def profile_markdown(result: MethodProfile) -> str:
    """A per-stage table: calls per frame, ms per call and per frame, GMAC per call and GMAC/s (against N_feat's),
    and where each stage's time goes by operator category."""
    reference = next((s.gmacs_per_second for s in result.stages if s.name == "N_feat"), None)
    setting = (f"l={result.key_interval}" if result.method == "dff" else f"K={result.window} "
               f"({2 * result.window + 1} frames)")
    if result.method == "dff":
        ratio = (f"a speed-up of {result.measured_ratio:.2f}x over it, where multiply-adds bound it at "
                 f"{result.arithmetic_ratio:.2f}x by the talk's rule (N_feat and F only) and at "
                 f"{result.stage_ratio:.2f}x with every stage, the head's included")
    else:
        ratio = (f"{result.measured_ratio:.2f}x its cost, where multiply-adds alone would make it "
                 f"{result.arithmetic_ratio:.2f}x")
    lines = [f"### {result.task} {result.method.upper()}: {result.feature_net} + {result.flow_net}, "
             f"{result.size[0]}x{result.size[1]}, {setting}, {_variant(result)}", "",
             f"{result.ms_per_frame:.0f} ms per frame on average against {result.single_frame_ms:.0f} ms for the "
             f"single-frame model: {ratio} ({result.device}, {result.threads} threads, mean of {result.repeats} "
             "calls per stage, the stages summed).", "",
             "| stage | calls / frame | ms / call | ms / frame | GMAC / call | GMAC/s | vs N_feat "
             "| where the time goes (ms / call) |", "|---|---|---|---|---|---|---|---|"]
    for s in result.stages:
        rate = s.gmacs_per_second
        relative = f"{rate / reference:.2f}" if rate and reference else "-"
        ops = ", ".join(f"{k} {v:.1f}" for k, v in sorted(s.operators.items(), key=lambda kv: -kv[1])
                        if v >= 0.05 * s.ms_per_call) or "-"  # the largest first
        counted = f"{s.multiply_adds / 1e9:.3g} | {rate:.3g}" if rate else "- | -"
        lines.append(f"| {s.name} | {s.calls_per_frame:.3g} | {s.ms_per_call:.1f} | {s.ms_per_frame:.1f} | {counted} | "
                     f"{relative} | {ops} |")
    return "\n".join(lines)


#: The settings ``featflow bench profile --report`` profiles: the talk's and the issue's headline cases.
REPORT_SETTINGS: tuple[dict, ...] = (
    {"task": "seg", "method": "dff", "flow_net": "flownet", "size": (512, 1024), "key_interval": 5},
    {"task": "det", "method": "dff", "flow_net": "flownet_inception", "size": (600, 1000), "key_interval": 10},
    {"task": "det", "method": "fgfa", "flow_net": "flownet_inception", "size": (600, 1000), "window": 10},
    {"task": "det", "method": "fgfa", "flow_net": "flownet", "size": (600, 1000), "window": 10},
)


#: How ``featflow bench profile --report`` runs each setting: eager float32, compiled, bfloat16 and (DFF) offline with F
#: batched over the key interval's l - 1 propagated frames, in both precisions ("interval": l - 1).
REPORT_VARIANTS: tuple[dict, ...] = ({}, {"compile": True}, {"precision": "bf16"}, {"flow_batch": "interval"},
                                     {"precision": "bf16", "flow_batch": "interval"})


def report_runs(native_bf16: bool = True) -> list[dict]:
    """Every (setting, variant) the report profiles, as ``profile_method`` keyword arguments; without
    ``native_bf16`` (a CPU without AVX512-BF16 or AMX, where bfloat16 is emulated) the bf16 variants are left out."""
    runs = []
    for setting in REPORT_SETTINGS:
        for variant in REPORT_VARIANTS:
            if "flow_batch" in variant and setting["method"] != "dff":
                continue
            if variant.get("precision") == "bf16" and not native_bf16:
                continue
            batch = {"flow_batch": setting["key_interval"] - 1} if "flow_batch" in variant else {}
            runs.append({**setting, **variant, **batch})
    return runs


def _reached(result: MethodProfile) -> float:
    """How close the measured ratio comes to the every-stage arithmetic (1: every stage at one rate)."""
    if result.method == "dff":
        return result.measured_ratio / result.stage_ratio
    return result.stage_ratio / result.measured_ratio


def _setting(result: MethodProfile) -> str:
    window = f"l={result.key_interval}" if result.method == "dff" else f"K={result.window}"
    return (f"{result.task} {result.method.upper()} {result.feature_net} + {result.flow_net}, "
            f"{result.size[0]}x{result.size[1]}, {window}")


def _variant(result: MethodProfile) -> str:
    """How the setting ran: "fp32 eager", "fp32 compiled", "bf16 eager, F on 4 frames a call", ..."""
    text = f"{result.precision} {'compiled' if result.compiled else 'eager'}"
    return text + (f", F on {result.flow_batch} frames a call" if result.flow_batch > 1 else "")


def speed_markdown(results: list[MethodProfile], machine: dict | None = None) -> str:
    """The speed report: one profile table per setting, and the stage furthest from its arithmetic in each;
    ``machine`` (``featflow.analysis.reports.machine_description``) is named under the title."""
    lines = ["# Speed: where a frame's time goes", "",
             "Paper-sized models (ResNet-101 N_feat, 1024 feature channels) with random weights: these are speed "
             "figures only, no accuracy. Each stage is run on its own and timed; GMAC/s is its multiply-adds "
             "(conv and deconv layers, the cost table's rule) per second, and 'vs N_feat' that rate as a share of "
             "N_feat's, so a stage far below 1 runs far from its arithmetic. The operator split is torch.profiler's "
             "self time, each operator put in the category of its outermost recognised caller. *compiled*: N_feat, F, "
             "the embedding net and a segmenter's labels (upsampling and argmax) run through torch.compile with "
             "frozen weights (featflow infer --compile), "
             "the multiply-adds counted on the eager model.", ""]
    if machine:
        bf16 = "yes" if machine.get("cpu_bf16") else "no (the bf16 runs are left out: emulated, it is slower than fp32)"
        lines += [f"Measured on: {machine.get('cpu_model') or machine.get('cpu')}, {machine.get('torch_threads')} "
                  f"threads, torch {machine.get('torch')}; native bfloat16: {bf16}.", ""]
    if len(results) > 1:
        lines += ["| setting | run | ms / frame | single frame (ms) | ratio | multiply-adds, talk's rule "
                  "| multiply-adds, every stage | share of it reached |", "|---|---|---|---|---|---|---|---|"]
        order: dict[str, int] = {}  # each setting's rows together, settings in the order they ran
        for r in results:
            order.setdefault(_setting(r), len(order))
        for r in sorted(results, key=lambda r: order[_setting(r)]):
            lines.append(f"| {_setting(r)} | {_variant(r)} | {r.ms_per_frame:.0f} | {r.single_frame_ms:.0f} | "
                         f"{r.measured_ratio:.2f}x | {r.arithmetic_ratio:.2f}x | {r.stage_ratio:.2f}x | "
                         f"{_reached(r):.0%} |")
        lines += ["", "Ratio: DFF's speed-up over the single-frame model, FGFA's cost as a multiple of it; the "
                  "single-frame model runs in the row's precision and compilation (N_feat and the head on every "
                  "frame: batching F does not change it). *F on b frames a call*: offline DFF "
                  "(`featflow infer --flow-batch`), whose propagated frames come out up to b - 1 frames late. "
                  "*Talk's rule*: DFF's bound l / (1 + (l - 1) O(F) / O(N_feat)), which takes the head as free. "
                  "*Every stage*: the same ratio with each stage's multiply-adds, the head's included (for FGFA the "
                  "two are one floor); detection's R-FCN head (RPN and position-sensitive score maps, 2.4 GMAC at "
                  "600x1000) runs on every frame, so it caps DFF below the talk's bound. *Share reached*: DFF's "
                  "measured speed-up over that cap, FGFA's floor over its measured cost.", ""]
    for result in results:
        lines += [profile_markdown(result), ""]
        reference = next((s.gmacs_per_second for s in result.stages if s.name == "N_feat"), None)
        slow = [s for s in result.stages if s.name != "N_feat" and s.gmacs_per_second and reference]
        if slow:
            worst = min(slow, key=lambda s: s.gmacs_per_second)
            lines += [f"Furthest from its arithmetic: {worst.name}, at {worst.gmacs_per_second / reference:.2f} of "
                      f"N_feat's rate ({worst.ms_per_frame:.0f} ms of each frame's {result.ms_per_frame:.0f}).", ""]
    return "\n".join(lines)
