"""Reports under ``reports/``: a Markdown page and a JSON file (and PNG plots) per benchmark, written
atomically, each naming the exact command that reproduces it."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from featflow.utils.io import atomic_path, write_json, write_text


def _cpu_model() -> str | None:
    """The CPU's model name (Linux), e.g. an Intel Xeon with AMX against an AMD EPYC without AVX512: the same
    report's speed figures differ several-fold between them."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return None


def machine_description() -> dict[str, Any]:
    """Where a measurement ran (speed figures mean little without it)."""
    from featflow.modeling.precision import bf16_supported

    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_bf16": bf16_supported(torch.device("cpu")),  # native bfloat16 (AVX512-BF16 or AMX): --precision auto
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> None:
    """Write a matplotlib figure as PNG atomically (a temporary file, then a rename) and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def write_report(folder: str | os.PathLike, stem: str, markdown: str, data: dict[str, Any], command: str) -> list[Path]:
    """Write ``{stem}.md`` and ``{stem}.json``; both carry the reproducing command."""
    folder = Path(folder)
    md_path, json_path = folder / f"{stem}.md", folder / f"{stem}.json"
    write_text(md_path, markdown.rstrip() + f"\n\nReproduce with:\n\n```\n{command}\n```\n")
    write_json(json_path, {"command": command, **data})
    return [md_path, json_path]
