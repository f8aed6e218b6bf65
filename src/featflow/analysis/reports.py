"""Reports under ``reports/``: a Markdown page and a JSON file (and PNG plots) per benchmark, written
atomically, each naming the exact command that reproduces it."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from featflow.utils.io import write_json, write_text


def machine_description() -> dict[str, Any]:
    """Where a measurement ran (speed figures mean little without it)."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_report(folder: str | os.PathLike, stem: str, markdown: str, data: dict[str, Any], command: str) -> list[Path]:
    """Write ``{stem}.md`` and ``{stem}.json``; both carry the reproducing command."""
    folder = Path(folder)
    md_path, json_path = folder / f"{stem}.md", folder / f"{stem}.json"
    write_text(md_path, markdown.rstrip() + f"\n\nReproduce with:\n\n```\n{command}\n```\n")
    write_json(json_path, {"command": command, **data})
    return [md_path, json_path]


def training_record(weights: str) -> dict | None:
    """How a checkpoint was trained, from the run's metrics.json beside it: starting point, iterations, minutes
    (the run alone, not its starting point's), and its held-out metric during training."""
    path = Path(weights).with_name("metrics.json")
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    model = metrics.get("config", {}).get("model", {})
    return {"weights": weights, "init": model.get("init"), "iterations": metrics["iterations"],
            "minutes": metrics["wall_seconds"] / 60, "final": metrics.get("final", {})}


def training_records(weights: list[str]) -> list[dict]:
    """The training records of ``weights`` and, recursively, of the checkpoints they started from."""
    pending, records = list(dict.fromkeys(weights)), []
    while pending:
        record = training_record(pending.pop(0))
        if record is not None:
            records.append(record)
            if record["init"] and record["init"] not in [r["weights"] for r in records] + pending:
                pending.append(record["init"])
    return records


def training_lines(records: list[dict]) -> list[str]:
    lines = ["", "## The models", "", "Each run's own training (a run that starts from another checkpoint adds to it).",
             "", "| weights | starts from | iterations | minutes | held-out metric during training |",
             "|---|---|---|---|---|"]
    for r in records:
        final = ", ".join(f"{k} {v:.3f}" for k, v in r["final"].items() if k.startswith("val_"))
        lines.append(f"| `{r['weights']}` | {('`' + r['init'] + '`') if r['init'] else 'random init'} | "
                     f"{r['iterations']} | {r['minutes']:.1f} | {final} |")
    return lines
