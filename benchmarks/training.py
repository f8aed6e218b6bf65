"""How each report's checkpoints were trained: the training records of a report's rows (read from each run's
metrics.json), their table, the convergence check and the held-out curves, for ``reports/segmentation.md`` and
``reports/detection*.md``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from featflow.analysis.reports import save_figure
from featflow.errors import FeatflowError
from featflow.registry import shipped_models


def training_record(weights: str) -> dict | None:
    """How a checkpoint was trained, from the run's metrics.json beside it: starting point, iterations, samples
    (iterations x batch), minutes (the run alone, not its starting point's), its held-out metric during training
    and the whole held-out curve."""
    if Path(weights).parent == Path("."):  # a bare name (a shipped model) has no run folder
        return None
    path = Path(weights).with_name("metrics.json")
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    config = metrics.get("config", {})
    model = config.get("model", {})
    batch = int(config.get("train", {}).get("batch_size", 0))
    init = shipped_run(model.get("init") or None)
    return {"weights": weights, "init": init, "features_init": model.get("features_init") or None,
            "iterations": metrics["iterations"], "batch_size": batch,
            "samples": metrics["iterations"] * batch, "minutes": metrics["wall_seconds"] / 60,
            "final": metrics.get("final", {}),
            "curve": [{k: v for k, v in h.items() if k in ("iteration", "wall_seconds") or k.startswith("val_")}
                      for h in metrics.get("history", [])]}


def shipped_run(weights: str | None) -> str | None:
    """A checkpoint as training records know it: a shipped model, by its name or its packaged file (where a config's
    ``model.init`` named the model), becomes the run weights it was packed from (models.json ``trained_as``), so that
    its chain continues through that run's record; any other path is kept."""
    if weights is None:
        return None
    path = Path(weights)
    for info in shipped_models():
        if info.trained_as and (weights == info.name or (path.parent.name == "weights" and path.name == info.file)):
            return info.trained_as
    return weights


def earlier_records(reports: Sequence[str | os.PathLike]) -> dict[str, dict]:
    """The training records earlier reports kept (their JSON's ``training``), by weights path: what a run
    whose folder is gone (``runs/`` lasts a session) was, for the checkpoint shipped from it."""
    known: dict[str, dict] = {}
    for path in reports:
        if not Path(path).is_file():
            raise FeatflowError(f"earlier_training: no report {path} (the plan names the report JSON whose training "
                                f"records it reads)")
        for record in json.loads(Path(path).read_text()).get("training", []):
            known.setdefault(record["weights"], {**record, "source": str(path)})
    return known


def _batch_size(record: dict) -> int:
    """A record's batch size: its own, else that of the packaged config whose output is the run's folder
    (``runs/seg/frame_r18_long/model.safetensors`` -> ``configs/seg/frame_r18_long.yaml``)."""
    if record.get("batch_size"):
        return int(record["batch_size"])
    from featflow.engine.config import merged_config_dict, packaged_config

    run = Path(record["weights"]).parent
    config = packaged_config(run.parent.name, run.name)
    if config is None:
        raise ValueError(f"{record['weights']}: the earlier record has no batch size and no config "
                         f"{run.parent.name}/{run.name} says it")
    return int(merged_config_dict(config, run.parent.name)["train"]["batch_size"])


def _completed(record: dict) -> dict:
    """An earlier report's record with the fields a record has now (older reports kept fewer)."""
    batch = _batch_size(record)
    return {"init": None, "features_init": None, "final": {}, "curve": [], **record, "batch_size": batch,
            "samples": record.get("samples") or record["iterations"] * batch}


def training_records(weights: list[str], known: dict[str, dict] | None = None) -> list[dict]:
    """The training records of ``weights`` and, recursively, of the checkpoints they started from; each with
    its total budget summed along its init chain (``total_samples``, ``total_minutes``). A checkpoint without
    a metrics.json takes its record from ``known`` (``earlier_records``) when it is there."""
    known = known or {}
    pending, records = list(dict.fromkeys(weights)), []
    while pending:
        weights_path = pending.pop(0)
        record = training_record(weights_path)
        if record is None and weights_path in known:
            record = _completed(known[weights_path])
        if record is not None:
            records.append(record)
            if record["init"] and record["init"] not in [r["weights"] for r in records] + pending:
                pending.append(record["init"])
    by_weights = {r["weights"]: r for r in records}
    for record in records:
        chain, seen = record, set()
        record["total_samples"], record["total_minutes"] = 0, 0.0
        while chain is not None and chain["weights"] not in seen:
            seen.add(chain["weights"])
            record["total_samples"] += chain["samples"]
            record["total_minutes"] += chain["minutes"]
            chain = by_weights.get(chain["init"]) if chain["init"] else None
    return records


def training_lines(records: list[dict]) -> list[str]:
    """The report's "The models" section: one table row per training record."""
    lines = ["", "## The models", "",
             "Each run's own training, and its total budget summed along its init chain (a run that starts from "
             "another checkpoint adds to it; samples = iterations x batch).", "",
             "| weights | starts from | iterations | minutes | total samples | total minutes | "
             "held-out metric during training |", "|---|---|---|---|---|---|---|"]
    for r in records:
        final = ", ".join(f"{k} {v:.3f}" for k, v in r["final"].items() if k.startswith("val_"))
        start = (f"`{r['init']}`" if r.get("init") else f"N_feat from `{r['features_init']}`" if r.get("features_init")
                 else "random init")
        lines.append(f"| `{r['weights']}` | {start} | "
                     f"{r['iterations']} | {r['minutes']:.1f} | {r.get('total_samples', r.get('samples', 0))} | "
                     f"{r.get('total_minutes', r['minutes']):.1f} | {final} |")
    return lines


def plateau_gain(curve: list[dict], metric: str) -> float | None:
    """How much the held-out ``metric`` rose over the last quarter of a run's iterations (the convergence check:
    a model has plateaued when this is under 1 point); None without enough evaluations."""
    points = [(h["iteration"], h[metric]) for h in curve if h.get(metric) is not None]
    if len(points) < 2:
        return None
    last = points[-1][0]
    before = [v for it, v in points if it <= 0.75 * last]
    return None if not before else points[-1][1] - before[-1]


def chain_curve(record: dict, records: list[dict], metric: str) -> list[tuple[int, float]]:
    """The held-out ``metric`` along a run's whole init chain: (training samples seen, value) of every evaluation of
    every run in it, the first run's first."""
    by_weights = {r["weights"]: r for r in records}
    chain, run, seen = [], record, set()
    while run is not None and run["weights"] not in seen:
        seen.add(run["weights"])
        chain.append(run)
        run = by_weights.get(run["init"]) if run["init"] else None
    points, offset = [], 0
    for run in reversed(chain):
        points += [(offset + h["iteration"] * run["batch_size"], h[metric]) for h in run["curve"]
                   if h.get(metric) is not None]
        offset += run["samples"]
    return points


def chain_plateau_gain(points: list[tuple[int, float]]) -> float | None:
    """How much the metric rose over the last quarter of a chain's samples (``chain_curve``): under 1 point is the
    plateau the reports ask of a headline model; None without an evaluation before the last quarter."""
    if len(points) < 2:
        return None
    last = points[-1][0]
    before = [v for samples, v in points if samples <= 0.75 * last]
    return None if not before else points[-1][1] - before[-1]


def curves_plot(path: Path, records: list[dict], metric: str, label: str) -> bool:
    """Held-out ``metric`` against total samples seen (init chains joined), one line per run; False when no run
    has a curve."""
    import matplotlib.pyplot as plt

    by_weights = {r["weights"]: r for r in records}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for r in records:
        offset, parent = 0, by_weights.get(r["init"]) if r["init"] else None
        if parent is not None:
            offset = parent.get("total_samples", parent["samples"])
        points = [(offset + h["iteration"] * r["batch_size"], 100 * h[metric]) for h in r["curve"]
                  if h.get(metric) is not None]
        if points:
            ax.plot(*zip(*points), marker=".", label=Path(r["weights"]).parent.name)
            drawn = True
    if drawn:
        ax.set_xlabel("training samples seen (iterations x batch, along the init chain)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, path)
    else:
        plt.close(fig)
    return drawn
