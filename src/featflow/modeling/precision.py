"""Numeric precision: float32, or autocast to bfloat16 / float16 where the device runs it natively.

bfloat16 keeps float32's range, so training and inference need no loss scaling; this project's 2-core CPUs have
AVX512-BF16, where it ran a ResNet-18 about 2x faster than float32. float16 is for GPUs (inference only here:
training in it would need loss scaling). Where a precision is not native to the device, everything runs in float32
and a warning says so; "auto" picks bfloat16 where it is native and float32 elsewhere, silently (the default of
``featflow infer``: bfloat16 changed the shipped models' held-out metrics by at most 0.06 points,
``reports/precision.md``). Parts that need float32 whatever the autocast (box coordinates, RoI pooling) turn it off
themselves (``featflow.methods.detection``).
"""

from __future__ import annotations

import contextlib
import logging

import torch

from featflow.registry import PRECISIONS, check_choice

log = logging.getLogger(__name__)


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 natively: a GPU that supports it, or a CPU with AVX512-BF16 or AMX
    (elsewhere bfloat16 is emulated, slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check is not None and check() for check in checks)


def autocast_dtype(precision: str, device: torch.device, purpose: str = "training") -> torch.dtype | None:
    """The autocast type for ``precision`` on ``device`` (None: float32), with a warning where it falls back."""
    check_choice("precision", precision, PRECISIONS, key="precision")
    if precision == "fp32":
        return None
    if precision == "auto":  # the fastest precision that keeps accuracy (reports/precision.md), no warning
        return torch.bfloat16 if bf16_supported(device) else None
    if precision == "bf16":
        if bf16_supported(device):
            return torch.bfloat16
        log.warning("precision bf16: %s has no native bfloat16 (cpu capability %s); %s in fp32", device,
                    torch.backends.cpu.get_cpu_capability(), purpose)
        return None
    if device.type == "cuda":
        return torch.float16
    log.warning("precision fp16: only GPUs run float16 natively; %s on %s in fp32", purpose, device)
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``, or nothing (float32) when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
